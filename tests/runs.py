"""Run directories made by hand for the service's tests: a manifest that run_format's types accept, with the steps and
previews a test chooses, and nothing else (no model runs)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from stepscope import run_format as rf


def step_record(index: int, steps: int, artifacts: dict[str, str]) -> dict:
    """A captured step's manifest entry: σ falls linearly from 1, t = 1000·σ."""
    sigma = 1 - index / steps
    timings = {"step_seconds": 0.01, "store_seconds": 0.001, "forward_to_stored_seconds": 0.011}
    return {
        "index": index,
        "t": 1000 * sigma,
        "sigma": sigma,
        "expert": "transformer",
        "artifacts": artifacts,
        "timings": timings,
    }


def manifest(run_id: str, steps: int, latent: list[int], records: list[dict], status: str = "finished") -> dict:
    """A manifest of one baseline trajectory holding `records` (step entries), valid as run_format.Manifest."""
    data = rf.Manifest.start(
        id=run_id,
        spec={"model": "tiny", "prompt": "made by hand", "steps": steps},
        model={"name": "tiny"},
        versions={"stepscope": "test"},
        shapes=rf.Shapes(latent=latent, tokens=[1, 1, 1], video=[1, 8, 8], patch=[1, 2, 2]),
        probes=rf.ProbesRecord(
            captured_steps=list(range(steps)), layers=[0], passes=["cond"], decode_steps=[], x0_arrays=False
        ),
        preview=rf.PreviewMap(weight=[[0.0] * latent[0]] * 3, bias=[0.0, 0.0, 0.0], fingerprint="test"),
    ).to_json()
    data["status"] = status
    data["trajectories"] = {
        "baseline": {
            "kind": "baseline",
            "status": status,
            "seeds": [0],
            "guidance": 5.0,
            "guidance_2": None,
            "prompt": "made by hand",
            "steps": records,
        }
    }
    rf.parse_manifest(data)  # what the API checks: a helper that wrote an invalid one would test nothing
    return data


def write_previews(run: Path, steps: int, side: int, seed: int = 0) -> list[dict]:
    """`steps` random side×side previews (incompressible) in `run`; their step entries."""
    rng = np.random.default_rng(seed)
    records = []
    for index in range(steps):
        rel = rf.preview_path("baseline", index)
        (run / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(run / rel, compress_level=1)
        records.append(step_record(index, steps, {"preview": rel}))
    return records


def write_run(run: Path, steps: int, side: int, status: str = "finished") -> dict:
    """A run directory with `steps` previews and its manifest; returns the manifest."""
    run.mkdir(parents=True, exist_ok=True)
    data = manifest(run.name, steps, [16, 1, side // 8, side // 8], write_previews(run, steps, side), status)
    (run / rf.MANIFEST).write_text(json.dumps(data))
    return data
