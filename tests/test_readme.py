"""Every ```bash and ```python block of README.md runs as written, in order, in one fresh directory.

A block that is not meant to run here says so on the line before it, visibly:
`<!-- not run by tests/test_readme.py: <why> -->` (a GPU, a server that runs until Ctrl-C, half an hour
on a CPU). The one change made to what is run: the README's address of the service,
http://127.0.0.1:8000, is the test service's own (a free port on 127.0.0.1, with a tiny worker).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import running_service

README = Path(__file__).resolve().parents[1] / "README.md"
README_URL = "http://127.0.0.1:8000"
NOT_RUN = re.compile(r"<!-- not run by tests/test_readme\.py: (?P<why>[^>]*\S)\s*-->")
FENCE = re.compile(r"^```(?P<lang>[A-Za-z]*)\n(?P<code>.*?)^```$", re.M | re.S)
BLOCK_SECONDS = 300  # a hang detector: the slowest block (20 steps and a variant on the tiny model) takes ~20 s


def readme_blocks(text: str) -> list[dict]:
    """Each fenced block: its language, code, line and, when marked, why it is not run."""
    blocks = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marked = NOT_RUN.fullmatch(before.strip())
        blocks.append(
            {
                "lang": match["lang"],
                "code": match["code"],
                "line": text.count("\n", 0, match.start()) + 1,
                "not_run": marked["why"] if marked else None,
            }
        )
    return blocks


def test_every_block_is_bash_or_python_and_the_marked_ones_say_why():
    blocks = readme_blocks(README.read_text())
    assert blocks, "README.md has no code blocks"
    assert {b["lang"] for b in blocks} <= {"bash", "python"}, [b["line"] for b in blocks]
    # The convention is visible in the file and every skip gives its reason.
    assert all(b["not_run"] is None or len(b["not_run"]) > 10 for b in blocks)
    assert [b for b in blocks if b["not_run"] is None], "every block is marked as not run"


def test_readme_blocks_run_as_written(tmp_path):
    blocks = [b for b in readme_blocks(README.read_text()) if b["not_run"] is None]
    work = tmp_path / "work"
    work.mkdir()
    # The README runs from a checkout after `make setup`: `.venv/bin/stepscope` is this environment's.
    (work / ".venv").symlink_to(Path(sys.prefix))
    with running_service(tmp_path, tmp_path / "runs", [("tiny", None)]) as service:
        for block in blocks:
            code = block["code"].replace(README_URL, service.url)
            if block["lang"] == "bash":
                command = ["bash", "-euo", "pipefail", "-c", code]
            else:
                command = [sys.executable, "-c", code]
            done = subprocess.run(
                command, cwd=work, env=service.environment, capture_output=True, text=True, timeout=BLOCK_SECONDS
            )
            assert done.returncode == 0, f"README.md line {block['line']}:\n{block['code']}\n{done.stderr[-3000:]}"
            block["stdout"] = done.stdout
    # What the blocks printed is what they say they do: the events end with the job finished, the run has the variant.
    curl = next(b for b in blocks if "/events" in b["code"])
    assert "event: finished" in curl["stdout"]
    assert (work / "runs" / "maze" / "manifest.json").is_file()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<!-- not run by tests/test_readme.py: needs a GPU -->\n```bash\nx\n```\n", ["needs a GPU"]),
        ("```python\nx = 1\n```\n", [None]),
        ("<!-- other comment -->\n```bash\nx\n```\n", [None]),
    ],
)
def test_the_marker_is_read_from_the_line_before_the_block(text, expected):
    assert [b["not_run"] for b in readme_blocks(text)] == expected
