"""Run one denoising trajectory of a diffusers Wan pipeline with probes and interventions.

The pipeline's own `__call__` runs the loop; stepscope only adds forward hooks (expert and
pass tracking, layer norms, block rewrites), a wrapper around `scheduler.step` that reads x̂₀,
and `callback_on_step_end`, which hands each captured step to a sink, perturbs the next
latent and checks for cancellation. With no interventions the final latents are bitwise those
of the plain pipeline.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image

from stepscope.models.loading import LoadedModel
from stepscope.probe.hooks import BlockRewrite, HookSet, LayerNormProbe, PassTracker, X0Reader, install_block_rewrite
from stepscope.probe.interventions import LatentPerturbations


class Cancelled(Exception):
    """Raised inside the loop when `should_stop()` turns true; the run ends at that step."""


class ProbeError(RuntimeError):
    """The pipeline is in a state the probes cannot see through (e.g. a block cache)."""


@dataclass
class TrajectoryInputs:
    """Everything the pipeline call needs; one member per seed (several for an ensemble)."""

    prompt: str
    negative_prompt: str
    seeds: list[int]
    steps: int
    guidance: float
    guidance_2: float | None
    height: int
    width: int
    frames: int
    image: Image.Image | None = None


@dataclass
class StepCapture:
    """One captured step, tensors still on the device; the sink copies what it keeps."""

    index: int
    timestep: float
    sigma: float
    expert: str
    x0: torch.Tensor  # (B, C, F, H, W), x̂₀ = x_s − σ_s·v after CFG
    layer_norms: dict[str, torch.Tensor]  # pass → (B, L, N) float32
    started: float  # perf_counter when the step's first forward began
    ended: float  # perf_counter right after scheduler.step (host side)
    x0_cond: torch.Tensor | None = None  # x_s − σ_s·v_cond, the conditional prediction alone (cond_x0=True)


class StepSink:
    """Receives captured steps; the default keeps nothing."""

    def on_step(self, capture: StepCapture) -> None:
        pass


@dataclass
class TrajectoryResult:
    final_latents: torch.Tensor
    timesteps: list[float]
    sigmas: list[float]  # σ of each step (the value x̂₀ used)
    experts: list[str]  # which expert ran each step
    step_seconds: list[float]
    # Each latent perturbation as realised (AppliedPerturbation.to_json()): step, kind, frames, ‖δ‖, solver state.
    perturbations: list[dict] | None = None
    states: dict[int, SolverState] = field(default_factory=dict)  # the states asked for with `keep_states`


@dataclass
class SolverState:
    """Where a trajectory stands entering step `step`: its latent and its scheduler's own state, on the host.

    `run_trajectory(resume=...)` continues from it exactly as the trajectory that stored it
    would have (the same scheduler attributes: for UniPC its x̂₀ history `model_outputs`,
    `timestep_list`, `last_sample`, `lower_order_nums`, `this_order`, `_step_index`, ...).
    The per-step records of the steps before it come along, so a resumed result covers every step.
    """

    step: int
    latents: HostTensor
    scheduler: dict[str, Any]
    timesteps: list[float]
    sigmas: list[float]
    experts: list[str]


@dataclass
class HostTensor:
    """A tensor copied to the host, with the device it came from (UniPC keeps its σ table on the CPU)."""

    tensor: torch.Tensor
    device: torch.device


def _host_copy(value: Any) -> Any:
    """A deep copy with every tensor (inside lists, tuples and dicts too) copied to the host as a HostTensor."""
    if isinstance(value, torch.Tensor):
        return HostTensor(value.detach().to("cpu", copy=True), value.device)
    if isinstance(value, (list, tuple)):
        return type(value)(_host_copy(v) for v in value)
    if isinstance(value, dict):
        return {k: _host_copy(v) for k, v in value.items()}
    return copy.deepcopy(value)


def _device_copy(value: Any) -> Any:
    """The inverse of `_host_copy`: each HostTensor back on its own device, as a new tensor."""
    if isinstance(value, HostTensor):
        return value.tensor.to(value.device, copy=True)
    if isinstance(value, (list, tuple)):
        return type(value)(_device_copy(v) for v in value)
    if isinstance(value, dict):
        return {k: _device_copy(v) for k, v in value.items()}
    return copy.deepcopy(value)


def scheduler_state(scheduler) -> dict[str, Any]:
    """The scheduler's own attributes (not its config, not methods patched onto it), copied to the host."""
    return {k: _host_copy(v) for k, v in vars(scheduler).items() if k != "_internal_dict" and not callable(v)}


def captured_steps(steps: int, every: int) -> list[int]:
    return [i for i in range(steps) if i % every == 0 or i == steps - 1]


def check_probe_visibility(model: LoadedModel) -> None:
    """Refuse pipeline states that would hide or fake what block hooks see."""
    for name, module in model.experts.items():
        if getattr(module, "is_cache_enabled", False):
            raise ProbeError(
                f"{name} has a diffusers cache enabled (FirstBlockCache, MagCache, PAB, FasterCache or "
                "TaylorSeer): cached blocks are skipped, so their norms and x̂₀ would not be the model's; "
                "disable it with `disable_cache()`"
            )
        if getattr(module, "_parallel_config", None) is not None:
            raise ProbeError(f"{name} runs context parallel: block hooks would see one shard of the tokens")


def initial_latents(model: LoadedModel, inputs: TrajectoryInputs) -> torch.Tensor:
    """The starting noise, drawn exactly as the pipeline's prepare_latents draws it.

    One CPU generator per seed, so a seed gives the same trajectory on any device and a
    member of an ensemble starts from the same noise as that seed's single run.
    """
    info = model.info
    shape = (
        len(inputs.seeds),
        info.latent_channels,
        (inputs.frames - 1) // info.vae_temporal + 1,
        inputs.height // info.vae_spatial,
        inputs.width // info.vae_spatial,
    )
    generators = [torch.Generator("cpu").manual_seed(s) for s in inputs.seeds]
    generator = generators[0] if len(generators) == 1 else generators
    return randn_tensor(shape, generator=generator, device=torch.device(_execution_device(model)), dtype=torch.float32)


def step_sigmas(model: LoadedModel, steps: int) -> list[float]:
    """σ of each step as the pipeline's scheduler will set it (a copy is set, the pipeline's is untouched)."""
    scheduler = copy.deepcopy(model.pipe.scheduler)
    scheduler.set_timesteps(steps, device="cpu")
    return [float(s) for s in scheduler.sigmas[:steps]]


def _execution_device(model: LoadedModel) -> str:
    return str(model.pipe._execution_device)


def run_trajectory(
    model: LoadedModel,
    inputs: TrajectoryInputs,
    *,
    capture: Iterable[int] | None = None,
    layers: Sequence[int] = (),
    passes: str = "cond",
    perturbations: LatentPerturbations | None = None,
    rewrites: Sequence[tuple[list[int], BlockRewrite]] = (),
    sink: StepSink | None = None,
    should_stop: Callable[[], bool] | None = None,
    cond_x0: bool = False,
    keep_states: Iterable[int] = (),
    resume: SolverState | None = None,
) -> TrajectoryResult:
    """Run the pipeline once, handing the steps in `capture` (default: all) to `sink`.

    With `cond_x0`, each capture also carries x̂₀ of the conditional prediction alone.
    `keep_states`: steps k ≥ 1 whose incoming state (before any perturbation of k) is kept in
    `result.states[k]`. `resume`: start at `resume.step` from that state instead of step 0; the
    steps before it are not run (nothing is captured for them) and `inputs` must be the ones
    the state came from (the same seeds, steps, prompts and guidance).
    """
    check_probe_visibility(model)
    pipe = model.pipe
    experts = model.experts
    sink = sink or StepSink()
    perturbations = perturbations or LatentPerturbations([])
    capture_at = set(range(inputs.steps) if capture is None else capture)
    start = resume.step if resume is not None else 0
    keep_states = {k for k in keep_states if start < k < inputs.steps}

    hooks = HookSet()
    tracker = PassTracker(experts)
    x0_reader = X0Reader(pipe.scheduler)
    norms = LayerNormProbe(tracker, list(layers), passes)
    result = TrajectoryResult(None, [], [], [], [])  # type: ignore[arg-type]
    clock = {"step_started": 0.0}

    def mark_step_start(module, args):
        if tracker._forwards_this_step == 1:  # the pass tracker's pre-hook ran first
            clock["step_started"] = time.perf_counter()
            if "timesteps" in resumed:  # the pipeline has read its (shortened) loop; the solver needs them all
                pipe.scheduler.timesteps = resumed.pop("timesteps")

    resumed: dict[str, Any] = {}

    def set_timesteps_and_resume(*args, **kwargs):
        # The pipeline sets the schedule, then loops over `scheduler.timesteps`: the solver gets the
        # stored state and the loop only the steps from `resume.step` on.
        original_set_timesteps(*args, **kwargs)
        for key, value in resume.scheduler.items():
            setattr(pipe.scheduler, key, _device_copy(value))
        resumed["timesteps"] = pipe.scheduler.timesteps
        pipe.scheduler.timesteps = pipe.scheduler.timesteps[start:]

    def on_step_end(pipeline, i: int, t, callback_kwargs: dict) -> dict:
        i += start  # the pipeline counts from the first step it ran
        ended = time.perf_counter()
        estimate = x0_reader.pop()
        expert = tracker.experts_this_step[-1] if tracker.experts_this_step else "transformer"
        result.timesteps.append(float(t))
        result.sigmas.append(estimate.sigma)
        result.experts.append(expert)
        result.step_seconds.append(ended - clock["step_started"])
        if i in capture_at:
            sink.on_step(
                StepCapture(
                    index=i,
                    timestep=float(t),
                    sigma=estimate.sigma,
                    expert=expert,
                    x0=estimate.x0,
                    layer_norms=norms.collect(),
                    started=clock["step_started"],
                    ended=ended,
                    x0_cond=estimate.x0_cond,
                )
            )
        latents = callback_kwargs["latents"]
        if i + 1 in keep_states:
            result.states[i + 1] = SolverState(
                step=i + 1,
                latents=_host_copy(latents),
                scheduler=scheduler_state(pipeline.scheduler),
                timesteps=list(result.timesteps),
                sigmas=list(result.sigmas),
                experts=list(result.experts),
            )
        if perturbations and i + 1 < inputs.steps:
            latents = perturbations.perturb(i + 1, latents, sigmas[i + 1])
        if should_stop is not None and should_stop():
            raise Cancelled(f"cancelled after step {i}")
        tracker.next_step()
        norms.active = (i + 1) in capture_at
        return {"latents": latents}

    # σ of every step, from a copy of the scheduler taken before any patch below (resume patches set_timesteps).
    sigmas = step_sigmas(model, inputs.steps) if perturbations else []
    try:
        # Interventions first: forward hooks run in registration order, so the norm probe
        # records what the block hands to the next block, rewrites included.
        tracker.install(hooks)
        for module in experts.values():
            hooks.add_handle(module.register_forward_pre_hook(mark_step_start))
        for rewrite_layers, rewrite in rewrites:
            install_block_rewrite(hooks, tracker, experts, rewrite_layers, rewrite)
        if layers:
            norms.install(hooks, experts)
        x0_reader.install(hooks)
        if cond_x0:
            x0_reader.install_conditional(hooks, tracker)
        if perturbations:
            perturbations.install(hooks, pipe.scheduler)
        if resume is not None:
            original_set_timesteps = pipe.scheduler.set_timesteps
            hooks.patch(pipe.scheduler, "set_timesteps", set_timesteps_and_resume)
            tracker.step = start
            result.timesteps, result.sigmas = list(resume.timesteps), list(resume.sigmas)
            result.experts, result.step_seconds = list(resume.experts), [0.0] * start  # steps not run here
            latents = _device_copy(resume.latents)
        else:
            latents = initial_latents(model, inputs)
        norms.active = start in capture_at

        if perturbations:
            latents = perturbations.perturb(start, latents, sigmas[start])
        call_kwargs = dict(
            prompt=inputs.prompt,
            negative_prompt=inputs.negative_prompt or None,
            height=inputs.height,
            width=inputs.width,
            num_frames=inputs.frames,
            num_inference_steps=inputs.steps,
            max_sequence_length=model.info.text_tokens,
            guidance_scale=inputs.guidance,
            num_videos_per_prompt=len(inputs.seeds),
            latents=latents,
            output_type="latent",
            callback_on_step_end=on_step_end,
            callback_on_step_end_tensor_inputs=["latents"],
        )
        if model.info.boundary_ratio is not None:
            call_kwargs["guidance_scale_2"] = inputs.guidance_2
        if inputs.image is not None:  # spec.check_against_model ensures i2v models get one, t2v none
            call_kwargs["image"] = inputs.image
        output = pipe(**call_kwargs)
        result.final_latents = output.frames
        result.perturbations = [applied.to_json() for applied in perturbations.applied]
        return result
    finally:
        hooks.remove()
        pipe._interrupt = False
