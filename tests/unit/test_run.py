"""stepscope.run: load_run over a run directory written through run_format, old and unknown formats."""

from __future__ import annotations

import numpy as np
import pytest

from stepscope import run_format as rf
from stepscope.run import existing_decode, list_decodes, load_run, read_manifest, x0_artifact
from stepscope.spec import SpecError
from stepscope.store import RunDir


def write_run(path, fmt: str = rf.FORMAT) -> RunDir:
    run = RunDir.at(str(path))
    x0 = [np.full((1, 16, 2, 4, 4), i, np.float32) for i in range(2)]
    steps = []
    for i, array in enumerate(x0):
        steps.append(
            {
                "index": i,
                "t": 999.0 - i,
                "sigma": 1.0 - i / 2,
                "expert": "transformer",
                "artifacts": {"x0": run.write_array(rf.x0_path("baseline", i), array)},
                "timings": {"step_seconds": 0.1, "store_seconds": 0.0, "forward_to_stored_seconds": 0.0},
            }
        )
    manifest = {
        "format": fmt,
        "id": "r",
        "status": "finished",
        "created": "2026-01-01T00:00:00Z",
        "spec": {},
        "model": {},
        "versions": {},
        "shapes": {"latent": [16, 2, 4, 4], "tokens": [2, 2, 2], "video": [5, 32, 32], "patch": [1, 2, 2]},
        "probes": {"captured_steps": [0, 1], "layers": [], "passes": ["cond"], "decode_steps": [], "x0_arrays": True},
        "preview": {"weight": [[0.0] * 16] * 3, "bias": [0.0] * 3, "fingerprint": "f"},
        "trajectories": {
            "baseline": {
                "kind": "baseline",
                "status": "finished",
                "seeds": [0],
                "guidance": 5.0,
                "guidance_2": None,
                "prompt": "",
                "steps": steps,
                "decodes": [
                    {"step": 1, "dir": rf.decode_dir("baseline", 1), "frames": 5, "video": "v", "dtype": "float32"}
                ],
            }
        },
    }
    run.write_manifest(manifest)
    return run


@pytest.mark.parametrize("fmt", ["stepscope-run/1", "stepscope-run/2", rf.FORMAT])
def test_every_readable_format_loads(tmp_path, fmt):
    run = write_run(tmp_path / "r", fmt)
    loaded = load_run(run.path)
    assert loaded.record.format_version == rf.READABLE_FORMATS[fmt]
    assert loaded.manifest["format"] == fmt  # the stored JSON, as written
    assert loaded.baseline.steps == [0, 1]
    assert loaded.baseline.x0.shape == (2, 1, 16, 2, 4, 4) and loaded.baseline.x0[1].max() == 1.0
    assert loaded.baseline.entry["guidance"] == 5.0 and loaded.baseline.record.guidance == 5.0
    assert loaded.baseline.commitment_step is None  # no convergence recorded
    with pytest.raises(KeyError, match="no final outputs"):
        _ = loaded.baseline.final_latents


def test_an_unknown_format_is_refused_with_a_clear_error(tmp_path):
    run = write_run(tmp_path / "r", "stepscope-run/9")
    with pytest.raises(rf.RunFormatError, match="'stepscope-run/9' is not one this stepscope reads"):
        load_run(run.path)


def test_x0_lookup_and_decodes(tmp_path):
    run = write_run(tmp_path / "r")
    manifest = read_manifest(run)
    assert x0_artifact(manifest, "baseline", 1) == rf.x0_path("baseline", 1)
    with pytest.raises(SpecError) as exc:
        x0_artifact(manifest, "baseline", 5)
    assert exc.value.field == "step" and "captured: [0, 1]" in exc.value.message
    with pytest.raises(SpecError) as exc:
        x0_artifact(manifest, "nope", 0)
    assert exc.value.field == "trajectory"
    assert existing_decode(run, manifest, "baseline", 1)["dir"] == rf.decode_dir("baseline", 1)
    assert existing_decode(run, manifest, "baseline", 0) is None
    later = {"step": 0, "trajectory": "baseline", "dir": rf.decode_dir("baseline", 0), "frames": 5, "video": "v"}
    run.write_json(rf.decode_record_path("baseline", 0), later)
    assert existing_decode(run, manifest, "baseline", 0) == later
    assert [(d["trajectory"], d["step"]) for d in list_decodes(run, manifest)] == [("baseline", 0), ("baseline", 1)]


def _with_metrics(run: RunDir, name: str, metrics: dict) -> None:
    manifest = run.manifest()
    diff = run.write_array(rf.difference_path(name), np.zeros((2, 2, 4, 4), np.float16))
    file = run.write_json(rf.metrics_path(name), {**metrics, "difference": diff})
    manifest.setdefault("metrics", {})[name] = {
        "file": file,
        "difference": diff,
        "max_cka_x0_distance": 0.5,
        "final_relative_l2": 0.25,
    }
    run.write_manifest(manifest)


def _metrics_json(**extra) -> dict:
    return {
        "variant": "v",
        "baseline": "baseline",
        "steps": [0, 1],
        "cka_x0_distance": [0.0, 0.5],
        "difference_shape": [2, 2, 4, 4],
        "final_relative_l2": 0.25,
        "commitment_step": {"baseline": None, "v": None},
        **extra,
    }


def test_a_format_2_norm_map_metric_reads_under_its_new_name(tmp_path):
    run = write_run(tmp_path / "r", "stepscope-run/2")
    old = {"pass": "cond", "layers": [0, 1], "values": [[0.1, 0.2], [0.3, 0.4]]}
    _with_metrics(run, "v", _metrics_json(layer_norm_cka_distance=old))
    metrics = load_run(run.path).metrics("v")
    assert metrics["layer_norm_map_r2_distance"] == old
    assert "layer_norm_cka_distance" not in metrics
    assert metrics["difference"].shape == (2, 2, 4, 4)


def test_hidden_state_distances_and_sweeps_read_back(tmp_path):
    run = write_run(tmp_path / "r")
    hidden = {"pass": "cond", "layers": [0], "values": [[0.0, None]], "error_bound": [[0.0, None]], "sketch_rows": 512}
    _with_metrics(run, "s.000", _metrics_json(variant="s.000", hidden_state_cka_distance=hidden))
    manifest = run.manifest()
    curve = {
        "cka_x0_distance_final": [0.5],
        "hidden_state_cka_distance_final": [[None]],
        "hidden_state_layers": [0],
        "final_relative_l2": [0.25],
        "score": [None],
    }
    manifest["sweeps"] = {
        "s": {
            "intervention": {"kind": "noise_at_step", "steps": [0], "strength": 1.0},
            "over": "steps",
            "values": [1.0],
            "members": ["s.000"],
            "curve": curve,
        }
    }
    run.write_manifest(manifest)
    loaded = load_run(run.path)
    assert loaded.metrics("s.000")["hidden_state_cka_distance"] == hidden
    assert loaded.sweeps == ["s"]
    sweep = loaded.sweep("s")
    assert sweep["curve"] == curve and sweep["members"] == ["s.000"] and sweep["start_steps"] == []
    with pytest.raises(KeyError, match="no sweep 'x'"):
        loaded.sweep("x")
