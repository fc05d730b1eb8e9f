"""Throughput of N stepscope workers, one per GPU, on one Redis queue.

For each worker count in --workers (e.g. "1,2"): start an embedded Redis, N real
`stepscope worker` processes (worker i sees only GPU i through CUDA_VISIBLE_DEVICES), warm
each one up with a short job, then submit a burst of --jobs jobs at once and wait for all of
them. Prints one JSON line per job and per worker count: throughput (jobs per minute from the
first submission to the last result), per-job latency (submitted → finished) and run time,
which worker ran each job, mean GPU utilisation sampled with nvidia-smi during the burst, and
checks that no job was lost or run twice. The last line is the scaling ratio.

    python benchmarks/multi_gpu_throughput.py --workers 1,2 --jobs 8 --steps 10
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backend"))

from jsonl import emit_line  # noqa: E402
from stepscope import events  # noqa: E402
from stepscope.cli import stop_processes  # noqa: E402
from stepscope.embedded_redis import EmbeddedRedis, free_port  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


class GpuSampler:
    """Samples every GPU's utilisation once a second with nvidia-smi while running."""

    def __init__(self):
        self.samples: list[list[int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            try:
                text = subprocess.run(
                    ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                    capture_output=True,
                    text=True,
                    timeout=10,
                ).stdout
                self.samples.append([int(v) for v in text.split()])
            except (OSError, ValueError, subprocess.TimeoutExpired):
                pass

    def __enter__(self) -> GpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def mean_per_gpu(self) -> list[float]:
        if not self.samples:
            return []
        return [round(statistics.mean(col), 1) for col in zip(*self.samples, strict=False)]


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(f"{what} did not happen within {timeout} s")


def run_jobs(api: str, specs: list[dict], timeout: float) -> tuple[list[dict], float, float]:
    """Submit all at once; return (final records, first submit time, last finish time)."""
    started = time.time()
    ids = [httpx.post(f"{api}/api/jobs", json=spec, timeout=60).raise_for_status().json()["id"] for spec in specs]
    records = {}

    def all_done():
        for job_id in ids:
            if job_id not in records:
                record = httpx.get(f"{api}/api/jobs/{job_id}", timeout=30).json()
                if record["status"] in ("finished", "failed", "cancelled"):
                    records[job_id] = record
        return len(records) == len(ids)

    wait_for(all_done, timeout, f"{len(ids)} jobs to end")
    return [records[i] for i in ids], started, time.time()


def measure(count: int, args, out) -> dict:
    scratch = Path(tempfile.mkdtemp(prefix=f"throughput-{count}-", dir=args.scratch))
    server = EmbeddedRedis(scratch / "redis", persistence=False).start()
    port = free_port()
    pythonpath = os.pathsep.join(filter(None, [str(REPO / "backend"), os.environ.get("PYTHONPATH")]))
    env = {
        **os.environ,
        "PYTHONPATH": pythonpath,
        "STEPSCOPE_REDIS_URL": server.url,
        "STEPSCOPE_STORE": str(scratch / "runs"),
        "STEPSCOPE_CACHE_DIR": str(scratch / "cache"),
        "PYTHONUNBUFFERED": "1",
    }
    procs = []
    logs = contextlib.ExitStack()
    try:
        for gpu in range(count):
            worker_env = {**env, "CUDA_VISIBLE_DEVICES": str(gpu)}
            cmd = [
                sys.executable,
                "-m",
                "stepscope.cli",
                "worker",
                "--model",
                args.model,
                "--device",
                args.device,
                "--name",
                f"gpu{gpu}",
            ]
            procs.append(
                subprocess.Popen(
                    cmd,
                    env=worker_env,
                    cwd=REPO,
                    stdout=logs.enter_context(open(scratch / f"worker{gpu}.log", "wb")),
                    stderr=subprocess.STDOUT,
                )
            )
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "stepscope.cli", "api", "--port", str(port)],
                env=env,
                cwd=REPO,
                stdout=logs.enter_context(open(scratch / "api.log", "wb")),
                stderr=subprocess.STDOUT,
            )
        )
        api = f"http://127.0.0.1:{port}"

        def workers_ready():
            for proc in procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"{proc.args[3]} exited with {proc.returncode}")
            try:
                health = httpx.get(f"{api}/api/health", timeout=5).json()
            except (httpx.HTTPError, ValueError):
                return False
            return sum(q["workers"] for q in health.get("queues", {}).values()) == count

        wait_for(workers_ready, 600, f"{count} workers to load {args.model}")
        base = {
            "model": args.model,
            "prompt": "a ball rolls through a maze",
            "height": args.height,
            "width": args.width,
            "frames": args.frames,
            "probes": {"every": 1, "decode_every": args.decode_every},
        }
        # Warm-up: each worker compiles its blocks on its first job.
        # A worker that missed the warm-up would compile inside the burst and skew it, so
        # warm-up rounds go on until every worker has run one (a fast worker may take two).
        warmed: set[str] = set()
        for attempt in range(5):
            warm, _, _ = run_jobs(api, [{**base, "steps": 2, "seed": attempt * count + i} for i in range(count)], 900)
            warmed.update(r["worker"] for r in warm if r["status"] == "finished")
            emit_line({"event": "warmup", "workers": count, "ran_on": sorted(r["worker"] for r in warm)}, out)
            if warmed == {f"gpu{gpu}" for gpu in range(count)}:
                break
        else:
            raise RuntimeError(f"after 5 warm-up rounds only these workers had run a job: {sorted(warmed)}")

        specs = [{**base, "steps": args.steps, "seed": 100 + i} for i in range(args.jobs)]
        with GpuSampler() as sampler:
            records, first, last = run_jobs(api, specs, args.timeout)
        conn_events = {}
        conn = redis.Redis.from_url(server.url)
        for r in records:
            conn_events[r["id"]] = [e["type"] for _, e in events.read(conn, r["id"])]
        for r in records:
            emit_line(
                {
                    "event": "job",
                    "workers": count,
                    "id": r["id"],
                    "worker": r["worker"],
                    "status": r["status"],
                    "latency_seconds": _seconds(r["created"], r["finished"]),
                    "run_seconds": _seconds(r["started"], r["finished"]),
                },
                out,
            )
        seconds = last - first
        result = {
            "event": "throughput",
            "workers": count,
            "model": args.model,
            "steps": args.steps,
            "height": args.height,
            "width": args.width,
            "frames": args.frames,
            "jobs": len(records),
            "all_finished": all(r["status"] == "finished" for r in records),
            "run_twice": [i for i, types in conn_events.items() if types.count("started") != 1],
            "jobs_per_worker": {
                w: sum(r["worker"] == w for r in records) for w in sorted({r["worker"] for r in records})
            },
            "seconds": round(seconds, 2),
            "jobs_per_minute": round(60 * len(records) / seconds, 3),
            "latency_p50": round(statistics.median(_seconds(r["created"], r["finished"]) for r in records), 2),
            "latency_max": round(max(_seconds(r["created"], r["finished"]) for r in records), 2),
            "run_seconds_p50": round(statistics.median(_seconds(r["started"], r["finished"]) for r in records), 2),
            "gpu_utilisation_mean": sampler.mean_per_gpu(),
        }
        emit_line(result, out)
        return result
    except BaseException:
        for path in sorted(scratch.glob("*.log")):
            print(f"--- {path.name} (last lines)\n" + path.read_text(errors="replace")[-3000:], flush=True)
        raise
    finally:
        stop_processes(procs, timeout=60)
        server.stop()
        logs.close()
        shutil.rmtree(scratch, ignore_errors=True)


def _seconds(start: str, end: str) -> float:
    from datetime import datetime

    fmt = "%Y-%m-%dT%H:%M:%S.%fZ"
    return round((datetime.strptime(end, fmt) - datetime.strptime(start, fmt)).total_seconds(), 3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", default="1", help="comma-separated worker counts to measure, e.g. 1,2")
    parser.add_argument("--model", default="wan2.1-1.3b-random")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=832)
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--decode-every", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=3000)
    parser.add_argument("--scratch", default=tempfile.gettempdir())
    parser.add_argument("--out")
    args = parser.parse_args()
    out = open(args.out, "a") if args.out else None
    results = [measure(int(n), args, out) for n in args.workers.split(",")]
    if len(results) > 1:
        base = results[0]
        for r in results[1:]:
            emit_line(
                {
                    "event": "scaling",
                    "from_workers": base["workers"],
                    "to_workers": r["workers"],
                    "throughput_ratio": round(r["jobs_per_minute"] / base["jobs_per_minute"], 3),
                    "target": round(0.95 * r["workers"] / base["workers"], 3),  # 1.9 for 2 workers against 1
                },
                out,
            )
    if out:
        out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
