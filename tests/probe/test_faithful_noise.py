"""Noise injected at a step stays in the trajectory under UniPC (with its corrector) and Euler alike.

The reference is a denoising loop written here: the transformer called directly with the prompt
embeddings the pipeline used, classifier-free guidance by hand, and a fresh diffusers scheduler.
It applies the documented semantics in an equivalent but different form: δ is added to the
model input at step s and, for UniPC, `last_sample` is shifted by δ·σ_{s−1}/σ_s before the step.
"""

from __future__ import annotations

import pytest
import torch

from stepscope.probe import run_trajectory
from stepscope.probe.interventions import MODEL_INPUT, MODEL_INPUT_AND_CORRECTED_SAMPLE, LatentPerturbations
from stepscope.spec import NoiseAtFrame, NoiseAtStep

from .helpers import inputs

STEPS = 12
GUIDANCE = 5.0


class ForwardInputs:
    """Every forward of the transformer, in call order: (hidden_states, timestep, encoder_hidden_states)."""

    def __init__(self, model):
        self.calls = []
        self.handle = model.pipe.transformer.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        self.calls.append(
            (kwargs["hidden_states"].detach().clone(), kwargs["timestep"], kwargs["encoder_hidden_states"].clone())
        )

    def step_input(self, step: int) -> torch.Tensor:
        return self.calls[2 * step][0]  # cond pass first, then uncond

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def reference_loop(
    model, recorded: ForwardInputs, perturb_at: int | None, delta: torch.Tensor | None, shift_solver_state: bool = True
):
    """Denoise from the recorded initial latent with a fresh scheduler; returns (inputs per step, final)."""
    pipe = model.pipe
    scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
    scheduler.set_timesteps(STEPS, device="cpu")
    cond, uncond = recorded.calls[0][2], recorded.calls[1][2]
    latents = recorded.step_input(0)
    seen = []
    with torch.no_grad():
        for i, t in enumerate(scheduler.timesteps):
            if i == perturb_at:
                latents = latents + delta
                if (
                    shift_solver_state and getattr(scheduler, "last_sample", None) is not None
                ):  # UniPC: the corrector starts from last_sample
                    scheduler.last_sample = scheduler.last_sample + delta * (
                        scheduler.sigmas[i - 1] / scheduler.sigmas[i]
                    )
            seen.append(latents)
            timestep = t.expand(latents.shape[0])
            v_cond = pipe.transformer(hidden_states=latents, timestep=timestep, encoder_hidden_states=cond)[0]
            v_uncond = pipe.transformer(hidden_states=latents, timestep=timestep, encoder_hidden_states=uncond)[0]
            v = v_uncond + GUIDANCE * (v_cond - v_uncond)
            latents = scheduler.step(v, t, latents, return_dict=False)[0]
    return seen, latents


def kept_fraction(delta: torch.Tensor, later_difference: torch.Tensor) -> float:
    """How much of δ a later difference to the baseline still holds: its projection onto δ, over ‖δ‖²."""
    return float((later_difference * delta).sum() / (delta * delta).sum())


def relative_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _noise_runs(model, step: int):
    """Baseline and noise_at_step runs through the project, and the same two through the reference loop."""
    with ForwardInputs(model) as base:
        base_result = run_trajectory(model, inputs(steps=STEPS, seeds=[3], guidance=GUIDANCE))
    noise = LatentPerturbations([NoiseAtStep(steps=[step], strength=1.0)])
    with ForwardInputs(model) as noisy:
        noisy_result = run_trajectory(model, inputs(steps=STEPS, seeds=[3], guidance=GUIDANCE), perturbations=noise)
    delta = noisy.step_input(step) - base.step_input(step)  # earlier steps are bitwise equal
    ref_base_seen, ref_base_final = reference_loop(model, base, None, None)
    ref_noisy_seen, ref_noisy_final = reference_loop(model, base, step, delta)
    return dict(
        base=base,
        noisy=noisy,
        base_result=base_result,
        noisy_result=noisy_result,
        delta=delta,
        ref_base_seen=ref_base_seen,
        ref_base_final=ref_base_final,
        ref_noisy_seen=ref_noisy_seen,
        ref_noisy_final=ref_noisy_final,
    )


@pytest.fixture(scope="module")
def unipc_runs(tiny):
    return _noise_runs(tiny, 4)


@pytest.fixture(scope="module")
def euler_runs(tiny_euler):
    return _noise_runs(tiny_euler, 4)


@pytest.fixture(scope="module")
def runs_by_solver(unipc_runs, euler_runs):
    """Both solvers' runs by fixture name, for the parametrized tests: a fixture they name, not one they look up,
    so that tests/conftest.py sends every user of these module fixtures to one xdist process, which builds them once.
    """
    return {"unipc_runs": unipc_runs, "euler_runs": euler_runs}


@pytest.mark.parametrize("runs", ["unipc_runs", "euler_runs"])
def test_the_reference_loop_reproduces_the_pipeline(runs, runs_by_solver):
    r = runs_by_solver[runs]
    torch.testing.assert_close(r["ref_base_final"], r["base_result"].final_latents, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("runs", ["unipc_runs", "euler_runs"])
def test_noise_at_step_matches_the_reference_semantics(runs, runs_by_solver):
    r = runs_by_solver[runs]
    for step in range(STEPS):
        torch.testing.assert_close(r["noisy"].step_input(step), r["ref_noisy_seen"][step], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(r["noisy_result"].final_latents, r["ref_noisy_final"], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("runs", ["unipc_runs", "euler_runs"])
def test_the_noise_is_still_in_the_next_steps_sample(runs, runs_by_solver):
    r = runs_by_solver[runs]
    delta = r["delta"]
    project = kept_fraction(delta, r["noisy"].step_input(5) - r["base"].step_input(5))
    reference = kept_fraction(delta, r["ref_noisy_seen"][5] - r["ref_base_seen"][5])
    assert project >= 0.95 and reference >= 0.95, (project, reference)
    # UniPC's corrector adds a small share of δ on top (through x̂₀ at the perturbed input), never most of it.
    assert project <= 1.25


def test_unipc_and_euler_final_outputs_move_by_comparable_amounts(unipc_runs, euler_runs):
    moved = {
        name: relative_l2(r["noisy_result"].final_latents, r["base_result"].final_latents)
        for name, r in (("unipc", unipc_runs), ("euler", euler_runs))
    }
    assert moved["euler"] > 0.3, moved  # strength 1 at step 4 of 12 is not a small change
    assert 0.5 <= moved["unipc"] / moved["euler"] <= 2.0, moved


def test_without_the_solver_state_shift_unipc_would_undo_the_noise(unipc_runs, tiny):
    # The failure this guards against, in the reference loop: δ on the model input alone.
    r = unipc_runs
    assert list(tiny.pipe.scheduler.config.disable_corrector) == []  # the corrector runs at every step
    input_only_seen, _ = reference_loop(tiny, r["base"], 4, r["delta"], shift_solver_state=False)
    assert kept_fraction(r["delta"], input_only_seen[5] - r["ref_base_seen"][5]) < 0.5


def test_the_realised_perturbation_is_recorded(unipc_runs, euler_runs):
    for runs, state in ((unipc_runs, MODEL_INPUT_AND_CORRECTED_SAMPLE), (euler_runs, MODEL_INPUT)):
        (applied,) = runs["noisy_result"].perturbations
        assert applied["step"] == 4 and applied["kind"] == "noise_at_step" and applied["frames"] is None
        assert applied["solver_state"] == state
        assert applied["noise_l2"][0] == pytest.approx(float(runs["delta"].norm()), rel=1e-5)
        assert applied["latent_l2"][0] == pytest.approx(float(runs["base"].step_input(4).norm()), rel=1e-5)


def test_noise_at_step_zero_has_no_corrector_to_shift(tiny):
    result = run_trajectory(
        tiny, inputs(steps=2), perturbations=LatentPerturbations([NoiseAtStep(steps=[0], strength=1.0)])
    )
    assert [p["solver_state"] for p in result.perturbations] == [MODEL_INPUT]


def test_noise_at_frame_records_its_frames_every_step(tiny):
    result = run_trajectory(
        tiny, inputs(steps=3), perturbations=LatentPerturbations([NoiseAtFrame(frames=[1, 3], strength=0.5)])
    )
    assert [p["step"] for p in result.perturbations] == [0, 1, 2]
    assert all(p["frames"] == [1, 3] for p in result.perturbations)
    assert [p["solver_state"] for p in result.perturbations] == [
        MODEL_INPUT,
        MODEL_INPUT_AND_CORRECTED_SAMPLE,
        MODEL_INPUT_AND_CORRECTED_SAMPLE,
    ]


def test_a_scheduler_with_another_stored_sample_is_refused():
    from diffusers import SASolverScheduler

    from stepscope.probe.hooks import HookSet

    hooks = HookSet()
    with pytest.raises(ValueError, match="SASolverScheduler"):
        LatentPerturbations([NoiseAtStep(steps=[1], strength=1.0)]).install(hooks, SASolverScheduler())
    hooks.remove()
