"""The probe engine on the tiny models: x̂₀, layer norms, experts, determinism, hook hygiene."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import stepscope
from stepscope.models import load_model
from stepscope.probe import run_experiment, run_trajectory
from stepscope.probe.trajectory import Cancelled, ProbeError, StepSink
from stepscope.spec import check_spec

from .helpers import BlockOutputs, CollectingSink, inputs


def _scheduler_spy(model):
    """Record, independently of stepscope, what each scheduler.step saw and stored."""
    sched = model.pipe.scheduler
    original = sched.step
    seen = []

    def step(model_output, timestep, sample, *args, **kwargs):
        index = 0 if sched.step_index is None else sched.step_index
        out = original(model_output, timestep, sample, *args, **kwargs)
        sigma = sched.sigmas[index]
        own = sched.model_outputs[-1].clone() if hasattr(sched, "model_outputs") else None
        seen.append({"formula": sample.float() - sigma * model_output.float(), "own": own, "sigma": float(sigma)})
        return out

    sched.step = step
    return seen, lambda: delattr(sched, "step")


def test_x0_is_exactly_the_schedulers_own_unipc(tiny):
    seen, undo = _scheduler_spy(tiny)
    sink = CollectingSink()
    try:
        result = run_trajectory(tiny, inputs(), sink=sink)
    finally:
        undo()
    assert len(sink.captures) == len(seen) == 12
    for capture, ref in zip(sink.captures, seen, strict=True):
        # Bitwise by construction: the capture copies the scheduler's own tensor, and the formula
        # is two correctly rounded elementwise IEEE ops on the same tensors (no reduction order).
        assert torch.equal(capture.x0, ref["own"]), "x̂₀ differs from UniPC's model_outputs[-1]"
        assert (capture.x0 - ref["formula"]).abs().max().item() == 0.0
        assert capture.sigma == ref["sigma"]
    # σ comes from the scheduler's table, not from t/1000.
    assert result.sigmas == [float(s) for s in tiny.pipe.scheduler.sigmas[:12]]
    assert result.sigmas[3] != result.timesteps[3] / 1000
    torch.testing.assert_close(sink.captures[-1].x0, result.final_latents, rtol=0, atol=1e-6)


def test_x0_for_euler_is_sample_minus_sigma_v(tiny_euler):
    seen, undo = _scheduler_spy(tiny_euler)
    sink = CollectingSink()
    try:
        result = run_trajectory(tiny_euler, inputs(steps=8), sink=sink)
    finally:
        undo()
    assert seen[0]["own"] is None  # Euler keeps no x0 of its own
    for capture, ref in zip(sink.captures, seen, strict=True):  # elementwise IEEE ops on the same tensors: exact
        assert (capture.x0 - ref["formula"]).abs().max().item() == 0.0
    torch.testing.assert_close(sink.captures[-1].x0, result.final_latents, rtol=0, atol=1e-5)


def test_capture_does_not_change_the_result(tiny):
    plain = tiny.pipe(
        prompt="a red ball rolls through a maze",
        negative_prompt="blurry",
        height=64,
        width=64,
        num_frames=17,
        num_inference_steps=12,
        guidance_scale=5.0,
        generator=torch.Generator().manual_seed(0),
        output_type="latent",
    ).frames
    probed = run_trajectory(tiny, inputs(), layers=range(8), passes="both", sink=CollectingSink())
    # Same process, same weight tensors, same shapes, so the same kernels: probes that only read
    # leave the result bitwise unchanged (a probe that wrote anything would break this).
    assert torch.equal(plain, probed.final_latents)


def test_same_seed_same_run_other_seed_other_run(tiny):
    # 4 steps: the seed decides the initial noise, every later step is the same computation on it.
    a = run_trajectory(tiny, inputs(seeds=[3], steps=4), sink=CollectingSink()).final_latents
    b = run_trajectory(tiny, inputs(seeds=[3], steps=4), sink=CollectingSink()).final_latents
    c = run_trajectory(tiny, inputs(seeds=[4], steps=4), sink=CollectingSink()).final_latents
    assert torch.equal(a, b)  # same process, same weights, same kernels: CPU kernels repeat bitwise
    assert not torch.allclose(a, c)


def test_layer_norms_match_a_direct_computation(tiny):
    sink = CollectingSink()
    with BlockOutputs(tiny) as direct:
        run_trajectory(tiny, inputs(steps=4), layers=[0, 3, 7], passes="both", sink=sink)
    forwards = direct.per_forward(8)
    assert len(forwards) == 8  # 4 steps × (cond, uncond)
    for step, capture in enumerate(sink.captures):
        for pass_index, pass_name in enumerate(("cond", "uncond")):
            outputs = forwards[2 * step + pass_index][1]
            expected = torch.stack([torch.linalg.norm(outputs[layer], dim=-1) for layer in (0, 3, 7)], dim=1)
            torch.testing.assert_close(capture.layer_norms[pass_name], expected, rtol=1e-6, atol=1e-6)


def test_stored_norms_have_the_token_grid_shape(tiny, run_dir):
    spec = check_spec(
        {"prompt": "grid", "steps": 3, "height": 64, "width": 96, "frames": 9, "probes": {"layers": [1, 2]}},
        tiny.info,
    )
    with BlockOutputs(tiny) as direct:
        run_experiment(tiny, spec, run_dir)
    run = stepscope.load_run(run_dir.path)
    # latent (16, 3, 8, 12) → tokens (3/1, 8/2, 12/2)
    assert run.manifest["shapes"]["latent"] == [16, 3, 8, 12]
    assert run.manifest["shapes"]["tokens"] == [3, 4, 6]
    norms = run.baseline.layer_norms("cond")
    assert norms.shape == (3, 1, 2, 3, 4, 6)
    first_cond = direct.per_forward(8)[0][1]
    # Tokens are frame-major: idx = f·(H'·W') + h·W' + w.
    expected = torch.linalg.norm(first_cond[2], dim=-1)[0].reshape(3, 4, 6).numpy()
    np.testing.assert_allclose(norms[0, 0, 1], expected, rtol=1e-6)
    assert norms[0, 0, 1, 2, 3, 5] == pytest.approx(
        float(torch.linalg.norm(first_cond[2][0, 2 * 24 + 3 * 6 + 5])), rel=1e-6
    )


def test_two_experts_are_recorded_and_both_hooked(tiny_moe):
    sink = CollectingSink()
    with BlockOutputs(tiny_moe) as direct:
        result = run_trajectory(tiny_moe, inputs(steps=10), layers=[5], sink=sink)
    boundary = 0.875 * 1000
    expected = ["transformer" if t >= boundary else "transformer_2" for t in result.timesteps]
    assert result.experts == expected
    assert set(expected) == {"transformer", "transformer_2"}
    forwards = direct.per_forward(8)
    for step, capture in enumerate(sink.captures):
        expert, outputs = forwards[2 * step]  # the cond pass of that step
        assert expert == capture.expert == expected[step]
        torch.testing.assert_close(capture.layer_norms["cond"][:, 0], torch.linalg.norm(outputs[5], dim=-1))


def test_hooks_are_removed_when_the_run_fails(tiny):
    class Exploding(StepSink):
        def on_step(self, capture):
            if capture.index == 2:
                raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        run_trajectory(tiny, inputs(steps=5), layers=range(8), sink=Exploding())
    transformer = tiny.pipe.transformer
    assert not transformer._forward_pre_hooks and not transformer._forward_hooks
    assert all(not b._forward_hooks and not b._forward_pre_hooks for b in transformer.blocks)
    assert "step" not in vars(tiny.pipe.scheduler)
    assert "cache_context" not in vars(transformer)
    # and the model still gives the undisturbed result
    again = run_trajectory(tiny, inputs(steps=5), sink=CollectingSink()).final_latents
    plain = run_trajectory(tiny, inputs(steps=5), sink=CollectingSink()).final_latents
    assert torch.equal(again, plain)  # same process, same weights, same kernels: a leftover hook would show


def test_a_stop_request_ends_the_run_after_its_step(tiny):
    """`should_stop` (a job's cancel or the worker's SIGTERM) is asked once after every step, once that step is
    captured: the step during which it turned true is the last one run, whatever the machine's speed."""
    sink = CollectingSink()
    asked: list[int] = []  # how many steps were captured each time it was asked

    def should_stop() -> bool:
        asked.append(len(sink.captures))
        return len(asked) == 4  # the request comes in while step 3 runs

    with pytest.raises(Cancelled, match=r"^cancelled after step 3$"):
        run_trajectory(tiny, inputs(steps=12), layers=range(8), sink=sink, should_stop=should_stop)
    assert asked == [1, 2, 3, 4]
    assert [c.index for c in sink.captures] == [0, 1, 2, 3]
    transformer = tiny.pipe.transformer
    assert not transformer._forward_pre_hooks and not transformer._forward_hooks
    assert all(not b._forward_hooks and not b._forward_pre_hooks for b in transformer.blocks)


def test_block_caches_are_refused(tiny):
    from diffusers.hooks import FirstBlockCacheConfig

    transformer = tiny.pipe.transformer
    transformer.enable_cache(FirstBlockCacheConfig(threshold=0.2))
    try:
        with pytest.raises(ProbeError, match="cache"):
            run_trajectory(tiny, inputs(steps=2), sink=CollectingSink())
    finally:
        transformer.disable_cache()


def test_run_directory_manifest_and_load_run(tiny, run_dir):
    spec = check_spec({"prompt": "a maze", "steps": 6, "probes": {"every": 2, "decode_steps": [3]}}, tiny.info)
    manifest = run_experiment(tiny, spec, run_dir)
    assert manifest["status"] == "finished"
    on_disk = json.loads(run_dir.read_bytes("manifest.json"))
    assert on_disk["status"] == "finished"
    for key in ("spec", "model", "shapes", "versions", "probes", "trajectories", "timings"):
        assert key in on_disk
    assert set(on_disk["versions"]) == {"stepscope", "diffusers", "torch"}
    run = stepscope.load_run(run_dir.path)
    base = run.baseline
    # every=2 captures 0, 2, 4 and the last step; decode_steps adds 3
    assert base.steps == [0, 2, 3, 4, 5]
    assert len(base.sigmas) == len(base.timesteps) == len(base.experts) == 6
    assert base.x0.shape == (5, 1, 16, 5, 8, 8)
    assert base.previews.shape == (5, 1, 5, 8, 8, 3)
    assert base.previews.dtype == np.uint8
    assert base.decoded(3).shape == (17, 64, 64, 3)
    assert base.video.shape == (17, 64, 64, 3)
    np.testing.assert_allclose(base.x0[-1, 0], base.final_latents[0], atol=1e-6)
    assert base.convergence.shape == (5, 5)
    assert base.convergence[-1].max() == 0.0  # the last x̂₀ against itself: x − x is exactly 0


def test_preview_matches_the_linear_map(tiny, run_dir):
    spec = check_spec({"prompt": "colour", "steps": 2}, tiny.info)
    run_experiment(tiny, spec, run_dir)
    run = stepscope.load_run(run_dir.path)
    weight = np.asarray(run.manifest["preview"]["weight"])
    bias = np.asarray(run.manifest["preview"]["bias"])
    x0 = run.baseline.x0[0, 0]  # (C, F, H, W)
    rgb = np.einsum("cfhw,rc->fhwr", x0, weight) + bias
    expected = np.round((np.clip(rgb, -1, 1) + 1) * 127.5).astype(np.uint8)
    diff = np.abs(run.baseline.previews[0, 0].astype(int) - expected.astype(int))
    assert diff.max() <= 1  # float32 on device vs float64 here


def test_saved_pipeline_loads_through_the_real_path(tiny, tmp_path):
    tiny.pipe.save_pretrained(tmp_path / "tiny-saved")
    loaded = load_model(str(tmp_path / "tiny-saved"), dtype="float32")
    assert loaded.source == str(tmp_path / "tiny-saved")
    assert loaded.info == tiny.info
    # The weights survive the safetensors round trip bitwise ...
    for component in ("transformer", "vae", "text_encoder"):
        saved, reloaded = getattr(tiny.pipe, component).state_dict(), getattr(loaded.pipe, component).state_dict()
        assert saved.keys() == reloaded.keys()
        assert all(torch.equal(saved[k], reloaded[k]) for k in saved), component
    # ... but the results need not: the loaded tensors sit in other memory (safetensors maps them at
    # offsets of its own), and some CPUs take other vectorised paths for them (3e-6 seen on AMD EPYC).
    a = run_trajectory(tiny, inputs(steps=4), sink=CollectingSink()).final_latents
    b = run_trajectory(loaded, inputs(steps=4), sink=CollectingSink()).final_latents
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_unknown_model_names_say_what_to_use():
    from stepscope.models import ModelError

    with pytest.raises(ModelError, match="preset"):
        load_model("no-such-model")
    with pytest.raises(ModelError, match="HF_HUB_OFFLINE"):
        load_model("Wan-AI/Wan2.1-T2V-1.3B-Diffusers")


def test_cli_run_writes_a_loadable_run_directory(tmp_path, capsys):
    # `stepscope run` in this process: a subprocess would import torch and diffusers again (~9 s); the installed
    # entry point runs as a process of its own in the test below, and the worker tests run the model stack in fresh
    # processes.
    from stepscope import cli

    out = tmp_path / "cli-run"
    assert cli.main(["run", "--prompt", "a maze", "--steps", "5", "--out", str(out), "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary == {"out": str(out), "status": "finished", "trajectories": {"baseline": "finished"}}
    run = stepscope.load_run(str(out))
    assert run.baseline.steps == [0, 1, 2, 3, 4]
    assert run.baseline.layer_norms().shape == (5, 1, 8, 5, 4, 4)


def test_the_installed_entry_point_lists_the_presets():
    # The `stepscope` command that pyproject's [project.scripts] installs, in a process of its own (other CLI tests
    # call stepscope.cli.main in-process); `models` does not import torch, so this takes a second.
    entry_point = Path(sys.executable).parent / "stepscope"
    assert entry_point.is_file(), f"{entry_point}: install the package (pip install -e .) to get the command"
    proc = subprocess.run([str(entry_point), "models", "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    names = {m["name"] for m in json.loads(proc.stdout)}
    assert {"tiny", "wan2.1-t2v-1.3b", "wan2.2-i2v-a14b", "vbvr-wan2.2"} <= names


def test_last_step_decode_is_shared_with_the_final_decode(tiny, run_dir):
    events = []
    spec = check_spec({"prompt": "a maze", "steps": 4, "probes": {"decode_steps": [1, 3]}}, tiny.info)
    run_experiment(tiny, spec, run_dir, emit=events.append)
    run = stepscope.load_run(run_dir.path)
    decodes = {d["step"]: d["dir"] for d in run.baseline.entry["decodes"]}
    assert decodes[3] == decodes["final"] == "trajectories/baseline/final"
    assert decodes[1] == "trajectories/baseline/decode/step_001"
    np.testing.assert_array_equal(run.baseline.decoded(3), run.baseline.video)  # one decode, stored once
    assert sorted(str(e["step"]) for e in events if e["type"] == "decode") == ["1", "3", "final"]


# Lower-precision VAE paths run at the smallest shape the tiny VAE decodes (2 latent frames of 4×4).
LOW_PRECISION_SHAPE = {"height": 32, "width": 32, "frames": 5}


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_step_decodes_can_use_a_lower_precision_vae_while_the_final_decode_does_not(tiny, tmp_path, dtype):
    from stepscope.probe.decode import decode_step
    from stepscope.store import RunDir

    # The smallest shapes: float16/bfloat16 convolutions are slow on CPUs without native units for them.
    spec = check_spec(
        {**LOW_PRECISION_SHAPE, "prompt": "a maze", "steps": 4, "probes": {"decode_steps": [1, 3]}}, tiny.info
    )
    plain_dir, fast_dir = RunDir.at(str(tmp_path / "fp32")), RunDir.at(str(tmp_path / dtype))
    run_experiment(tiny, spec, plain_dir)
    fast = load_model("tiny", step_decode_dtype=dtype)
    assert next(fast.step_vae.parameters()).dtype == getattr(torch, dtype)
    assert next(fast.pipe.vae.parameters()).dtype == torch.float32
    assert fast.describe()["step_decode_dtype"] == dtype and tiny.describe()["step_decode_dtype"] == "float32"
    events = []
    run_experiment(fast, spec, fast_dir, emit=events.append)
    plain, run = stepscope.load_run(plain_dir.path), stepscope.load_run(fast_dir.path)
    dtypes = {d["step"]: d["dtype"] for d in run.baseline.entry["decodes"]}
    assert dtypes == {1: dtype, "final": "float32", 3: "float32"}  # step 3 shares the final decode
    assert {str(e["step"]): e["dtype"] for e in events if e["type"] == "decode"}["1"] == dtype
    # Both final decodes: the same float32 weights (built from one seed) and kernels in one process.
    np.testing.assert_array_equal(run.baseline.video, plain.baseline.video)
    step1, plain_step1 = run.baseline.decoded(1).astype(int), plain.baseline.decoded(1).astype(int)
    assert not np.array_equal(step1, plain_step1) and np.abs(step1 - plain_step1).mean() < 4
    assert decode_step(fast, fast_dir, "baseline", 2)["dtype"] == dtype
    assert decode_step(tiny, plain_dir, "baseline", 2)["dtype"] == "float32"


def test_a_step_decode_that_overflows_is_redone_with_the_vae_as_loaded(tiny, tmp_path, monkeypatch):
    from stepscope.probe.decode import decode_step
    from stepscope.store import RunDir

    spec = check_spec(
        {**LOW_PRECISION_SHAPE, "prompt": "a maze", "steps": 4, "probes": {"decode_steps": [1]}}, tiny.info
    )
    plain_dir, fast_dir = RunDir.at(str(tmp_path / "fp32")), RunDir.at(str(tmp_path / "fp16"))
    run_experiment(tiny, spec, plain_dir)
    fast = load_model("tiny", step_decode_dtype="float16")
    real_decode = fast.step_vae.decode
    calls = []

    def overflowing(z, return_dict=False):  # what a float16 VAE does when an activation passes 65504
        calls.append(z.dtype)
        video = real_decode(z, return_dict=False)[0]
        video[0, 0, 0, 0, 0] = float("inf")
        return (video,)

    monkeypatch.setattr(fast.step_vae, "decode", overflowing)
    run_experiment(fast, spec, fast_dir)
    assert calls == [torch.float16]
    plain, run = stepscope.load_run(plain_dir.path), stepscope.load_run(fast_dir.path)
    assert {d["step"]: d["dtype"] for d in run.baseline.entry["decodes"]}[1] == "float32"
    np.testing.assert_array_equal(run.baseline.decoded(1), plain.baseline.decoded(1))  # both float32, as above
    assert decode_step(fast, fast_dir, "baseline", 2)["dtype"] == "float32"
    assert calls == [torch.float16, torch.float16]


def test_step_decode_dtype_is_checked():
    from stepscope.models.loading import ModelError

    with pytest.raises(ModelError, match="step_decode_dtype"):
        load_model("tiny", step_decode_dtype="int8")
    with pytest.raises(ModelError, match="offload"):
        load_model("tiny", step_decode_dtype="bfloat16", offload="model")


def test_step_decodes_default_to_float16_on_cuda_only():
    from stepscope.config import Settings, step_decode_dtype_for

    auto = Settings()
    assert step_decode_dtype_for(auto, "cuda:0", "none") == "float16"
    assert step_decode_dtype_for(auto, "cuda", "model") is None  # an offloaded VAE is not copied
    assert step_decode_dtype_for(auto, "cpu", "none") is None
    assert step_decode_dtype_for(Settings(step_decode_dtype="float32"), "cuda", "none") == "float32"
    with pytest.raises(ValueError, match="step_decode_dtype"):
        Settings(step_decode_dtype="int8")
