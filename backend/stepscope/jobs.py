"""Job records and worker presence in Redis, shared by the API and the workers.

A job record is a hash `stepscope:job:<id>`; `stepscope:jobs` (a sorted set by creation time)
lists them. Status moves queued → running → finished | failed | cancelled, each move done
atomically in Redis (a Lua script), and the first terminal status wins. The terminal event is
appended by the same script that sets the terminal status, so the stream and the record always agree.

Fencing: the worker that claims a job gets a lease (a random token in the record's `lease`). Its
events, progress and heartbeats are written by scripts that check the lease in the same atomic step
(`publish_as`, `progress`, `heartbeat`), and its run directory's writes check it through the store's
`Fence`. Any terminal move deletes the lease: a worker the janitor declared lost that wakes up again
writes nothing more (docs/operations.md).
"""

from __future__ import annotations

import datetime
import json
import secrets
import socket
import time
from dataclasses import dataclass

import redis
from rq import Queue
from rq.serializers import JSONSerializer

from stepscope import events, run_format

PREFIX = events.PREFIX
INDEX = f"{PREFIX}:jobs"
RUNNING = f"{PREFIX}:running"
TERMINAL = events.TERMINAL
STATUSES = (events.QUEUED, *run_format.RUN_STATUSES)
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


# A terminal move, its event and the clean-up in one step. KEYS: job, stream, running set, cancel flag. ARGV: allowed
# statuses, fields to set, the event's data, ttl (0: none), the lease it needs ('' any), a heartbeat cutoff ('' none:
# the move happens only if the last heartbeat is older), the job id.
_FINISH = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return false end
local allowed = false
for _, s in ipairs(cjson.decode(ARGV[1])) do
  if s == status then allowed = true end
end
if not allowed then return status end
if ARGV[5] ~= '' and redis.call('HGET', KEYS[1], 'lease') ~= ARGV[5] then return 'revoked' end
if ARGV[6] ~= '' and tonumber(redis.call('HGET', KEYS[1], 'heartbeat') or '0') >= tonumber(ARGV[6]) then
  return 'alive'
end
for k, v in pairs(cjson.decode(ARGV[2])) do redis.call('HSET', KEYS[1], k, v) end
redis.call('HDEL', KEYS[1], 'lease')
redis.call('XADD', KEYS[2], '*', 'data', ARGV[3])
local ttl = tonumber(ARGV[4])
if ttl > 0 then
  redis.call('EXPIRE', KEYS[1], ttl)
  redis.call('EXPIRE', KEYS[2], ttl)
end
redis.call('ZREM', KEYS[3], ARGV[7])
redis.call('DEL', KEYS[4])
return 'ok'
"""

# A lease holder's write: only while the job runs under that lease. KEYS: job, stream. ARGV: lease, event data ('' no
# event), then field/value pairs to set on the record. Returns the event's id (or 'ok'), or false if not held.
_AS_HOLDER = """
if redis.call('HGET', KEYS[1], 'status') ~= 'running' or redis.call('HGET', KEYS[1], 'lease') ~= ARGV[1] then
  return false
end
local id = 'ok'
if ARGV[2] ~= '' then id = redis.call('XADD', KEYS[2], '*', 'data', ARGV[2]) end
if #ARGV > 2 then redis.call('HSET', KEYS[1], unpack(ARGV, 3)) end
return id
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
        self._finish = self.conn.register_script(_FINISH)
        self._as_holder = self.conn.register_script(_AS_HOLDER)

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
        progress = manifest.get("progress")
        if isinstance(progress, (list, tuple)) and len(progress) == 2:
            record["progress_done"], record["progress_total"] = int(progress[0]), int(progress[1])
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

    def start(self, job_id: str, worker: str) -> str | None:
        """queued → running, unless a cancel was asked for first: the new lease (the writer's token), or None."""
        if self.cancel_requested(job_id):
            self.finish(job_id, "cancelled", "cancelled before it started")
            return None
        lease = secrets.token_hex(16)
        fields = {"status": "running", "started": now_iso(), "worker": worker, "heartbeat": time.time(), "lease": lease}
        if self.transition(job_id, ("queued",), **fields) != "ok":
            return None
        self.conn.zadd(RUNNING, {job_id: time.time()})
        return lease

    def _holder_write(self, job_id: str, lease: str, event: dict | None, fields: dict) -> str | None:
        args = [lease, events.encode(event)["data"] if event is not None else ""]
        for key, value in fields.items():
            args += [key, value]
        result = self._as_holder(keys=[job_key(job_id), events.stream_key(job_id)], args=args)
        return result.decode() if isinstance(result, bytes) else result

    def publish_as(self, job_id: str, lease: str, event: dict) -> str | None:
        """Append the lease holder's event (and copy its progress into the record) in one atomic step; its stream id,
        or None if `lease` no longer holds the job (nothing is written then)."""
        if event.get("type") not in events.EVENT_TYPES or events.is_final(event):
            raise ValueError(f"type: {event.get('type')!r} is not an event a running job's writer publishes")
        fields = {}
        progress = event.get("progress")
        if isinstance(progress, dict) and "done" in progress and "total" in progress:
            fields = {"progress_done": progress["done"], "progress_total": progress["total"], "heartbeat": time.time()}
        return self._holder_write(job_id, lease, event, fields)

    def progress(self, job_id: str, done: int, total: int, lease: str) -> bool:
        """Record progress (and a heartbeat) if `lease` still holds the job."""
        fields = {"progress_done": done, "progress_total": total, "heartbeat": time.time()}
        return self._holder_write(job_id, lease, None, fields) is not None

    def heartbeat(self, job_id: str, lease: str) -> bool:
        """Refresh the job's heartbeat if `lease` still holds it."""
        return self._holder_write(job_id, lease, None, {"heartbeat": time.time()}) is not None

    def holds(self, job_id: str, lease: str) -> bool:
        """Whether `lease` still holds the job (it is running under that lease)."""
        status, held = self.conn.hmget(job_key(job_id), ["status", "lease"])
        return status == b"running" and held == lease.encode()

    def control(self, job_id: str, lease: str) -> tuple[bool, bool]:
        """(whether `lease` still holds the job, whether a cancel was asked for) in one round trip."""
        pipe = self.conn.pipeline(transaction=False)
        pipe.hmget(job_key(job_id), ["status", "lease"])
        pipe.exists(cancel_key(job_id))
        (status, held), cancel = pipe.execute()
        return status == b"running" and held == lease.encode(), bool(cancel)

    def finish(
        self,
        job_id: str,
        status: str,
        error: str | None = None,
        *,
        lease: str | None = None,
        silent_before: float | None = None,
        **event_fields,
    ) -> bool:
        """Move to a terminal status and append its event, in one atomic step; False if it was terminal already,
        if `lease` is given and no longer holds the job, or if `silent_before` is given and the job heart-beat since.
        The lease is deleted: its holder writes nothing more."""
        assert status in TERMINAL
        fields = {"status": status, "finished": now_iso()}
        if error:
            fields["error"] = error[:4000]
        event = events.final_event(status, job_id, error[:4000] if error else None, **event_fields)
        keys = [job_key(job_id), events.stream_key(job_id), RUNNING, cancel_key(job_id)]
        args = [
            json.dumps(["queued", "running"]),
            json.dumps(fields),
            events.encode(event)["data"],
            self.ttl or 0,
            lease or "",
            "" if silent_before is None else repr(silent_before),
            job_id,
        ]
        result = self._finish(keys=keys, args=args)
        return (result.decode() if isinstance(result, bytes) else result) == "ok"

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
    def lost(self, lost_after: float = LOST_AFTER) -> list[str]:
        """Running jobs whose worker has been silent for more than `lost_after` seconds."""
        # Silence is counted from when Redis last started too: after a Redis restart every
        # heartbeat looks old until the workers have had time to send a new one.
        uptime = float(self.conn.info("server").get("uptime_in_seconds", 0))
        if uptime <= lost_after:
            return []
        found = []
        for raw_id in self.conn.zrange(RUNNING, 0, -1):
            job_id = raw_id.decode()
            record = self.get(job_id)
            if record is None or record["status"] != "running":
                self.conn.zrem(RUNNING, job_id)
                continue
            if time.time() - record.get("heartbeat", 0.0) > lost_after:
                found.append(job_id)
        return found

    def fail_lost_job(self, job_id: str, lost_after: float = LOST_AFTER) -> bool:
        """Fail a running job whose worker is silent past `lost_after` seconds (checked again in the same atomic step
        as the move, so a heartbeat that came meanwhile keeps it running); revokes the worker's lease."""
        record = self.get(job_id)
        if record is None or record["status"] != "running":
            return False
        silent = time.time() - record.get("heartbeat", 0.0)
        reason = f"worker {record.get('worker', '?')} lost: no heartbeat for {silent:.0f} s"
        cutoff = time.time() - lost_after
        return self.finish(job_id, "failed", reason, silent_before=cutoff, lost_worker=record.get("worker"))

    def fail_lost(self, lost_after: float = LOST_AFTER) -> list[str]:
        """Fail every running job whose worker stopped heart-beating; returns their ids. (The API's janitor does this
        one job at a time under the run's write lock: stepscope.api.app.fail_lost_job.)"""
        return [job_id for job_id in self.lost(lost_after) if self.fail_lost_job(job_id, lost_after)]


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
