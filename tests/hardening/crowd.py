"""A crowd of SSE viewers of one job, on raw asyncio sockets (thousands fit in one process).

Used by tests/hardening/test_crowd.py, and runnable on its own to measure the API at 1,000 viewers:

    python -m tests.hardening.crowd --viewers 1000

starts embedded Redis, the API and a tiny worker, has the viewers follow one running job (a third
from the start, a third joining late, a third resuming with Last-Event-ID), checks that each got
every event after its start, in order, once, and prints the API's RSS before, during and after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

from stepscope import events


async def view(url: str, job_id: str, last_event_id: str | None = None, joined: asyncio.Event | None = None) -> list:
    """(id, type) of every event the stream sends, until the final one (or the stream ends)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port), limit=1 << 20)
    resume = f"Last-Event-ID: {last_event_id}\r\n" if last_event_id else ""
    writer.write(
        f"GET /api/jobs/{job_id}/events HTTP/1.1\r\nHost: {host}\r\n{resume}Connection: close\r\n\r\n".encode()
    )
    seen: list[tuple[str | None, str]] = []
    try:
        status = (await reader.readline()).split()[1]
        assert status == b"200", status
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        if joined is not None:
            joined.set()
        event_id, buffer = None, b""
        while True:
            size = int((await reader.readline()).strip() or b"0", 16)
            if size == 0:
                return seen
            buffer += await reader.readexactly(size)
            await reader.readline()
            *lines, buffer = buffer.split(b"\n")
            for raw in lines:
                line = raw.decode()
                if line.startswith("id: "):
                    event_id = line[4:]
                elif line.startswith("data: "):
                    event = json.loads(line[6:])
                    seen.append((event_id, event["type"]))
                    if event["type"] in events.TERMINAL:
                        return seen
    finally:
        writer.close()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def crowd(url: str, job_id: str, viewers: int, events_so_far, api_pid: int | None = None) -> dict:
    """Viewers in three groups: from the start, late (after the job's first step), resuming after
    the `started` event. Returns each group's streams and the API's peak RSS while they watched."""
    early = [asyncio.create_task(view(url, job_id)) for _ in range(viewers - 2 * (viewers // 3))]
    stored = await _wait_for(events_so_far, lambda evs: any(e["type"] == "step" for _, e in evs))
    started_id = next(i for i, e in stored if e["type"] == "started")
    late = [asyncio.create_task(view(url, job_id)) for _ in range(viewers // 3)]
    resumed = [asyncio.create_task(view(url, job_id, last_event_id=started_id)) for _ in range(viewers // 3)]
    peak = 0.0
    everyone = [*early, *late, *resumed]
    while not all(t.done() for t in everyone):
        if api_pid is not None:
            peak = max(peak, rss_mib(api_pid))
        await asyncio.sleep(0.2)
    return {
        "early": [t.result() for t in early],
        "late": [t.result() for t in late],
        "resumed": [t.result() for t in resumed],
        "started_id": started_id,
        "peak_rss_mib": peak,
    }


async def _wait_for(fetch, ready, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = await asyncio.to_thread(fetch)
        if ready(found):
            return found
        await asyncio.sleep(0.05)
    raise TimeoutError("the job did not reach its first step in time")


def check(result: dict, reference: list[tuple[str, str]]) -> None:
    """Every viewer got exactly the events after its start, in order, once."""
    for stream in result["early"] + result["late"]:
        assert stream == reference, (len(stream), len(reference))
    after = [i for i, _ in reference].index(result["started_id"]) + 1
    for stream in result["resumed"]:
        assert stream == reference[after:], (len(stream), len(reference) - after)


def main() -> None:
    import httpx
    import redis

    from stepscope.embedded_redis import EmbeddedRedis
    from tests.servers import service_env, start_api, start_worker

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--viewers", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(Path(tmp) / "redis", persistence=False) as server:
        env = service_env(server.url, f"{tmp}/runs", f"{tmp}/cache")
        worker = start_worker(env, Path(tmp) / "worker.log")
        api = start_api(env, Path(tmp) / "api.log")
        try:
            idle = rss_mib(api.pid)
            spec = {"model": "tiny", "prompt": "watched by a crowd", "steps": args.steps, "height": 96, "width": 96}
            job_id = httpx.post(f"{api.url}/api/jobs", json=spec, timeout=30).json()["id"]
            conn = redis.Redis.from_url(server.url)
            started = time.monotonic()
            result = asyncio.run(crowd(api.url, job_id, args.viewers, lambda: events.read(conn, job_id), api.pid))
            seconds = time.monotonic() - started
            reference = [(i, e["type"]) for i, e in events.read(conn, job_id)]
            check(result, reference)
            after = rss_mib(api.pid)
        finally:
            api.stop()
            worker.stop()
    rss = {"idle": round(idle, 1), "peak": round(result["peak_rss_mib"], 1), "after": round(after, 1)}
    print(
        json.dumps(
            {
                "viewers": args.viewers,
                "events": len(reference),
                "seconds": round(seconds, 1),
                "api_rss_mib": rss,
                "every_viewer_got_every_event_in_order_once": True,
            }
        )
    )


if __name__ == "__main__":
    main()
