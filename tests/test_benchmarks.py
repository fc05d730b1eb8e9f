"""The GPU benchmark scripts still run: their smallest configurations on CPU, end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# These tests check that the scripts run, not how fast: with one thread, a core taken by another process does not
# stall OpenMP's barriers (~20 ms per tiny op on 2 threads); the tiny CPU models gain nothing from a second thread.
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}


def _lines(args: list[str], tmp_path: Path, env: dict[str, str] | None = None) -> list[dict]:
    out = tmp_path / "results.jsonl"
    done = subprocess.run(
        [sys.executable, *args, "--scratch", str(tmp_path), "--out", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_overhead_benchmark_compares_plain_and_stepscope(tmp_path):
    lines = _lines(
        ["benchmarks/gpu_overhead.py", "--config", "smoke", "--device", "cpu", "--steps", "4", "--repeats", "1"]
        + ["--height", "64", "--width", "64", "--frames", "5", "--decode-every", "2"]
        + ["--modes", "eager"],  # float32 only: lower-precision decodes are measured on CUDA (refused on CPU, below)
        tmp_path,
        env=ONE_THREAD,
    )
    events = [line["event"] for line in lines]
    assert "plain" in events and "stepscope" in events
    ratios = [line for line in lines if line["event"] == "ratio"]
    assert [r["mode"] for r in ratios] == ["eager"]
    for ratio in ratios:
        assert ratio["wall_ratio"] > 0
        # Eager probes only read tensors; a probe that changed the result would move it by far more than 1e-6.
        assert ratio["final_rel_l2_vs_plain"] < 1e-6


def test_overhead_benchmark_refuses_lower_precision_decodes_on_cpu(tmp_path):
    done = subprocess.run(
        [sys.executable, "benchmarks/gpu_overhead.py", "--config", "smoke", "--device", "cpu"]
        + ["--modes", "eager,eager+fp16-decodes", "--scratch", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "--modes eager+fp16-decodes: lower-precision step decodes are measured on CUDA only" in done.stderr


def test_throughput_benchmark_runs_every_job_once(tmp_path):
    lines = _lines(
        ["benchmarks/multi_gpu_throughput.py", "--model", "tiny", "--device", "cpu", "--workers", "1", "--jobs", "3"]
        + ["--steps", "3", "--height", "64", "--width", "64", "--frames", "5", "--decode-every", "3"],
        tmp_path,
        env=ONE_THREAD,
    )
    (result,) = [line for line in lines if line["event"] == "throughput"]
    assert result["all_finished"] and result["run_twice"] == [] and result["jobs_per_worker"] == {"gpu0": 3}
    assert len([line for line in lines if line["event"] == "job"]) == 3 and result["jobs_per_minute"] > 0
