"""The experiment stores what the engine computes: perturbations, hidden-state CKA, cond-only x̂₀, units, guidance."""

from __future__ import annotations

import numpy as np
import pytest

import stepscope
from stepscope.probe import run_experiment, run_trajectory
from stepscope.probe.interventions import LatentPerturbations
from stepscope.spec import NoiseAtFrame, NoiseAtStep, check_spec, parse_spec

from .helpers import BlockOutputs, CollectingSink, inputs
from .test_interventions import TransformerInputs


def direct_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA from its definition: HSIC of centred Gram matrices, in float64."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    n = len(x)
    h = np.eye(n) - np.ones((n, n)) / n
    kx, ky = h @ x @ x.T @ h, h @ y @ y.T @ h
    return float((kx * ky).sum() / np.sqrt((kx * kx).sum() * (ky * ky).sum()))


def fresh_sigmas(model, steps: int) -> list[float]:
    """σ per step from a new scheduler built from the pipeline's config."""
    scheduler = type(model.pipe.scheduler).from_config(model.pipe.scheduler.config)
    scheduler.set_timesteps(steps)
    return [float(s) for s in scheduler.sigmas[:steps]]


def test_noise_in_units_of_sigma_is_strength_times_the_steps_sigma(tiny):
    def noise_l2(units: str, step: int) -> float:
        item = NoiseAtStep(steps=[step], strength=0.5, units=units, seed=7)
        result = run_trajectory(tiny, inputs(steps=4), perturbations=LatentPerturbations([item]))
        (applied,) = result.perturbations
        return applied["noise_l2"][0]

    sigmas = fresh_sigmas(tiny, 4)
    for step in (0, 3):
        # The same ε: δ_sigma / δ_absolute = (0.5·σ_s) / 0.5.
        assert noise_l2("sigma", step) / noise_l2("absolute", step) == pytest.approx(sigmas[step], rel=1e-5)
    assert sigmas[0] > sigmas[3] + 0.1  # the two steps' σ differ, so the check above can fail


def test_noise_at_video_frames_reaches_the_latent_frame_holding_them(tiny):
    with TransformerInputs(tiny) as clean:
        run_trajectory(tiny, inputs(steps=2))
    video = NoiseAtFrame(frames=[5, 8], frame_units="video", strength=1.0)  # both in latent frame 2
    with TransformerInputs(tiny) as noisy:
        run_trajectory(tiny, inputs(steps=2), perturbations=LatentPerturbations([video]))
    changed = (clean.seen[0] != noisy.seen[0]).flatten(3).any(-1).any(1)[0]  # per latent frame, step 0
    assert changed.tolist() == [False, False, True, False, False]


def test_the_experiment_stores_hidden_state_cka_equal_to_a_direct_computation(tiny, run_dir):
    spec = check_spec(
        {
            "prompt": "a maze",
            "steps": 4,
            "variants": [{"name": "n2", "interventions": [{"kind": "noise_at_step", "steps": [2], "strength": 1.0}]}],
        },
        tiny.info,
    )
    run_experiment(tiny, spec, run_dir)
    stored = stepscope.load_run(run_dir.path).metrics("n2")["hidden_state_cka_distance"]
    layers = list(range(tiny.info.num_layers))
    with BlockOutputs(tiny) as base_states:
        run_trajectory(tiny, inputs(prompt="a maze", negative_prompt="", steps=4))
    noise = LatentPerturbations([NoiseAtStep(steps=[2], strength=1.0)])
    with BlockOutputs(tiny) as variant_states:
        run_trajectory(tiny, inputs(prompt="a maze", negative_prompt="", steps=4), perturbations=noise)
    base, variant = base_states.per_forward(len(layers)), variant_states.per_forward(len(layers))
    assert stored["pass"] == "cond" and stored["layers"] == layers
    for step in range(4):
        for layer in layers:
            expected = 1.0 - direct_cka(base[2 * step][1][layer][0].numpy(), variant[2 * step][1][layer][0].numpy())
            assert stored["values"][layer][step] == pytest.approx(expected, abs=1e-5)
            assert stored["error_bound"][layer][step] == 0.0  # 80 tokens ≤ 512 rows: kept whole
    assert max(stored["values"][layer][3] for layer in layers) > 1e-3


def test_cond_x0_is_stored_beside_the_guided_x0(tiny, run_dir):
    spec = check_spec({"prompt": "a maze", "steps": 3, "probes": {"cond_x0": True}}, tiny.info)
    run_experiment(tiny, spec, run_dir)
    run = stepscope.load_run(run_dir.path)
    sink = CollectingSink()
    run_trajectory(tiny, inputs(prompt="a maze", negative_prompt="", steps=3), sink=sink, cond_x0=True)
    direct = np.stack([c.x0_cond.numpy() for c in sink.captures])
    assert run.baseline.x0_cond.dtype == np.float32
    np.testing.assert_allclose(run.baseline.x0_cond, direct, rtol=0, atol=1e-6)
    assert np.abs(run.baseline.x0_cond - run.baseline.x0).max() > 1e-3  # guidance 5: not the guided x̂₀


def test_guidance_given_only_scale_keeps_the_baselines_guidance_2(tiny_moe, run_dir):
    spec = check_spec(
        {
            "prompt": "a maze",
            "steps": 2,
            "guidance_2": 2.5,
            "probes": {"layers": "none", "final_decode": False},
            "variants": [
                {"name": "g", "interventions": [{"kind": "guidance", "scale": 3.0}]},
                {"name": "g2", "interventions": [{"kind": "guidance", "scale": 3.0, "scale_2": 4.0}]},
            ],
        },
        tiny_moe.info,
    )
    manifest = run_experiment(tiny_moe, spec, run_dir)
    assert manifest["trajectories"]["g"]["guidance"] == 3.0
    assert manifest["trajectories"]["g"]["guidance_2"] == 2.5
    assert manifest["trajectories"]["g2"]["guidance_2"] == 4.0


def test_layer_swap_warnings_reach_the_manifest(tiny, run_dir):
    swap = {"kind": "layer_swap", "layers": [2, 3], "steps": [0], "source": {"seed": 1}}
    framed = {**swap, "frames": [1]}
    spec = check_spec(
        {
            "steps": 2,
            "probes": {"layers": "none", "final_decode": False},
            "variants": [
                {"name": "all", "interventions": [swap]},
                {"name": "framed", "interventions": [framed]},
            ],
        },
        tiny.info,
    )
    manifest = run_experiment(tiny, spec, run_dir)
    (warning,) = manifest["warnings"]
    assert warning.startswith("all: ") and "swapping layer 3 alone" in warning


def test_the_engine_runs_only_a_spec_checked_against_its_model(tiny, tiny_moe, run_dir):
    with pytest.raises(TypeError, match="check_spec"):
        run_experiment(tiny, parse_spec({"steps": 1}), run_dir)
    with pytest.raises(ValueError, match="another model"):
        run_experiment(tiny, check_spec({"steps": 1}, tiny_moe.info), run_dir)
    assert not run_dir.exists("manifest.json")  # refused before anything was written
