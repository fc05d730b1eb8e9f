"""Run one denoising trajectory of a diffusers Wan pipeline with probes and interventions.

The pipeline's own `__call__` runs the loop; stepscope only adds forward hooks (expert and
pass tracking, layer norms, block rewrites), a wrapper around `scheduler.step` that reads x̂₀,
and `callback_on_step_end`, which hands each captured step to a sink, perturbs the next
latent and checks for cancellation. With no interventions the final latents are bitwise those
of the plain pipeline.

`run_trajectory` reads like a pipeline's `__call__`: make the probes, install the hooks, prepare
the first latent, run the pipeline (whose loop calls `StepCallbacks` at each step's edges),
return what it recorded; `ResumeFrom` starts the loop at a stored `SolverState`.
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
    pipe, experts = model.pipe, model.experts
    perturbations = perturbations or LatentPerturbations([])
    start = resume.step if resume is not None else 0
    # σ of every step, from a copy of the scheduler taken before any patch below (resume patches set_timesteps).
    sigmas = step_sigmas(model, inputs.steps) if perturbations else []

    # 1. The probes, and the state the step callbacks keep; nothing is installed yet.
    tracker = PassTracker(experts, first_step=start)
    x0_reader = X0Reader(pipe.scheduler)
    norms = LayerNormProbe(tracker, list(layers), passes)
    resumer = ResumeFrom(pipe.scheduler, resume) if resume is not None else None
    callbacks = StepCallbacks(
        inputs.steps,
        start=start,
        capture_at=set(range(inputs.steps) if capture is None else capture),
        keep_states={k for k in keep_states if start < k < inputs.steps},
        tracker=tracker,
        x0_reader=x0_reader,
        norms=norms,
        perturbations=perturbations,
        sigmas=sigmas,
        sink=sink or StepSink(),
        should_stop=should_stop,
        resumer=resumer,
    )
    hooks = HookSet()
    try:
        # 2. The hooks. Forward hooks run in registration order: the block rewrites (interventions) come before
        #    the norm probe, so it records what a block hands to the next block, rewrites included.
        tracker.install(hooks)
        for module in experts.values():
            hooks.add_handle(module.register_forward_pre_hook(callbacks.on_forward))  # after the tracker's own
        for rewrite_layers, rewrite in rewrites:
            install_block_rewrite(hooks, tracker, experts, rewrite_layers, rewrite)
        if layers:
            norms.install(hooks, experts)
        x0_reader.install(hooks)
        if cond_x0:
            x0_reader.install_conditional(hooks, tracker)
        if perturbations:
            perturbations.install(hooks, pipe.scheduler)
        if resumer is not None:
            resumer.install(hooks)

        # 3. The latent entering the first step: the seeds' noise, or the stored state (perturbed if asked).
        latents = initial_latents(model, inputs) if resume is None else _device_copy(resume.latents)
        latents = callbacks.begin(latents)

        # 4. The pipeline's own denoising loop; `callbacks.on_step_end` runs after each of its steps.
        output = pipe(**pipeline_arguments(model, inputs, latents, callbacks.on_step_end))

        # 5. The trajectory as it ran.
        return callbacks.finish(output.frames)
    finally:
        hooks.remove()
        pipe._interrupt = False


def pipeline_arguments(model: LoadedModel, inputs: TrajectoryInputs, latents: torch.Tensor, on_step_end) -> dict:
    """The keyword arguments of the pipeline's `__call__` for these inputs, starting from `latents`."""
    arguments = dict(
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
        arguments["guidance_scale_2"] = inputs.guidance_2
    if inputs.image is not None:  # spec.check_against_model ensures i2v models get one, t2v none
        arguments["image"] = inputs.image
    return arguments


class StepCallbacks:
    """What runs at the edges of each step of the pipeline's loop, and the trajectory it records.

    `on_forward`, a pre-forward hook on every expert, notes when a step's first forward begins.
    `on_step_end`, the pipeline's `callback_on_step_end` (after `scheduler.step`), records the
    step, hands a captured one to the sink, keeps the solver state asked for, perturbs the latent
    entering the next step and checks for cancellation. Steps are counted from 0 of the whole
    schedule, also when the run resumes at `start`.
    """

    def __init__(
        self,
        steps: int,
        *,
        start: int,
        capture_at: set[int],
        keep_states: set[int],
        tracker: PassTracker,
        x0_reader: X0Reader,
        norms: LayerNormProbe,
        perturbations: LatentPerturbations,
        sigmas: list[float],
        sink: StepSink,
        should_stop: Callable[[], bool] | None,
        resumer: ResumeFrom | None,
    ):
        self.steps, self.start = steps, start
        self.capture_at, self.keep_states = capture_at, keep_states
        self.tracker, self.x0_reader, self.norms = tracker, x0_reader, norms
        self.perturbations, self.sigmas = perturbations, sigmas
        self.sink, self.should_stop, self.resumer = sink, should_stop, resumer
        self.step_started = 0.0  # perf_counter when the running step's first forward began
        self.result = TrajectoryResult(None, [], [], [], [])  # type: ignore[arg-type]  # final latents: finish()
        if resumer is not None:  # the steps before `start` are the stored trajectory's (not run here: 0 s)
            state = resumer.state
            self.result.timesteps, self.result.sigmas = list(state.timesteps), list(state.sigmas)
            self.result.experts, self.result.step_seconds = list(state.experts), [0.0] * start

    def begin(self, latents: torch.Tensor) -> torch.Tensor:
        """The latent entering the first step run, with that step's perturbations; norms on if it is captured."""
        self.norms.active = self.start in self.capture_at
        if self.perturbations:
            latents = self.perturbations.perturb(self.start, latents, self.sigmas[self.start])
        return latents

    def on_forward(self, module, args) -> None:
        if self.tracker.forwards_this_step == 1:  # the step's first forward (the tracker's pre-hook ran first)
            self.step_started = time.perf_counter()
            if self.resumer is not None:
                self.resumer.restore_schedule()

    def on_step_end(self, pipeline, i: int, t, callback_kwargs: dict) -> dict:
        step = self.start + i  # the pipeline counts from the first step it ran
        self._record(step, float(t), ended=time.perf_counter())
        latents = callback_kwargs["latents"]
        if step + 1 in self.keep_states:
            self.result.states[step + 1] = self._solver_state(step + 1, latents, pipeline.scheduler)
        if self.perturbations and step + 1 < self.steps:
            latents = self.perturbations.perturb(step + 1, latents, self.sigmas[step + 1])
        if self.should_stop is not None and self.should_stop():
            raise Cancelled(f"cancelled after step {step}")
        self.tracker.next_step()
        self.norms.active = step + 1 in self.capture_at
        return {"latents": latents}

    def finish(self, final_latents: torch.Tensor) -> TrajectoryResult:
        self.result.final_latents = final_latents
        self.result.perturbations = [applied.to_json() for applied in self.perturbations.applied]
        return self.result

    def _record(self, step: int, timestep: float, ended: float) -> None:
        """The step's timestep, σ, expert and time; and, if it is captured, the step itself to the sink."""
        estimate = self.x0_reader.pop()
        expert = self.tracker.experts_this_step[-1] if self.tracker.experts_this_step else "transformer"
        self.result.timesteps.append(timestep)
        self.result.sigmas.append(estimate.sigma)
        self.result.experts.append(expert)
        self.result.step_seconds.append(ended - self.step_started)
        if step in self.capture_at:
            self.sink.on_step(
                StepCapture(
                    index=step,
                    timestep=timestep,
                    sigma=estimate.sigma,
                    expert=expert,
                    x0=estimate.x0,
                    layer_norms=self.norms.collect(),
                    started=self.step_started,
                    ended=ended,
                    x0_cond=estimate.x0_cond,
                )
            )

    def _solver_state(self, step: int, latents: torch.Tensor, scheduler) -> SolverState:
        """The state entering `step` (before its perturbations), on the host, with the records of the steps before."""
        return SolverState(
            step=step,
            latents=_host_copy(latents),
            scheduler=scheduler_state(scheduler),
            timesteps=list(self.result.timesteps),
            sigmas=list(self.result.sigmas),
            experts=list(self.result.experts),
        )


class ResumeFrom:
    """Starts the pipeline's loop at `state.step`, its solver in the state stored there.

    The pipeline sets the schedule, then loops over `scheduler.timesteps`: right after
    `set_timesteps` the solver gets the stored state and the loop only the steps from
    `state.step` on. At the first forward the loop has read its list, and the solver gets the
    whole schedule back (its step indexes into it).
    """

    def __init__(self, scheduler, state: SolverState):
        self.scheduler = scheduler
        self.state = state
        self._set_timesteps = scheduler.set_timesteps  # the scheduler's own, before it is patched
        self._full_schedule: torch.Tensor | None = None

    def install(self, hooks: HookSet) -> None:
        hooks.patch(self.scheduler, "set_timesteps", self._set_timesteps_and_resume)

    def _set_timesteps_and_resume(self, *args, **kwargs) -> None:
        self._set_timesteps(*args, **kwargs)
        for key, value in self.state.scheduler.items():
            setattr(self.scheduler, key, _device_copy(value))
        self._full_schedule = self.scheduler.timesteps
        self.scheduler.timesteps = self.scheduler.timesteps[self.state.step :]

    def restore_schedule(self) -> None:
        """Give the solver the whole schedule back (once; later calls do nothing)."""
        if self._full_schedule is not None:
            self.scheduler.timesteps, self._full_schedule = self._full_schedule, None
