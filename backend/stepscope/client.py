"""Python client for the stepscope REST API.

from stepscope import Client

client = Client("http://127.0.0.1:8000")
job = client.submit({"model": "tiny", "prompt": "a ball rolls through a maze", "steps": 20})
final = client.wait(job["id"], progress=True)
norms = client.array(job["id"], "trajectories/baseline/layer_norms/cond/step_010.npy")
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np

from stepscope.events import STREAM_CLOSING, TERMINAL


class ApiError(RuntimeError):
    """A non-2xx answer; `status`, `detail` and `field` come from the API's JSON error."""

    def __init__(self, status: int, detail: str, field: str | None = None):
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail
        self.field = field


class Client:
    def __init__(self, url: str = "http://127.0.0.1:8000", token: str | None = None, timeout: float = 30.0):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check(self, response: httpx.Response) -> httpx.Response:
        if response.is_success:
            return response
        try:
            body = response.json()
            detail, field = body.get("detail", response.text), body.get("field")
        except ValueError:
            detail, field = response.text, None
        raise ApiError(response.status_code, str(detail), field)

    # -- jobs -----------------------------------------------------------------------------
    def submit(self, spec: dict, image: str | Path | bytes | None = None) -> dict:
        """Queue an experiment; `image` (a path or PNG/JPEG bytes) is the first frame for I2V."""
        if image is None:
            return self._check(self.http.post("/api/jobs", json=spec)).json()
        data = Path(image).read_bytes() if isinstance(image, (str, Path)) else image
        files = {"image": ("first_frame.png", data, "application/octet-stream")}
        return self._check(self.http.post("/api/jobs", data={"spec": json.dumps(spec)}, files=files)).json()

    def bench(
        self,
        model: str = "tiny-i2v",
        tasks: list[str] | None = None,
        n: int = 10,
        variants: list[dict] | None = None,
        *,
        steps: int | None = None,
        size: int | None = None,
        frames: int | None = None,
        difficulty: int | None = None,
        first_seed: int | None = None,
        curves: str | None = None,
    ) -> dict:
        """Queue a task benchmark (`stepscope bench` as a job): `n` instances of each family in `tasks` (default:
        all), each run as the baseline and every spec variant in `variants`. Returns the job; follow it with
        `wait`, then read success rates and intervals with `bench_result`. Options left None take the API's
        defaults (docs/tasks.md)."""
        options = {
            "tasks": tasks,
            "variants": variants,
            "steps": steps,
            "size": size,
            "frames": frames,
            "difficulty": difficulty,
            "first_seed": first_seed,
            "curves": curves,
        }
        body = {"model": model, "n": n, **{k: v for k, v in options.items() if v is not None}}
        return self._check(self.http.post("/api/bench", json=body)).json()

    def bench_result(self, job_id: str) -> dict:
        """A bench job and its summary: `{"job": ..., "result": the summary or None, "table": bench.md or None,
        "links": {"bench_json": URL of the full bench.json or None}}` (docs/api.md, Bench jobs)."""
        return self._check(self.http.get(f"/api/bench/{job_id}")).json()

    def bench_json(self, job_id: str) -> dict:
        """The full bench.json of a bench job (the summary and every instance with its curves; large for big
        benches), once written; ApiError 404 naming `bench_json` before."""
        link = self.bench_result(job_id)["links"]["bench_json"]
        if link is None:
            raise ApiError(404, f"bench_json: job {job_id} has not written bench.json (yet)", "bench_json")
        return self._check(self.http.get(link)).json()

    def job(self, job_id: str) -> dict:
        return self._check(self.http.get(f"/api/jobs/{job_id}")).json()

    def jobs(self, status: str | None = None, limit: int = 50) -> list[dict]:
        params = {"limit": limit, **({"status": status} if status else {})}
        return self._check(self.http.get("/api/jobs", params=params)).json()["jobs"]

    def cancel(self, job_id: str) -> dict:
        return self._check(self.http.post(f"/api/jobs/{job_id}/cancel")).json()

    def delete(self, job_id: str) -> None:
        self._check(self.http.delete(f"/api/jobs/{job_id}"))

    def models(self) -> list[dict]:
        return self._check(self.http.get("/api/models")).json()["models"]

    def health(self) -> dict:
        return self._check(self.http.get("/api/health")).json()

    # -- events ---------------------------------------------------------------------------
    def events(
        self, job_id: str, last_event_id: str | None = None, timeout: float = 600.0
    ) -> Iterator[tuple[str, dict]]:
        """(event id, event) from the job's SSE stream until its terminal event (or until the API closes
        the stream for a shutdown: then resume with the last id seen, as `wait` does)."""
        headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
        with self.http.stream(
            "GET", f"/api/jobs/{job_id}/events", headers=headers, timeout=httpx.Timeout(timeout, connect=10)
        ) as response:
            self._check_stream(response)
            event_id, data = None, []
            for line in response.iter_lines():
                if line.startswith("id:"):
                    event_id = line[3:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())
                elif line == "" and data:
                    event = json.loads("\n".join(data))
                    data = []
                    if event.get("type") == STREAM_CLOSING:
                        return
                    yield event_id, event
                    if event.get("type") in TERMINAL:
                        return

    def _check_stream(self, response: httpx.Response) -> None:
        if not response.is_success:
            response.read()
            self._check(response)

    def wait(self, job_id: str, progress: bool = False, timeout: float = 3600.0) -> dict:
        """Follow the job to its end (printing progress if asked); returns the final job record."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                for event_id, event in self.events(job_id, last_event_id=last, timeout=deadline - time.monotonic()):
                    last = event_id
                    if progress and event.get("progress"):
                        p = event["progress"]
                        print(f"\r{job_id[:8]} {event['type']:<18} {p['done']}/{p['total']}", end="", flush=True)
                    if event.get("type") in TERMINAL:
                        if progress:
                            print()
                        return self.job(job_id)
            except httpx.TransportError:
                time.sleep(1.0)  # reconnect and resume after the last event seen
        raise TimeoutError(f"job {job_id} did not end within {timeout} s")

    # -- artifacts ------------------------------------------------------------------------
    def manifest(self, job_id: str) -> dict:
        return self._check(self.http.get(f"/api/jobs/{job_id}/manifest")).json()

    def artifact(self, job_id: str, path: str) -> bytes:
        return self._check(self.http.get(f"/api/jobs/{job_id}/artifacts/{path}")).content

    def array(self, job_id: str, path: str) -> np.ndarray:
        """A stored .npy artifact as a numpy array."""
        return np.load(io.BytesIO(self.artifact(job_id, path)), allow_pickle=False)

    def files(self, job_id: str) -> list[str]:
        return self._check(self.http.get(f"/api/jobs/{job_id}/files")).json()["files"]

    def sweep(self, job_id: str, name: str) -> dict:
        """A sweep of a job: swept parameter, values, member trajectories and the summary `curve` against the values
        (final 1 − CKA of x̂₀ and of hidden states, final relative L2, task score), as `load_run(...).sweep(name)`."""
        sweeps = self.manifest(job_id).get("sweeps") or {}
        if name not in sweeps:
            raise KeyError(f"job {job_id} has no sweep {name!r}; sweeps: {sorted(sweeps)}")
        return sweeps[name]
