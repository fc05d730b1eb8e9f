"""Hooks on a diffusers Wan pipeline: which expert and CFG pass is running, x̂₀ per step,
per-token L2 norms of block outputs, and block-output rewrites for interventions.

Everything installed here is undone by `HookSet.remove()`, which the trajectory runner calls
in a `finally`, so a failing or cancelled run leaves the resident model exactly as it was.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch

UNIPC = "UniPCMultistepScheduler"


class HookSet:
    """Forward hooks and attribute patches that are removed together."""

    def __init__(self) -> None:
        self._undo: list[Callable[[], None]] = []

    def add_handle(self, handle: torch.utils.hooks.RemovableHandle) -> None:
        self._undo.append(handle.remove)

    def patch(self, obj: object, attr: str, value: object) -> None:
        """Shadow `obj.attr` by an instance attribute; removing deletes it again."""
        had_own = attr in vars(obj)
        previous = vars(obj).get(attr)

        def undo() -> None:
            if had_own:
                setattr(obj, attr, previous)
            else:
                delattr(obj, attr)

        setattr(obj, attr, value)
        self._undo.append(undo)

    def remove(self) -> None:
        while self._undo:
            self._undo.pop()()


class PassTracker:
    """Knows, during a forward, which expert runs, which CFG pass it is and which step.

    The pipelines wrap each forward in `cache_context("cond" | "uncond")`; the tracker reads the
    name from there. Without that (older pipelines) it falls back to the order diffusers uses:
    cond first, then uncond.
    """

    def __init__(self, experts: dict[str, torch.nn.Module], first_step: int = 0):
        self.experts = experts
        self.step = first_step  # the step running (counted in the whole schedule: a resumed run starts later)
        self.expert: str | None = None
        self.pass_name: str | None = None
        self._context_name: str | None = None
        self._forwards_this_step = 0
        self.experts_this_step: list[str] = []

    def install(self, hooks: HookSet) -> None:
        for name, module in self.experts.items():
            hooks.add_handle(module.register_forward_pre_hook(self._pre_forward(name)))
            if hasattr(module, "cache_context"):
                hooks.patch(module, "cache_context", self._cache_context(module.cache_context))

    def _cache_context(self, original):
        @contextlib.contextmanager
        def cache_context(name: str, **kwargs):
            self._context_name = name
            try:
                with original(name, **kwargs):
                    yield
            finally:
                self._context_name = None

        return cache_context

    def _pre_forward(self, expert_name: str):
        def hook(module, args):
            self._forwards_this_step += 1
            self.expert = expert_name
            if expert_name not in self.experts_this_step:
                self.experts_this_step.append(expert_name)
            self.pass_name = self._context_name or ("cond" if self._forwards_this_step == 1 else "uncond")

        return hook

    @property
    def forwards_this_step(self) -> int:
        """Forwards begun in the running step so far, of any expert and pass: 1 during the step's first."""
        return self._forwards_this_step

    def next_step(self) -> None:
        self.step += 1
        self._forwards_this_step = 0
        self.experts_this_step = []


def wants_pass(passes: str, pass_name: str | None) -> bool:
    return passes == "both" or passes == pass_name


@dataclass
class StepEstimate:
    """What the scheduler's step saw: x̂₀ = x_s − σ_s·v (v after CFG), σ_s and the step index."""

    index: int
    sigma: float
    x0: torch.Tensor
    x0_cond: torch.Tensor | None = None  # x_s − σ_s·v_cond, the conditional prediction alone (if asked for)


class X0Reader:
    """Reads x̂₀ at every scheduler step, exactly as the scheduler computed it.

    UniPC (flow_prediction, predict_x0) stores x̂₀ itself in `model_outputs[-1]`; that tensor is
    taken as is. Other flow schedulers (FlowMatchEulerDiscrete) store none, so the velocity and
    the sample passed to `step` are captured and x̂₀ = x_s − σ·v is formed here in float32.
    σ always comes from `scheduler.sigmas` at the step's index, never from t/1000.
    """

    def __init__(self, scheduler):
        self.scheduler = scheduler
        self.last: StepEstimate | None = None
        self._cond_velocity: torch.Tensor | None = None  # the cond pass's output this step, when asked for
        cfg = scheduler.config
        self.uses_scheduler_x0 = (
            type(scheduler).__name__ == UNIPC
            and cfg.get("prediction_type") == "flow_prediction"
            and cfg.get("predict_x0", True)
            and not cfg.get("thresholding", False)
        )

    def install(self, hooks: HookSet) -> None:
        original = self.scheduler.step

        def step(model_output, timestep, sample, *args, **kwargs):
            out = original(model_output, timestep, sample, *args, **kwargs)
            index = self.scheduler.step_index - 1  # step() advanced it
            sigma = self.scheduler.sigmas[index]
            if self.uses_scheduler_x0:
                x0 = self.scheduler.model_outputs[-1]
            else:
                x0 = sample.to(torch.float32) - sigma.to(sample.device, torch.float32) * model_output.to(torch.float32)
            x0_cond = None
            if self._cond_velocity is not None:
                v_cond = self._cond_velocity.to(torch.float32)
                x0_cond = sample.to(torch.float32) - sigma.to(sample.device, torch.float32) * v_cond
                self._cond_velocity = None
            self.last = StepEstimate(index=index, sigma=float(sigma), x0=x0, x0_cond=x0_cond)
            return out

        hooks.patch(self.scheduler, "step", step)

    def install_conditional(self, hooks: HookSet, tracker: PassTracker) -> None:
        """Also form x̂₀ of the conditional prediction alone, x_s − σ_s·v_cond, at every step.

        v_cond is the output of each expert's "cond" forward; without CFG it is the guided v.
        """
        for module in tracker.experts.values():
            hooks.add_handle(module.register_forward_hook(self._keep_cond_velocity(tracker)))

    def _keep_cond_velocity(self, tracker: PassTracker):
        def hook(module, args, output):
            if tracker.pass_name == "cond":
                self._cond_velocity = output[0] if isinstance(output, tuple) else output.sample

        return hook

    def pop(self) -> StepEstimate:
        estimate, self.last = self.last, None
        if estimate is None:
            raise RuntimeError("the scheduler did not step: x̂₀ cannot be read")
        return estimate


BlockRewrite = Callable[[int, str, str, int, torch.Tensor], torch.Tensor | None]
"""(step, expert, pass, layer, block_output) → replacement output, or None to keep it."""


def install_block_rewrite(
    hooks: HookSet,
    tracker: PassTracker,
    experts: dict[str, torch.nn.Module],
    layers: list[int],
    rewrite: BlockRewrite,
) -> None:
    """Let `rewrite` replace the output of the given blocks of every expert.

    A rewrite with a true `needs_block_input` attribute is also given the block's input hidden
    states as `block_input=` (e.g. a seed ensemble that averages what each block adds).
    """
    with_input = bool(getattr(rewrite, "needs_block_input", False))
    for module in experts.values():
        for layer in layers:
            block = module.blocks[layer]
            if with_input:
                handle = block.register_forward_hook(
                    _rewrite_with_input_hook(tracker, layer, rewrite), with_kwargs=True
                )
            else:
                handle = block.register_forward_hook(_rewrite_hook(tracker, layer, rewrite))
            hooks.add_handle(handle)


def _rewrite_hook(tracker: PassTracker, layer: int, rewrite: BlockRewrite):
    def hook(module, args, output):
        return rewrite(tracker.step, tracker.expert, tracker.pass_name, layer, output)

    return hook


def _rewrite_with_input_hook(tracker: PassTracker, layer: int, rewrite):
    def hook(module, args, kwargs, output):
        block_input = args[0] if args else kwargs["hidden_states"]
        return rewrite(tracker.step, tracker.expert, tracker.pass_name, layer, output, block_input=block_input)

    return hook


class LayerNormProbe:
    """Per-token L2 norm over channels of each chosen block's output, on the device."""

    def __init__(self, tracker: PassTracker, layers: list[int], passes: str):
        self.tracker = tracker
        self.layers = layers
        self.passes = passes
        self.active = False  # set per step: norms are only computed on captured steps
        self._norms: dict[str, dict[int, torch.Tensor]] = {}

    def install(self, hooks: HookSet, experts: dict[str, torch.nn.Module]) -> None:
        for module in experts.values():
            for layer in self.layers:
                hooks.add_handle(module.blocks[layer].register_forward_hook(self._hook(layer)))

    def _hook(self, layer: int):
        def hook(module, args, output):
            if self.active and wants_pass(self.passes, self.tracker.pass_name):
                # Accumulate in float32 without materializing a float32 copy of the states.
                norm = torch.linalg.vector_norm(output, dim=-1, dtype=torch.float32)
                self._norms.setdefault(self.tracker.pass_name, {})[layer] = norm

        return hook

    def collect(self) -> dict[str, torch.Tensor]:
        """{pass: (B, L, N) float32} for the step just run; resets for the next step."""
        out = {
            pass_name: torch.stack([by_layer[layer] for layer in self.layers], dim=1)
            for pass_name, by_layer in self._norms.items()
        }
        self._norms = {}
        return out
