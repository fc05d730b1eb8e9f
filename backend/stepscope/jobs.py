"""Job records and worker presence in Redis, shared by the API and the workers.

A job record is a hash `stepscope:job:<id>`; `stepscope:jobs` (a sorted set by creation time)
lists them. Status moves queued → running → finished | failed | cancelled, each move done
atomically in Redis (a Lua script), and the first terminal status wins: a worker that comes
back after its job was declared lost cannot overwrite that. The terminal event is published
by the same call that sets the terminal status, so the stream and the record always agree.
"""

from __future__ import annotations

import datetime
import json
import socket
import time
from dataclasses import dataclass

import redis
from rq import Queue
from rq.serializers import JSONSerializer

from stepscope import events

PREFIX = events.PREFIX
INDEX = f"{PREFIX}:jobs"
RUNNING = f"{PREFIX}:running"
TERMINAL = events.TERMINAL
STATUSES = ("queued", "running", "finished", "failed", "cancelled")
WORKER_TTL = 15  # seconds a worker's presence key lives without a heartbeat
HEARTBEAT_EVERY = 3.0
LOST_AFTER = 30.0  # a running job whose worker has been silent this long is failed
# A stored run without a record whose manifest says running but has not changed this long: its writer is gone.
# Writers outside the service rewrite the manifest at every stored step; 10 minutes covers a sparse 14B sweep.
ABANDONED_AFTER = 600.0
JOB_FUNCTION = "stepscope.worker.execute_job"  # RQ payload: this path and [job_id], as JSON

_TRANSITION = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return false end
local allowed = cjson.decode(ARGV[1])
for _, s in ipairs(allowed) do
  if s == status then
    local fields = cjson.decode(ARGV[2])
    for k, v in pairs(fields) do redis.call('HSET', KEYS[1], k, v) end
    return 'ok'
  end
end
return status
"""


def job_key(job_id: str) -> str:
    return f"{PREFIX}:job:{job_id}"


def cancel_key(job_id: str) -> str:
    return f"{PREFIX}:cancel:{job_id}"


def queue_name(model: str) -> str:
    """One RQ queue per model, so a worker only takes jobs for the model it holds."""
    return f"{PREFIX}:{model}"


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}Z"


def _epoch(iso: str) -> float:
    """Seconds since the epoch of an ISO-8601 time ('…Z' or with an offset); now if it does not parse."""
    try:
        return datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return time.time()


def _decode(raw: dict) -> dict:
    out = {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v) for k, v in raw.items()
    }
    for key in ("progress_done", "progress_total"):
        if key in out:
            out[key] = int(out[key])
    for key in ("heartbeat", "created_ts"):
        if key in out:
            out[key] = float(out[key])
    if "spec" in out:
        out["spec"] = json.loads(out["spec"])
    return out


@dataclass
class Jobs:
    conn: redis.Redis
    ttl: int = 7 * 24 * 3600  # job records and event streams after a terminal status

    def __post_init__(self) -> None:
        self._transition = self.conn.register_script(_TRANSITION)

    # -- records --------------------------------------------------------------------------
    def create(self, job_id: str, model: str, spec: dict, kind: str = "experiment", parent: str | None = None) -> dict:
        created = time.time()
        record = {
            "id": job_id,
            "kind": kind,
            "model": model,
            "queue": queue_name(model),
            "status": "queued",
            "spec": json.dumps(spec),
            "created": now_iso(),
            "created_ts": created,
            "progress_done": 0,
            "progress_total": 0,
        }
        if parent:
            record["parent"] = parent
        pipe = self.conn.pipeline(transaction=True)
        pipe.hset(job_key(job_id), mapping=record)
        pipe.zadd(INDEX, {job_id: created})
        pipe.execute()
        events.publish(self.conn, job_id, events.queued_event(job_id, model, kind))
        return {**record, "spec": json.loads(record["spec"])}  # what `get` returns, without reading it back

    def adopt_stored_run(self, job_id: str, manifest: dict, idle_seconds: float | None = None) -> dict:
        """A record for a stored run that has none, made from its manifest.

        Runs written without the service (`stepscope reproduce`, `bench`, `run --out` into the store) and runs
        whose record's TTL ran out have a run directory but no record; every route needs one. A terminal
        manifest gets a stored record and its final event (two API processes adopting the same run make one
        record: WATCH on its key; the loser returns the winner's). A manifest still `running` may be written
        right now by another process: it gets a record that is not stored (asked again on the next request, so
        it is adopted once it ends), unless the manifest has not changed for `ABANDONED_AFTER` seconds
        (`idle_seconds`, when the store can tell): then the process that wrote it is taken to be gone, `failed`.
        """
        status = manifest.get("status")
        error = manifest.get("error")
        spec = manifest.get("spec") if isinstance(manifest.get("spec"), dict) else {}
        model = str(spec.get("model", "unknown"))
        created = str(manifest.get("created") or now_iso())
        record = {
            "id": job_id,
            "kind": "experiment",
            "model": model,
            "queue": queue_name(model),
            "status": status,
            "spec": json.dumps(spec),
            "created": created,
            "created_ts": _epoch(created),
            "progress_done": 0,
            "progress_total": 0,
            "adopted": "stored run without a job record",
        }
        if status not in TERMINAL:
            if idle_seconds is None or idle_seconds < ABANDONED_AFTER:
                record.update(status="running", adopted="stored run being written outside the service (not stored)")
                record["spec"] = spec
                return record
            status = "failed"
            error = f"no job record, and its manifest has not changed for {idle_seconds:.0f} s: its writer is gone"
        record["status"] = status
        record["finished"] = str(manifest.get("finished") or now_iso())
        if error:
            record["error"] = str(error)[:4000]
        key = job_key(job_id)
        with self.conn.pipeline() as pipe:
            try:
                pipe.watch(key)
                if pipe.exists(key):
                    pipe.unwatch()
                    return self.get(job_id)
                pipe.multi()
                pipe.hset(key, mapping=record)
                pipe.expire(key, self.ttl)
                pipe.zadd(INDEX, {job_id: record["created_ts"]})
                pipe.execute()
            except redis.WatchError:
                return self.get(job_id)
        events.publish(self.conn, job_id, events.final_event(status, job_id, record.get("error")), ttl=self.ttl)
        return self.get(job_id)

    def get(self, job_id: str) -> dict | None:
        raw = self.conn.hgetall(job_key(job_id))
        return _decode(raw) if raw else None

    def list(self, limit: int = 50, offset: int = 0, status: str | None = None, kind: str | None = None) -> list[dict]:
        """Newest first. Records whose TTL ran out are dropped from the index as they are met."""
        out: list[dict] = []
        start = offset
        page = max(limit, 50)
        while len(out) < limit:
            ids = self.conn.zrevrange(INDEX, start, start + page - 1)
            if not ids:
                break
            start += len(ids)
            pipe = self.conn.pipeline()
            for job_id in ids:
                pipe.hgetall(job_key(job_id.decode()))
            for job_id, raw in zip(ids, pipe.execute(), strict=True):
                if not raw:
                    self.conn.zrem(INDEX, job_id)
                    start -= 1
                    continue
                record = _decode(raw)
                if (status is None or record["status"] == status) and (kind is None or record["kind"] == kind):
                    out.append(record)
                    if len(out) == limit:
                        break
        return out

    def count(self) -> int:
        return int(self.conn.zcard(INDEX))

    def transition(self, job_id: str, allowed: tuple[str, ...], **fields) -> str | None:
        """Set `fields` if the job's status is one of `allowed`: 'ok', else the current status
        (None when there is no such job)."""
        result = self._transition(keys=[job_key(job_id)], args=[json.dumps(list(allowed)), json.dumps(fields)])
        return result.decode() if isinstance(result, bytes) else result

    def start(self, job_id: str, worker: str) -> bool:
        """queued → running, unless a cancel was asked for first."""
        if self.cancel_requested(job_id):
            self.finish(job_id, "cancelled", "cancelled before it started")
            return False
        ok = (
            self.transition(
                job_id, ("queued",), status="running", started=now_iso(), worker=worker, heartbeat=time.time()
            )
            == "ok"
        )
        if ok:
            self.conn.zadd(RUNNING, {job_id: time.time()})
        return ok

    def progress(self, job_id: str, done: int, total: int) -> None:
        self.conn.hset(
            job_key(job_id), mapping={"progress_done": done, "progress_total": total, "heartbeat": time.time()}
        )

    def heartbeat(self, job_id: str) -> None:
        self.conn.hset(job_key(job_id), "heartbeat", time.time())

    def finish(self, job_id: str, status: str, error: str | None = None, **event_fields) -> bool:
        """Move to a terminal status and publish its event; False if it was terminal already."""
        assert status in TERMINAL
        fields = {"status": status, "finished": now_iso()}
        if error:
            fields["error"] = error[:4000]
        if self.transition(job_id, ("queued", "running"), **fields) != "ok":
            return False
        event = events.final_event(status, job_id, error[:4000] if error else None, **event_fields)
        events.publish(self.conn, job_id, event, ttl=self.ttl)
        pipe = self.conn.pipeline()
        pipe.expire(job_key(job_id), self.ttl)
        pipe.zrem(RUNNING, job_id)
        pipe.delete(cancel_key(job_id))
        pipe.execute()
        return True

    def delete(self, job_id: str) -> None:
        pipe = self.conn.pipeline()
        pipe.delete(job_key(job_id), cancel_key(job_id), events.stream_key(job_id))
        pipe.zrem(INDEX, job_id)
        pipe.zrem(RUNNING, job_id)
        pipe.execute()

    # -- cancellation ---------------------------------------------------------------------
    def request_cancel(self, job_id: str) -> None:
        self.conn.set(cancel_key(job_id), 1, ex=self.ttl)

    def cancel_requested(self, job_id: str) -> bool:
        return bool(self.conn.exists(cancel_key(job_id)))

    # -- lost workers ---------------------------------------------------------------------
    def fail_lost(self, lost_after: float = LOST_AFTER) -> list[str]:
        """Fail running jobs whose worker stopped heart-beating; returns their ids."""
        failed = []
        # Silence is counted from when Redis last started too: after a Redis restart every
        # heartbeat looks old until the workers have had time to send a new one.
        uptime = float(self.conn.info("server").get("uptime_in_seconds", 0))
        for raw_id in self.conn.zrange(RUNNING, 0, -1):
            job_id = raw_id.decode()
            record = self.get(job_id)
            if record is None or record["status"] != "running":
                self.conn.zrem(RUNNING, job_id)
                continue
            silent = min(time.time() - record.get("heartbeat", 0.0), uptime)
            if silent > lost_after:
                reason = f"worker {record.get('worker', '?')} lost: no heartbeat for {silent:.0f} s"
                if self.finish(job_id, "failed", reason, lost_worker=record.get("worker")):
                    failed.append(job_id)
        return failed


WORKERS = f"{PREFIX}:workers"  # hash: worker name → JSON presence, with the time it was last seen


def announce_worker(conn: redis.Redis, name: str, info: dict) -> None:
    presence = {**info, "name": name, "host": socket.gethostname(), "seen": time.time()}
    conn.hset(WORKERS, name, json.dumps(presence))


def retire_worker(conn: redis.Redis, name: str) -> None:
    conn.hdel(WORKERS, name)


def live_workers(conn: redis.Redis, ttl: float = WORKER_TTL) -> list[dict]:
    """Workers seen within `ttl` seconds; those silent for longer are dropped from the hash."""
    now = time.time()
    live, stale = [], []
    for name, raw in conn.hgetall(WORKERS).items():
        presence = json.loads(raw)
        if now - presence.get("seen", 0) <= ttl:
            live.append(presence)
        else:
            stale.append(name)
    if stale:
        conn.hdel(WORKERS, *stale)
    return live


def rq_queue(conn: redis.Redis, model: str) -> Queue:
    return Queue(queue_name(model), connection=conn, serializer=JSONSerializer)


def bench_timeout(job_timeout: int, instances: int) -> int:
    """Seconds a bench job may run in all (the backstop; RQ's timeout is set from it): `job_timeout` per instance.
    The worker also limits each instance to `job_timeout` (`worker.bench_deadline`)."""
    return job_timeout * max(1, instances)


def enqueue(conn: redis.Redis, job_id: str, model: str, job_timeout: int, ttl: int) -> int:
    """Put a job on its model's queue (after its record exists); returns its 0-based position there."""
    queue = rq_queue(conn, model)
    # RQ's writes and the queue's length in one transaction: one round trip, and the position is the job's own.
    pipe = conn.pipeline()
    queue.enqueue(
        JOB_FUNCTION,
        job_id,
        job_id=job_id,
        # The engine stops itself at job_timeout; RQ's own timeout is only a backstop.
        job_timeout=job_timeout + 300,
        result_ttl=ttl,
        failure_ttl=ttl,
        pipeline=pipe,
    )
    pipe.llen(queue.key)
    return pipe.execute()[-1] - 1
