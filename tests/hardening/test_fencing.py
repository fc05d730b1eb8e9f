"""A worker declared lost that comes back writes nothing more: no event, no record field, no manifest, no artifact.

The race is made certain, not hoped for: the worker is frozen (SIGSTOP) mid-job at a point where it holds no write
lock (read from /proc/locks; if it was caught inside a write, it is let go and frozen again a step later), the janitor
fails the job by the service's own clock (its heartbeat silence), and only then is the worker resumed. It has resumed
past its revocation for certain once it has run the next job to its end (one job at a time in one process).
The janitor's patience is shortened here (tests/hardening/conftest.py's Stack); its production timing is checked by
tests/hardening/test_streams.py.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import redis

from stepscope import events
from stepscope.client import Client
from stepscope.jobs import job_key
from stepscope.store import LOCKS
from tests.hardening.conftest import Stack
from tests.servers import WorkerGate, wait_until

LONG = {"model": "tiny", "prompt": "a long walk through a maze", "steps": 200, "probes": {"layers": "none"}}


def holds_lock(pid: int, lock_file: Path) -> bool:
    """Whether process `pid` holds a flock on `lock_file` (/proc/locks: `1: FLOCK ADVISORY READ pid maj:min:inode`)."""
    if not lock_file.exists():
        return False
    inode = lock_file.stat().st_ino
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "->" in fields:  # a waiter, not a holder
            continue
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[4] == str(pid):
            if int(fields[5].rsplit(":", 1)[1]) == inode:
                return True
    return False


def snapshot(run: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under the run directory (temporary `.part` files included): size, mtime and content hash."""
    out = {}
    for path in sorted(run.rglob("*")):
        if path.is_file() or path.is_symlink():
            stat = path.lstat()
            out[path.relative_to(run).as_posix()] = (
                stat.st_size,
                stat.st_mtime_ns,
                hashlib.sha256(path.read_bytes()).hexdigest(),
            )
    return out


def test_a_worker_failed_while_frozen_writes_nothing_after_failed(tmp_path):
    stack = Stack(tmp_path)
    try:
        stack.start_api()
        worker = stack.start_worker()
        conn = redis.Redis.from_url(stack.redis.url)
        with Client(stack.url) as client, WorkerGate(worker, client) as gate:
            job = client.submit(LONG)
            run = Path(stack.env["STEPSCOPE_STORE"]) / job["id"]
            lock_file = Path(stack.env["STEPSCOPE_STORE"]) / LOCKS / f"{job['id']}.lock"
            step = 3
            gate.run_to(job["id"], step)
            for _ in range(20):  # frozen inside a write: the janitor would wait for it; let it go a step further
                if not holds_lock(worker.pid, lock_file):
                    break
                step += 2
                gate.run_to(job["id"], step)
            assert not holds_lock(worker.pid, lock_file), "the worker was frozen inside a write 20 times in a row"

            # The janitor fails the job by its own clock: the frozen worker sends no heartbeat.
            wait_until(lambda: client.job(job["id"])["status"] == "failed", 60, "the janitor to fail the frozen job")
            wait_until(lambda: client.manifest(job["id"])["status"] == "failed", 30, "the run to be labelled failed")
            record = conn.hgetall(job_key(job["id"]))
            assert b"lease" not in record  # revoked
            # The stream as Redis holds it (SSE stops at the terminal event, so it would not show one after it).
            events_before = events.read(conn, job["id"], count=100_000)
            assert events_before[-1][1]["type"] == "failed" and "lost" in events_before[-1][1]["error"]
            files_before = snapshot(run)
            assert json.loads((run / "manifest.json").read_text())["partial"] is True
            stored_steps = len(client.manifest(job["id"])["trajectories"]["baseline"]["steps"])
            assert stored_steps >= step

            gate.release()
            # One job at a time: the next one runs only once the worker has left the failed one.
            nxt = client.submit({**LONG, "steps": 3})
            assert client.wait(nxt["id"], timeout=120)["status"] == "finished"

            assert events.read(conn, job["id"], count=100_000) == events_before  # not one event after `failed`
            assert conn.hgetall(job_key(job["id"])) == record  # no progress, heartbeat or status written
            assert snapshot(run) == files_before  # no artifact, no manifest, not even a temporary file
            assert "lease was revoked" in worker.output()
    finally:
        stack.stop()


def test_the_write_lock_holds_writers_out_while_the_janitor_revokes(tmp_path):
    """The store's side of the fence, in one process: a writer blocks while the lock is held exclusively, and a write
    that starts after the revocation is refused before it touches the disk."""
    import threading

    from stepscope.store import Revoked, Store

    store = Store(str(tmp_path / "runs"))
    lease = {"held": True}
    run = store.create("job1", fence=store.fence("job1", lambda: lease["held"]))
    run.write_bytes("a.bin", b"first")
    outcome: list[str] = []

    def write() -> None:
        try:
            run.write_bytes("b.bin", b"second")
            outcome.append("written")
        except Revoked:
            outcome.append("revoked")

    with store.exclusive("job1", timeout=5) as held:
        assert held
        writer = threading.Thread(target=write)
        writer.start()
        writer.join(0.5)
        assert writer.is_alive() and outcome == []  # waiting for the lock: it has not checked its lease yet
        lease["held"] = False  # the revocation, while no write is in progress
    writer.join(10)
    assert outcome == ["revoked"]
    assert sorted(os.listdir(tmp_path / "runs" / "job1")) == ["a.bin"]
    # A writer inside its write keeps the janitor out for as long as it takes.
    lease["held"] = True
    with run.fence.writing():
        with store.exclusive("job1", timeout=0.2) as held:
            assert held is False
