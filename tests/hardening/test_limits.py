"""Exports in bounded memory, and inputs that used to give a 500: tiny or subnormal fps, a body
nested 1,000 deep, symlinks inside a run directory. The API runs with production defaults."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import httpx
import numpy as np
import redis
from PIL import Image

from stepscope.jobs import Jobs
from tests.runs import write_run
from tests.servers import start_api

MIB = 1 << 20


def vm_hwm_mib(pid: int) -> float:
    """The process's peak resident memory so far."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def synthetic_run(production, steps: int, side: int) -> tuple[str, Path]:
    """A finished job whose run holds `steps` random side×side previews (incompressible frames)."""
    job_id = os.urandom(16).hex()
    Jobs(redis.Redis.from_url(production.redis_url)).create(job_id, "tiny", {"model": "tiny", "steps": steps})
    run = Path(production.env["STEPSCOPE_STORE"]) / job_id
    write_run(run, steps, side)
    return job_id, run


def export_gif(url: str, job_id: str, scale: int) -> io.BytesIO:
    """The run's grid GIF at `scale`, 5 fps, read as a stream."""
    received = io.BytesIO()
    with httpx.stream(
        "GET", f"{url}/api/jobs/{job_id}/export/grid.gif", params={"scale": scale, "fps": 5}, timeout=600
    ) as r:
        assert r.status_code == 200 and r.headers["content-type"] == "image/gif"
        for block in r.iter_bytes():
            received.write(block)
    received.seek(0)
    return received


def test_a_long_large_gif_export_streams_in_bounded_memory(production):
    # 32 frames of 1,536×1,554 pixels: 218 MiB as RGB; holding them all twice over (as before) breaks the bound.
    steps, side, scale = 32, 192, 8
    job_id, _ = synthetic_run(production, steps, side)
    # Its own API: VmHWM is a high-water mark, and the shared API's earlier peaks would hide this export's.
    api = start_api(production.env, production.root / "logs" / "api-gif.log")
    try:
        before = vm_hwm_mib(api.pid)
        received = export_gif(api.url, job_id, scale)
        added = vm_hwm_mib(api.pid) - before
    finally:
        api.stop()
    assert added < 300, f"the export added {added:.0f} MiB to the API's peak RSS"
    gif = Image.open(received)
    assert gif.n_frames == steps
    assert gif.size == (side * scale, side * scale + 18)
    assert gif.info["duration"] == 200 and gif.info["loop"] == 0
    # The last frame shows the last step's preview, upscaled (up to the GIF's 256-colour palette).
    gif.seek(steps - 1)
    preview = np.asarray(
        Image.open(
            Path(production.env["STEPSCOPE_STORE"]) / job_id / f"trajectories/baseline/preview/step_{steps - 1:03d}.png"
        )
    )
    shown = np.asarray(gif.convert("RGB"))[: side * scale : scale, ::scale].astype(int)
    assert np.abs(shown - preview.astype(int)).mean() < 20


def test_mp4_export_is_streamed_with_one_frame_per_step(production):
    import imageio.v3 as iio

    job_id, _ = synthetic_run(production, 6, 64)
    r = httpx.get(f"{production.url}/api/jobs/{job_id}/export/grid.mp4", params={"fps": 4}, timeout=120)
    assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"
    frames = list(iio.imiter(r.content, extension=".mp4"))
    assert len(frames) == 6


def test_tiny_and_subnormal_fps_are_422_naming_fps(production):
    job_id, _ = synthetic_run(production, 2, 32)
    for fps in ("0.001", "5e-324", "0", "-1", "nan", "inf"):
        r = httpx.get(f"{production.url}/api/jobs/{job_id}/export/grid.gif", params={"fps": fps}, timeout=60)
        assert r.status_code == 422, (fps, r.status_code, r.text)
        assert r.json()["field"] == "fps"
    r = httpx.get(f"{production.url}/api/jobs/{job_id}/export/grid.gif", params={"fps": "0.01"}, timeout=60)
    assert r.status_code == 200
    assert Image.open(io.BytesIO(r.content)).info["duration"] == 100_000  # 100 s a frame, as asked


def test_a_body_nested_1000_deep_is_a_json_400(production):
    for body in ("[" * 1000 + "]" * 1000, '{"model":"tiny","prompt":' + "[" * 1000 + "]" * 1000 + "}"):
        r = httpx.post(
            f"{production.url}/api/jobs", content=body, headers={"content-type": "application/json"}, timeout=60
        )
        assert r.status_code == 400, (r.status_code, r.text[:200])
        assert r.headers["content-type"] == "application/json"
        assert r.json()["field"] == "body" and "nested" in r.json()["detail"]


def test_symlinks_in_a_run_directory_are_never_served_listed_or_bundled(production, tmp_path):
    job_id, run = synthetic_run(production, 2, 32)
    secret = tmp_path / "secret.txt"
    secret.write_text("outside the run")
    (run / "leak.txt").symlink_to(secret)
    (run / "linked_dir").symlink_to(tmp_path)
    (run / "inner.png").symlink_to(run / "trajectories/baseline/preview/step_000.png")  # even inside the run
    base = f"{production.url}/api/jobs/{job_id}"
    for rel in ("leak.txt", "linked_dir/secret.txt", "inner.png"):
        for method in ("GET", "HEAD"):
            r = httpx.request(method, f"{base}/artifacts/{rel}", timeout=30)
            assert r.status_code == 404, (rel, method, r.status_code)
            assert "outside the run" not in r.text
    listed = httpx.get(f"{base}/files", timeout=30).json()["files"]
    assert sorted(listed) == sorted(
        ["manifest.json", "trajectories/baseline/preview/step_000.png", "trajectories/baseline/preview/step_001.png"]
    )
    bundle = zipfile.ZipFile(io.BytesIO(httpx.get(f"{base}/export/bundle.zip", timeout=60).content))
    assert sorted(n.split("/", 1)[1] for n in bundle.namelist()) == sorted(listed)
    assert httpx.get(f"{base}/artifacts/trajectories/baseline/preview/step_000.png", timeout=30).status_code == 200
    # A symlinked manifest is not read either.
    (run / "manifest.json").rename(run / "real-manifest.json")
    (run / "manifest.json").symlink_to(run / "real-manifest.json")
    assert httpx.get(f"{base}/manifest", timeout=30).status_code == 404
