"""probe/recorder: captured steps → stored artifacts → manifest → event, on the tiny VAE (CPU)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from stepscope import run_format as rf
from stepscope.models.presets import TinyConfig
from stepscope.models.tiny import build_vae
from stepscope.preview import LinearPreview
from stepscope.probe import metrics
from stepscope.probe.recorder import BackgroundQueue, Decoder, RunOutputs, TrajectoryRecorder
from stepscope.probe.trajectory import StepCapture, TrajectoryResult
from stepscope.store import RunDir

LATENT = (1, 16, 2, 4, 6)  # one member, C, F, H, W
TOKENS = (2, 2, 3)  # patch (1, 2, 2)
LAYERS = 3


@pytest.fixture
def outputs(tmp_path):
    torch.manual_seed(1)
    run = RunDir.at(str(tmp_path / "run"))
    manifest = rf.Manifest.start(
        id="r",
        spec={},
        model={},
        versions={},
        shapes=rf.Shapes(latent=list(LATENT[1:]), tokens=list(TOKENS), video=[5, 32, 48], patch=[1, 2, 2]),
        probes=rf.ProbesRecord(
            captured_steps=[0, 1, 2], layers=[0, 1, 2], passes=["cond"], decode_steps=[1], x0_arrays=True
        ),
        preview=rf.PreviewMap(weight=[[0.0] * 16] * 3, bias=[0.0] * 3, fingerprint="f"),
    )
    events: list[dict] = []
    writer = rf.ManifestWriter(manifest, run.write_manifest)
    gen = np.random.default_rng(0)
    preview = LinearPreview(gen.normal(size=(3, 16)).astype(np.float32) * 0.3, np.zeros(3, np.float32), "f", 0.0)

    def emit(event: dict) -> None:
        # An event names only stored artifacts: check at the moment it is emitted.
        for path in event.get("artifacts", {}).values():
            assert run.exists(path), f"{event['type']} named {path} before it was stored"
        events.append(event)

    out = RunOutputs(
        run=run,
        manifest=writer,
        writer=BackgroundQueue("test-writer"),
        decoder=Decoder(build_vae(TinyConfig()), run, emit),
        preview=preview,
        token_grid=TOKENS,
        store_x0=True,
        decode_steps={1},
        emit=emit,
    )
    out.events = events
    yield out
    out.close()


def capture(index: int, x0: torch.Tensor, norms: torch.Tensor) -> StepCapture:
    now = time.perf_counter()
    return StepCapture(index, 999.0 - index, 1.0 - index / 3, "transformer", x0, {"cond": norms}, now - 0.01, now)


def test_steps_are_stored_exactly_then_announced(outputs):
    entry = rf.TrajectoryEntry(
        kind="baseline", status="running", seeds=[0], guidance=5.0, guidance_2=None, prompt="", steps=[], decodes=[]
    )
    outputs.manifest.start_trajectory("baseline", entry)
    recorder = TrajectoryRecorder(outputs, "baseline", steps=3, keep_norms=True, progress=lambda i: {"done": i + 1})
    gen = torch.Generator().manual_seed(0)
    x0s = [torch.randn(LATENT, generator=gen) for _ in range(3)]
    norms = [torch.rand(1, LAYERS, int(np.prod(TOKENS)), generator=gen) for _ in range(3)]
    for i in range(3):
        recorder.on_step(capture(i, x0s[i], norms[i]))
    final = x0s[2] + 0.5  # differs from the last x̂₀: step 2 is decoded on its own
    result = TrajectoryResult(final, [999.0, 998.0, 997.0], [1.0, 0.67, 0.33], ["transformer"] * 3, [0.01] * 3)
    summary = recorder.finish(result, loop_seconds=0.1, decode_final=False)
    outputs.drain()

    run = outputs.run
    for i in range(3):  # stored as .npy in their own dtype: read back bitwise
        assert np.array_equal(run.read_array(rf.x0_path("baseline", i)), x0s[i].numpy())
        grid = run.read_array(rf.layer_norms_path("baseline", "cond", i))
        assert grid.shape == (1, LAYERS, *TOKENS)
        assert np.array_equal(grid.reshape(1, LAYERS, -1), norms[i].numpy())
        assert np.array_equal(recorder.kept_norms[i]["cond"], norms[i][0].numpy())
    assert np.array_equal(run.read_array(rf.final_latents_path("baseline")), final.numpy())
    steps = [e for e in outputs.events if e["type"] == "step"]
    assert [e["index"] for e in steps] == [0, 1, 2] and steps[1]["progress"] == {"done": 2}
    stored = run.manifest()["trajectories"]["baseline"]
    assert stored["status"] == "finished" and [s["index"] for s in stored["steps"]] == [0, 1, 2]
    assert stored["steps"][2]["artifacts"]["layer_norms.cond"] == rf.layer_norms_path("baseline", "cond", 2)
    # Convergence is the metric of the kept x̂₀ (member 0) against the last one.
    expected = metrics.convergence([x.numpy()[0] for x in x0s])
    assert np.allclose(run.read_array(summary.convergence.file), expected)
    assert summary.convergence.commitment_step == metrics.commitment_step([0, 1, 2], expected)
    # Only step 1 is in decode_steps: one decode, stored in its step directory.
    decodes = {d["step"]: d for d in stored["decodes"]}
    assert set(decodes) == {1} and decodes[1]["dir"] == rf.decode_dir("baseline", 1)
    assert run.exists(rf.frame_path(rf.decode_dir("baseline", 1), 4))
