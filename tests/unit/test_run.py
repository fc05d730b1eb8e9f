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


@pytest.mark.parametrize("fmt", ["stepscope-run/1", rf.FORMAT])
def test_both_readable_formats_load(tmp_path, fmt):
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
