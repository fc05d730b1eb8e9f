"""Every process stops within 10 s of SIGTERM: an idle worker, and a worker in the middle of a job
(whose job then fails, saying why, instead of being left `running`).

No API runs: the test queues the job as the API does (a record, then RQ), so the failure it reads was
recorded by the worker itself, not by the API's janitor."""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor

import redis
from rq.serializers import JSONSerializer

from stepscope.config import Settings
from stepscope.embedded_redis import EmbeddedRedis
from stepscope.jobs import Jobs, enqueue, live_workers, rq_queue
from stepscope.spec import parse_spec
from stepscope.store import new_run_id
from stepscope.worker import SHUTDOWN, StepscopeWorker
from tests.hardening.conftest import Stack
from tests.servers import StreamEvents, WorkerGate

STOP_WITHIN = 10.0


def _exit_time(proc, sent: float) -> float:
    """Seconds from `sent` (a monotonic time) until the process has exited. A process's exit has no time stamp of the
    service's own: the test's clock, which can only make it look slower."""
    proc.process.wait(timeout=STOP_WITHIN + 20)
    return time.monotonic() - sent


def test_idle_and_busy_workers_exit_within_10_s_of_sigterm(stack: Stack):
    with ThreadPoolExecutor(2) as pool:
        idle, busy = pool.map(lambda _: stack.start_worker(), range(2))
    conn = redis.Redis.from_url(stack.redis.url)

    sent = time.monotonic()
    idle.process.send_signal(signal.SIGTERM)
    took = _exit_time(idle, sent)
    assert took < STOP_WITHIN, f"idle worker took {took:.1f} s"
    assert "waiting for Redis to come back" not in idle.output()
    assert idle.name not in {w["name"] for w in live_workers(conn)}

    spec = parse_spec({"model": "tiny", "prompt": "stopped midway", "steps": 200, "height": 64, "width": 64})
    jobs, job_id, defaults = Jobs(conn), new_run_id(), Settings()
    with WorkerGate(busy, StreamEvents(conn)) as gate:
        gate.hold()
        jobs.create(job_id, spec.model, spec.model_dump(mode="json"))
        enqueue(conn, job_id, spec.model, defaults.job_timeout, defaults.result_ttl)
        gate.run_to(job_id, 3)  # frozen mid-run, with ~196 steps to go however fast the machine is
        assert jobs.get(job_id)["status"] == "running"
        busy.process.send_signal(signal.SIGTERM)  # pending while frozen: delivered mid-run, the moment it goes on
        sent = time.monotonic()
    took = _exit_time(busy, sent)
    assert took < STOP_WITHIN, f"busy worker took {took:.1f} s"
    record = jobs.get(job_id)
    assert record["status"] == "failed"
    assert "WorkerShutdown" in record["error"] and "SIGTERM" in record["error"]
    assert record["progress_done"] < 200


def test_a_stop_that_came_while_rq_was_starting_ends_its_loop_before_any_job(tmp_path):
    """SIGTERM between the worker's first announcement and RQ's own handlers only sets SHUTDOWN: RQ's loop must
    then stop before it takes a job (in-process, RQ's burst mode: a loop that ignored it would run the queued job)."""
    server = EmbeddedRedis(tmp_path / "redis", persistence=False).start()
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}  # RQ installs its own
    try:
        conn = redis.Redis.from_url(server.url)
        enqueue(conn, "waiting-job", "tiny", 60, 60)
        worker = StepscopeWorker([rq_queue(conn, "tiny")], connection=conn, name="starting", serializer=JSONSerializer)
        SHUTDOWN.set()
        assert worker.work(burst=True, logging_level="WARNING") is False, "the loop took a job after the stop"
        assert rq_queue(conn, "tiny").job_ids == ["waiting-job"]
    finally:
        SHUTDOWN.clear()
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        server.stop()
