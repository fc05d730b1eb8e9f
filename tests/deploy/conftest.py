"""Deployment checks: the compose file, the Dockerfile, packaging, and the store on fsspec URLs.

Nothing here builds or runs a container (no Docker engine exists in CI). The S3-compatible
server is moto's standalone server, started on 127.0.0.1 as a child process.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from stepscope.embedded_redis import free_port
from tests.servers import Proc, wait_until

REPO = Path(__file__).resolve().parents[2]
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "stepscope-test", "AWS_SECRET_ACCESS_KEY": "stepscope-test-secret"}
S3_REGION = "us-east-1"

_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def interpolate(value, env: dict[str, str]):
    """Compose's variable interpolation (${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, $$)."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        op, arg = match.group(2), match.group(3)
        current = env.get(name)
        if op == ":-":
            return current if current else arg
        if op == "-":
            return arg if current is None else current
        if op in (":?", "?") and not current:
            raise KeyError(f"{name}: {arg}")
        return current or ""

    return _VARIABLE.sub(substitute, value)


def _dockerignore_regex(pattern: str) -> re.Pattern:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def docker_context(root: Path = REPO) -> list[str]:
    """The files `docker build` sends from `root` under its .dockerignore.

    Docker's rules: patterns are read in order and the last one that matches a path decides;
    a pattern that matches a directory also matches everything inside it; `!` re-includes.
    """
    rules = []
    for line in (root / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negate = line.startswith("!")
            rules.append((_dockerignore_regex(line.lstrip("!").strip("/")), negate))

    def excluded(rel: str) -> bool:
        parts = rel.split("/")
        verdict = False
        for regex, negate in rules:
            if any(regex.fullmatch("/".join(parts[:n])) for n in range(1, len(parts) + 1)):
                verdict = not negate
        return verdict

    def may_reinclude(rel_dir: str) -> bool:
        return any(negate and (regex.pattern.startswith(re.escape(rel_dir + "/"))) for regex, negate in rules)

    kept = []
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath).relative_to(root).as_posix()
        base = "" if base == "." else base + "/"
        dirnames[:] = [d for d in dirnames if not excluded(base + d) or may_reinclude(base + d)]
        # A link to a folder (backend/stepscope/web -> frontend) is sent as the link itself, as Docker does.
        kept += [base + d for d in dirnames if (Path(dirpath) / d).is_symlink()]
        kept += [base + f for f in filenames if not excluded(base + f)]
    return sorted(kept)


def copy_docker_context(target: Path) -> Path:
    for rel in docker_context():
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, target / rel, follow_symlinks=False)
    return target


class MotoServer:
    def __init__(self, proc: Proc, url: str):
        self.proc = proc
        self.url = url

    def env(self) -> dict[str, str]:
        """What a stepscope process needs to use this server (the names docs/deploy.md gives)."""
        return {**S3_CREDENTIALS, "AWS_DEFAULT_REGION": S3_REGION, "FSSPEC_S3_ENDPOINT_URL": self.url}

    def filesystem(self):
        """A fresh s3fs client of our own, sharing no cache with the code under test."""
        import s3fs

        return s3fs.S3FileSystem(
            endpoint_url=self.url,
            key=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            secret=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            skip_instance_cache=True,
            use_listings_cache=False,
        )

    def new_bucket(self) -> str:
        name = f"stepscope-{uuid.uuid4().hex[:12]}"
        self.filesystem().mkdir(name)
        return name


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory) -> MotoServer:
    """moto's S3-compatible server (moto[server] from PyPI), on 127.0.0.1 only."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    args = [sys.executable, "-c", "from moto.server import main; main()", "-H", "127.0.0.1", "-p", str(port)]
    proc = Proc(args, {**os.environ, "PYTHONUNBUFFERED": "1"}, log)
    url = f"http://127.0.0.1:{port}"

    def ready():
        if not proc.alive():
            raise RuntimeError(f"moto server exited:\n{proc.output()}")
        try:
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(ready, 30, "moto's S3 server to answer")
        yield MotoServer(proc, url)
    finally:
        proc.stop()
