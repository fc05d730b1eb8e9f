"""The RQ worker that keeps one model resident and runs experiments on it.

`stepscope worker --model NAME --device cuda:0` loads the model once, then serves the
model's queue with an RQ `SimpleWorker`: jobs run in this process (no fork: CUDA contexts do
not survive one and a 14B model must not be reloaded per job). Job payloads are JSON
(`stepscope.worker.execute_job(job_id)`); the spec itself lives in the job record.

Per job: claim it (queued → running, which gives this worker the job's lease), run the experiment
through the probe engine into the store, publish every event after its artifact is stored, check
for cancellation at every step, stop at the job's deadline, and clean up (hooks are removed by the
engine; caches are freed here) so the next job starts from the same resident model. Every event,
progress update, heartbeat and write into the run directory checks the lease first (jobs.py,
store.Fence): a worker whose job the janitor failed while it was frozen stops at its next write.
A bench job (kind `bench`) runs `stepscope.bench.run_request`, the code of `stepscope bench`,
into the job's directory.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import socket
import threading
import time
import uuid

import redis
from rq import SimpleWorker
from rq.serializers import JSONSerializer

from stepscope import events
from stepscope.bench import parse_bench_request, run_request
from stepscope.config import Settings, compile_on, get_settings, step_decode_dtype_for
from stepscope.jobs import HEARTBEAT_EVERY, Jobs, announce_worker, bench_timeout, queue_name, retire_worker, rq_queue
from stepscope.models import LoadedModel, load_model
from stepscope.probe import Cancelled, run_experiment
from stepscope.probe.decode import decode_step
from stepscope.run_format import BENCH_RESULT, MANIFEST
from stepscope.spec import check_spec
from stepscope.store import Fence, Revoked, Store

log = logging.getLogger("stepscope.worker")


class JobTimeout(Exception):
    pass


class Deadline:
    """The time limit of a job: `limit` seconds for each piece of work (an experiment; a bench's instance), the clock
    restarted by `rearm()` when a piece ends, and `total` seconds for the whole job as a backstop."""

    def __init__(self, limit: float, total: float | None = None, *, what: str = "job", clock=time.monotonic):
        self.limit, self.total, self.what, self.clock = limit, total, what, clock
        self.started = self.piece_started = clock()

    def rearm(self) -> None:
        """A piece of work ended: the next one gets its own `limit` seconds."""
        self.piece_started = self.clock()

    def check(self) -> None:
        """Raise JobTimeout past the piece's limit or the job's total."""
        now = self.clock()
        if self.total is not None and now - self.started > self.total:
            raise JobTimeout(f"job ran past its {self.total:g} s total timeout")
        if now - self.piece_started > self.limit:
            raise JobTimeout(f"{self.what} ran past its {self.limit:g} s timeout")


def bench_deadline(settings: Settings, instances: int, clock=time.monotonic) -> Deadline:
    """A bench job's deadline: `job_timeout` (the limit of one experiment) for each instance, re-armed as each one
    is scored, and `bench_timeout` (job_timeout × instances, the limit RQ's backstop is set from) in total."""
    total = bench_timeout(settings.job_timeout, instances)
    return Deadline(settings.job_timeout, total, what="bench instance", clock=clock)


def rearming(emit, deadline: Deadline):
    """`emit` that restarts `deadline`'s per-piece clock at every `bench_instance` event (an instance scored)."""

    def emit_and_rearm(event: dict) -> None:
        if event.get("type") == events.BENCH_INSTANCE:
            deadline.rearm()
        emit(event)

    return emit_and_rearm


class WorkerShutdown(Exception):
    """The worker was told to stop (SIGTERM/SIGINT) while a job was running."""


# Set by SIGTERM/SIGINT: take no new job, stop the running one at its next step, leave.
SHUTDOWN = threading.Event()


class StepscopeWorker(SimpleWorker):
    """RQ's in-process worker, whose shutdown request also reaches the running job and our own loop."""

    def request_stop(self, signum, frame):
        SHUTDOWN.set()
        super().request_stop(signum, frame)

    def request_force_stop(self, signum, frame):
        SHUTDOWN.set()
        super().request_force_stop(signum, frame)

    def _install_signal_handlers(self) -> None:
        super()._install_signal_handlers()
        if SHUTDOWN.is_set():  # a SIGTERM that came while RQ was starting: its loop stops before taking a job
            self._stop_requested = True

    def unsubscribe(self) -> None:
        """RQ's unsubscribe with its listener thread told to stop *before* UNSUBSCRIBE, and a bounded wait for it.

        RQ sends UNSUBSCRIBE, then stops the thread; from redis-py 8.2 on `stop()` also joins it without a bound. A
        thread that handled the confirmation before the stop has looped into `get_message(timeout=60)` unsubscribed,
        where it waits for a subscription for 60 s: the worker then exited up to a minute after SIGTERM.
        """
        thread = self.pubsub_thread
        if not thread:
            return
        try:
            thread.stop(timeout=0)  # redis-py >= 8.2: stop() joins; 0 only trips the flag
        except TypeError:
            thread.stop()  # redis-py < 8.2: stop() only trips the flag
        self.pubsub.unsubscribe()  # its confirmation wakes the thread, which sees the flag and closes the connection
        thread.join(timeout=5)
        self.pubsub.close()


def _stop_on_signal(signum, frame) -> None:
    log.warning("signal %s: stopping", signal.Signals(signum).name)
    SHUTDOWN.set()


def through_outage(call, what: str, patience: float):
    """Run a Redis call, retrying through an outage of up to `patience` seconds."""
    deadline = time.monotonic() + patience
    delay = 0.2
    while True:
        try:
            return call()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if time.monotonic() > deadline:
                raise
            log.warning("%s: Redis unreachable (%s); retrying in %.1f s", what, exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


class Heartbeat:
    """Keeps the worker's presence key and the running job's heartbeat fresh, off the loop."""

    def __init__(self, conn: redis.Redis, name: str, info: dict):
        self.conn = conn
        self.name = name
        self.info = info
        self.job_id: str | None = None
        self.lease: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stepscope-heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        self._beat()
        self._thread.start()
        return self

    def _beat(self) -> None:
        job_id, lease = self.job_id, self.lease
        announce_worker(self.conn, self.name, {**self.info, "job": job_id})
        if job_id is not None and lease is not None:
            Jobs(self.conn).heartbeat(job_id, lease)  # a no-op once the lease is revoked

    def _run(self) -> None:
        while not self._stop.wait(HEARTBEAT_EVERY):
            try:
                self._beat()
            except redis.RedisError as exc:  # Redis may be restarting; keep trying
                log.warning("heartbeat failed: %s", exc)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            retire_worker(self.conn, self.name)
        except redis.RedisError:
            pass


class ResidentRunner:
    """Runs jobs on one resident model."""

    def __init__(self, model: LoadedModel, conn: redis.Redis, settings: Settings, name: str, heartbeat: Heartbeat):
        self.model = model
        self.conn = conn
        self.settings = settings
        self.name = name
        self.heartbeat = heartbeat
        self.store = Store(settings.store)
        self.jobs = Jobs(conn, ttl=settings.result_ttl)

    def _redis(self, call, what: str):
        return through_outage(call, what, self.settings.redis_patience)

    def _publish(self, job_id: str, lease: str, event: dict) -> None:
        """Publish an event (and its progress) as the job's lease holder; Revoked if the lease is gone."""
        if self._redis(lambda: self.jobs.publish_as(job_id, lease, event), f"event of job {job_id}") is None:
            raise Revoked(f"job {job_id}: its lease was revoked (the job was failed); no more events")

    def _finish(self, job_id: str, lease: str, status: str, error: str | None = None, **fields) -> None:
        self._redis(lambda: self.jobs.finish(job_id, status, error, lease=lease, **fields), f"finishing job {job_id}")

    def _fence(self, job_id: str, lease: str) -> Fence:
        """The fence every write of this job's run goes through: it holds while the lease does."""
        return self.store.fence(job_id, lambda: self._redis(lambda: self.jobs.holds(job_id, lease), "lease"))

    def run(self, job_id: str) -> str:
        record = self._redis(lambda: self.jobs.get(job_id), f"reading job {job_id}")
        if record is None:
            return "missing"
        lease = self._redis(lambda: self.jobs.start(job_id, self.name), f"starting job {job_id}")
        if lease is None:
            return (self.jobs.get(job_id) or {}).get("status", "missing")
        self.heartbeat.job_id, self.heartbeat.lease = job_id, lease
        try:
            self._publish(job_id, lease, events.started_event(job_id, self.name, self.model.name, self.model.device))
            if record.get("kind") == "decode":
                return self._decode(job_id, lease, record)
            if record.get("kind") == "bench":
                return self._bench(job_id, lease, record)
            return self._run_claimed(job_id, lease, record)
        except Revoked as exc:
            log.warning("job %s: %s", job_id, exc)
            return "revoked"
        finally:
            self.heartbeat.job_id = self.heartbeat.lease = None
            self._cleanup()

    def _stop_check(self, job_id: str, lease: str, deadline: Deadline):
        """The engine's `should_stop` for a job: true once a cancel is asked for; raises on worker shutdown, past
        the deadline, and once the job's lease is revoked."""

        def should_stop() -> bool:
            if SHUTDOWN.is_set():
                raise WorkerShutdown(f"worker {self.name} was stopped (SIGTERM) while the job ran")
            deadline.check()
            try:
                holds, cancel = self.jobs.control(job_id, lease)
            except redis.RedisError:
                return False  # Redis is away: nobody can have asked; keep denoising (writes wait for it)
            if not holds:
                raise Revoked(f"job {job_id}: its lease was revoked (the job was failed); stopping")
            return cancel

        return should_stop

    def _emitter(self, job_id: str, lease: str):
        """The engine's `emit` for a job: publish the event and its progress as the lease holder."""

        def emit(event: dict) -> None:
            # Runs on the writer thread: an outage stalls the events, not the denoising loop.
            self._publish(job_id, lease, event)

        return emit

    def _ended(self, job_id: str, lease: str, what: str, body) -> str:
        """Run `body()` (which returns the fields of the `finished` event) and end the job as it went: finished,
        cancelled, or failed with the exception named; the worker and its model carry on either way. A revoked lease
        ends it without a word: the job was failed by the janitor already."""
        try:
            fields = body()
        except Revoked:
            raise
        except Cancelled as exc:
            self._finish(job_id, lease, "cancelled", str(exc))
            return "cancelled"
        except Exception as exc:
            if isinstance(exc.__context__, Revoked) or isinstance(exc.__cause__, Revoked):
                raise Revoked(str(exc)) from exc
            log.exception("%s %s failed", what, job_id)
            self._finish(job_id, lease, "failed", f"{type(exc).__name__}: {exc}")
            return "failed"
        self._finish(job_id, lease, "finished", **fields)
        return "finished"

    def _run_claimed(self, job_id: str, lease: str, record: dict) -> str:
        should_stop = self._stop_check(job_id, lease, Deadline(self.settings.job_timeout))
        emit = self._emitter(job_id, lease)

        def body() -> dict:
            # The record's JSON is checked here once, as the API checked the request: it may come from another
            # version of stepscope, or from anyone who can write to Redis.
            checked = check_spec(record["spec"], self.model.info)
            run = self.store.create(job_id, fence=self._fence(job_id, lease))
            manifest = run_experiment(
                self.model, checked, run, emit=emit, should_stop=should_stop, cache_dir=self.settings.cache_dir
            )
            return {"manifest": MANIFEST, "seconds": manifest["timings"].get("total_seconds")}

        return self._ended(job_id, lease, "job", body)

    def _bench(self, job_id: str, lease: str, record: dict) -> str:
        """A task benchmark (`stepscope bench` as a job): every instance's run, bench.json and bench.md in the job's
        directory; one `bench_instance` event per scored instance. Each instance may run `job_timeout` seconds
        (`bench_deadline`)."""

        def body() -> dict:
            request = parse_bench_request(record["spec"])
            deadline = bench_deadline(self.settings, request.instance_count)
            should_stop = self._stop_check(job_id, lease, deadline)
            if not self._redis(lambda: self.jobs.progress(job_id, 0, request.run_count, lease), "progress"):
                raise Revoked(f"job {job_id}: its lease was revoked (the job was failed)")
            report = run_request(
                self.model,
                request,
                self.store.create(job_id, fence=self._fence(job_id, lease)),
                emit=rearming(self._emitter(job_id, lease), deadline),
                should_stop=should_stop,
                cache_dir=self.settings.cache_dir,
            )
            return {"result": BENCH_RESULT, "success_rate": report["success_rate"]}

        return self._ended(job_id, lease, "bench job", body)

    def _decode(self, job_id: str, lease: str, record: dict) -> str:
        """A full-quality decode of one stored step of another job's run (its writes fenced by this job's lease)."""
        request = record["spec"]
        try:
            run = self.store.open(request["parent"], fence=self._fence(job_id, lease))
            entry = decode_step(self.model, run, request["trajectory"], request["step"])
        except Revoked:
            raise
        except Exception as exc:
            log.exception("decode job %s failed", job_id)
            self._finish(job_id, lease, "failed", f"{type(exc).__name__}: {exc}")
            return "failed"
        self._publish(job_id, lease, events.decode_event(job=request["parent"], **entry))
        self._finish(job_id, lease, "finished", parent=request["parent"])
        return "finished"

    def _cleanup(self) -> None:
        gc.collect()
        if self.model.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()


_RUNNER: ResidentRunner | None = None


def execute_job(job_id: str) -> str:
    """The RQ job function (JSON args): run one queued job on this process's resident model."""
    if _RUNNER is None:
        raise RuntimeError("execute_job runs inside `stepscope worker`, which holds the model")
    return _RUNNER.run(job_id)


def run_worker(
    model_name: str,
    device: str | None = None,
    name: str | None = None,
    burst: bool = False,
    settings: Settings | None = None,
) -> None:
    """Load the model, then serve its queue until stopped (SIGTERM finishes the current job)."""
    global _RUNNER
    settings = settings or get_settings()
    if not settings.redis_url:
        raise SystemExit("set STEPSCOPE_REDIS_URL (or use `stepscope up`, which starts Redis)")
    device = device or settings.device
    name = name or f"{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:6]}"
    conn = redis.Redis.from_url(settings.redis_url)
    log.info("loading %s on %s", model_name, device)
    started = time.perf_counter()
    model = load_model(
        model_name,
        device=device,
        dtype=settings.dtype,
        offload=settings.offload,
        compile=compile_on(settings, device),
        step_decode_dtype=step_decode_dtype_for(settings, device, settings.offload),
    )
    load_seconds = round(time.perf_counter() - started, 2)
    # What lives for the whole process (torch, diffusers, the model: ~450k objects) leaves the collector's sight:
    # each job's gc.collect and the final one at exit walked them all, seconds on a busy CPU after SIGTERM.
    gc.collect()
    gc.freeze()
    queue = queue_name(model_name)
    info = {
        "model": model_name,
        "queue": queue,
        "device": device,
        "pid": os.getpid(),
        "info": model.info.to_json(),
        "load_seconds": load_seconds,
    }
    # From the first announcement on, SIGTERM/SIGINT stop the worker cleanly (it retires its presence), also before
    # RQ's loop has installed its own handlers.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stop_on_signal)
    heartbeat = Heartbeat(conn, name, info).start()
    _RUNNER = ResidentRunner(model, conn, settings, name, heartbeat)
    log.info("worker %s ready on queue %s (model loaded in %.1f s)", name, queue, load_seconds)
    try:
        serve_queue(conn, model_name, name, burst, settings)
    finally:
        heartbeat.stop()
        _RUNNER = None


def serve_queue(conn: redis.Redis, model_name: str, name: str, burst: bool, settings: Settings) -> None:
    """RQ's work loop, restarted after a Redis outage (RQ's own loop exits on one), until SIGTERM/SIGINT."""
    generation = 0
    while not SHUTDOWN.is_set():
        generation += 1
        if generation > 1 and SHUTDOWN.wait(1.0):  # do not spin if RQ's loop keeps ending
            return
        # A fresh RQ name per generation: Redis may still hold the previous one's registration.
        worker = StepscopeWorker(
            [rq_queue(conn, model_name)],
            connection=conn,
            name=f"{name}.{generation}",
            serializer=JSONSerializer,
            default_result_ttl=settings.result_ttl,
        )
        try:
            worker.work(burst=burst, logging_level="WARNING")
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning("Redis went away (%s)", exc)
        # RQ's handlers stay installed after its loop ends; outside it, a signal only sets SHUTDOWN.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, _stop_on_signal)
        while not (burst or SHUTDOWN.is_set()):
            log.warning("waiting for Redis to come back")
            try:
                conn.ping()
                break
            except (redis.ConnectionError, redis.TimeoutError):
                SHUTDOWN.wait(1.0)
        if burst:
            return
