"""Full-quality decode of one stored step, on request, after (or while) its run goes on.

The decode goes into the step's own directory with a `decode.json` beside the frames; the
run's manifest is not touched, because the run that owns it may still be writing it.
"""

from __future__ import annotations

import time

import torch

from stepscope.models.loading import LoadedModel
from stepscope.probe.recorder import store_decoded
from stepscope.run import decode_dir, existing_decode, read_manifest, x0_artifact
from stepscope.run_format import DecodeRecord, decode_record_path
from stepscope.store import RunDir
from stepscope.vae import decode_step_latents


@torch.no_grad()
def decode_step(model: LoadedModel, run: RunDir, trajectory: str, step: int) -> dict:
    """Decode member 0 of a stored x̂₀ with the model's step VAE; returns the decode entry."""
    manifest = read_manifest(run)
    done = existing_decode(run, manifest, trajectory, step)
    if done is not None:
        return done
    started = time.perf_counter()
    x0 = torch.from_numpy(run.read_array(x0_artifact(manifest, trajectory, step)))
    frames, dtype = decode_step_latents(model.step_vae, model.pipe.vae, x0[:1])
    stored = store_decoded(run, decode_dir(trajectory, step), frames[0])
    seconds = round(time.perf_counter() - started, 4)
    entry = DecodeRecord(step=step, trajectory=trajectory, **stored, dtype=dtype, seconds=seconds)
    data = entry.model_dump(mode="json")
    run.write_json(decode_record_path(trajectory, step), data)
    return data
