"""The GPU benchmark scripts still run: their smallest configurations on CPU, end to end."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_overhead_benchmark_compares_plain_and_stepscope(tmp_path, monkeypatch):
    # In this process, as the refusal test below: a subprocess would import torch and diffusers again (~9 s), and
    # the script's own process is not what this checks (test_throughput_benchmark_runs_every_job_once runs its
    # script as a subprocess).
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    gpu_overhead = importlib.import_module("gpu_overhead")
    out = tmp_path / "results.jsonl"
    argv = ["gpu_overhead.py", "--config", "smoke", "--device", "cpu", "--steps", "4", "--repeats", "1"]
    argv += ["--height", "64", "--width", "64", "--frames", "5", "--decode-every", "2"]
    # float32 only: lower-precision decodes are measured on CUDA (refused on CPU, below). The regional-compile
    # baseline is measured on the GPU (benchmarks/results/*compiled-baseline.jsonl): Inductor on CPU takes minutes.
    argv += ["--modes", "eager,default", "--baselines", "plain-eager", "--scratch", str(tmp_path), "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    assert gpu_overhead.main() == 0  # it stops its own Redis, also when a run fails halfway
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    events = [line["event"] for line in lines]
    assert "plain" in events and "stepscope" in events
    ratios = {(r["baseline"], r["mode"]): r for r in lines if r["event"] == "ratio"}
    assert list(ratios) == [("plain-eager", "eager"), ("plain-eager", "default")]
    for ratio in ratios.values():
        assert ratio["wall_ratio"] > 0 and ratio["compile"] == {"transformer": "eager"}  # no compilation on CPU
        # Eager probes only read tensors; a probe that changed the result would move it by far more than 1e-6.
        assert ratio["final_rel_l2_vs_plain"] < 1e-6
    # `eager` decodes every 2nd step (the last shares the final decode); `default` has the spec's probes: final only.
    assert ratios["plain-eager", "eager"]["step_decodes"] == [1, "final", 3]
    assert ratios["plain-eager", "default"]["step_decodes"] == ["final"]
    assert ratios["plain-eager", "default"]["decode_dtypes"] == ["float32"]  # CPU default: the VAE's own dtype


def test_overhead_benchmark_refuses_lower_precision_decodes_on_cpu(tmp_path, monkeypatch, capsys):
    # In this process: the suite has torch and diffusers imported already, a subprocess would import them again.
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    gpu_overhead = importlib.import_module("gpu_overhead")
    argv = ["gpu_overhead.py", "--config", "smoke", "--device", "cpu", "--modes", "eager,eager+fp16-decodes"]
    monkeypatch.setattr(sys, "argv", argv + ["--scratch", str(tmp_path)])
    with pytest.raises(SystemExit) as exited:
        gpu_overhead.main()
    assert exited.value.code == 2
    refusal = "--modes eager+fp16-decodes: lower-precision step decodes are measured on CUDA only"
    assert refusal in capsys.readouterr().err


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


def test_candidate_calibration_benchmark_writes_its_results(tmp_path):
    # The smallest run: one family, few videos; the numbers themselves are checked in tests/tasks/test_calibration.py.
    done = subprocess.run(
        [sys.executable, "benchmarks/candidate_calibration.py", "--n", "30", "--curves", "4", "--families",
         "trajectory,maze", "--label", "small", "--out", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stderr[-3000:]  # 1: a share off chance, which 30 videos cannot settle
    record = json.loads((tmp_path / "small.json").read_text())
    assert [r["family"] for r in record["noise"]] == ["trajectory", "maze"]
    assert all(r["n"] == 30 for r in record["noise"]) and record["maze_structure"]["answer"]["count"] == 30
    assert [c["n"] for c in record["noise_curves"]] == [4, 4]
    text = (tmp_path / "small.md").read_text()
    assert "| maze | uniform_full | 30 |" in text and "| trajectory | all | 120 |" in text
    assert done.stdout.strip() == text.strip()


def test_the_training_call_packs_what_must_come_back_and_builds_each_fit(tmp_path, monkeypatch):
    # The device-call driver's own logic (its fits run on a GPU): variant specs, the fit command it builds, and a
    # pack that a person rejoins with `cat NAME.tar.* | tar -x`, in parts no larger than a returned file.
    import tarfile
    from types import SimpleNamespace

    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    train_call = importlib.import_module("train_call")
    assert train_call.parse_variant("b:vae.base_dim=20,vae.seconds=440") == (
        "b",
        ["vae.base_dim=20", "vae.seconds=440"],
    )
    assert train_call.parse_variant("a:") == ("a", [])
    with pytest.raises(SystemExit, match="NAME:OVERRIDE"):
        train_call.parse_variant("not a name:x=1")
    args = SimpleNamespace(config="full", stage="vae", device="cuda", seconds=515.0, vae=None)
    cmd = train_call.fit_command(args, "f", ["vae.seconds=440"], {}, {"f": "weights/mini-reasoner/vae"})
    assert cmd[1:] == [
        "-m", "stepscope.train", "fit", "--config", "full", "--stage", "vae", "--device", "cuda",
        "--out", str(train_call.WORK / "f"), "--max-seconds", "515.0",
        "--init-vae", "weights/mini-reasoner/vae", "--set", "vae.seconds=440",
    ]  # fmt: skip
    source = tmp_path / "run"
    (source / "ckpt").mkdir(parents=True)
    blob = os.urandom(2_500_000)
    (source / "ckpt" / "state.pt.000").write_bytes(blob)
    monkeypatch.setattr(train_call, "WORK", tmp_path)
    monkeypatch.setattr(train_call, "PART_BYTES", 1_000_000)
    out = tmp_path / "out"
    out.mkdir()
    parts = train_call.pack(out, "best", source, ["ckpt", "missing.json"])
    assert parts == ["best.tar.aa", "best.tar.ab", "best.tar.ac"]
    assert all((out / p).stat().st_size <= 1_000_000 for p in parts)
    joined = tmp_path / "joined.tar"
    joined.write_bytes(b"".join((out / p).read_bytes() for p in parts))
    with tarfile.open(joined) as tar:
        assert tar.extractfile("ckpt/state.pt.000").read() == blob


def test_encoder_reuse_benchmark_counts_the_encoders_and_compares_the_runs(tmp_path, monkeypatch):
    # In this process, as the overhead benchmark above: a subprocess would import torch and diffusers again.
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    encoder_reuse = importlib.import_module("encoder_reuse")
    out = tmp_path / "results.jsonl"
    argv = ["--workload", "bench", "--tasks", "maze", "--n", "2", "--steps", "2", "--frames", "9", "--repeats", "2"]
    assert encoder_reuse.main([*argv, "--scratch", str(tmp_path), "--out", str(out)]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    runs, summary = lines[:-1], lines[-1]
    assert [(r["mode"], r["repeat"]) for r in runs] == [("uncached", 0), ("cached", 0), ("cached", 1), ("uncached", 1)]
    for run in runs:  # one trajectory per instance: 2 × (prompt, negative prompt) uncached; the 2 texts once cached
        assert (run["text_encoder_forwards"], run["vae_encodes"]) == ((4, 2) if run["mode"] == "uncached" else (2, 2))
    assert summary["max_final_latent_difference"] < 1e-5 and summary["ratio_cached_over_uncached"] > 0
