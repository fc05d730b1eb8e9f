"""Interventions: what a variant changes about a run.

Each kind is a spec model in spec.py and an `Intervention` class here (`INTERVENTIONS` maps the one
to the other), which the experiment asks the same few things: `apply` its part to the trajectory's
`TrajectoryChanges`, the `first_step` it can change, the `source_runs` it needs and its `warnings`.
The classes act through three mechanisms, at three places of the loop:
- on the state entering a step (noise_at_step, noise_at_frame): `LatentPerturbations`, which
  shifts the model's input and, for UniPC, the corrected sample the solver continues from;
- on block outputs inside a forward (layer_swap, seed_ensemble): a `BlockRewrite`;
- on the pipeline call itself (guidance; the seeds of a seed_ensemble): the `TrajectoryInputs`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING

import torch

from stepscope.probe.hooks import UNIPC, BlockRewrite, HookSet, wants_pass
from stepscope.spec import Guidance, LayerSwap, NoiseAtFrame, NoiseAtStep, SeedEnsemble

if TYPE_CHECKING:
    from stepscope.probe.trajectory import TrajectoryInputs

# Hidden states of a swap source are kept in host memory up to this many bytes, then on disk.
DEFAULT_BANK_MEMORY = int(os.environ.get("STEPSCOPE_SWAP_MEMORY_BYTES", 4 * 2**30))

# Where a latent perturbation entered the solver (AppliedPerturbation.solver_state).
MODEL_INPUT = "model_input"  # the perturbed latent is the solver's whole state at that step
MODEL_INPUT_AND_CORRECTED_SAMPLE = "model_input+corrected_sample"  # UniPC: also its corrector's result


def _noise_like(latents: torch.Tensor, seed: int, step: int) -> torch.Tensor:
    """Gaussian noise with its own seed (per step), drawn on the CPU so every device agrees."""
    gen = torch.Generator("cpu").manual_seed((seed * 1_000_003 + step) % 2**63)
    return torch.randn(latents.shape, generator=gen, dtype=torch.float32).to(latents.device)


def _scale(latents: torch.Tensor, strength: float, units: str, sigma: float | None) -> torch.Tensor:
    """Noise scale per batch member: strength × std of that member's latent, × σ_s, or strength itself."""
    if units == "sigma":
        if sigma is None:
            raise ValueError("noise in units of sigma needs the step's σ")
        return torch.full((latents.shape[0], 1, 1, 1, 1), strength * sigma, device=latents.device)
    if units == "absolute":
        return torch.full((latents.shape[0], 1, 1, 1, 1), strength, device=latents.device)
    std = latents.float().flatten(1).std(dim=1)
    return (strength * std).view(-1, 1, 1, 1, 1)


@dataclass
class AppliedPerturbation:
    """One perturbation as it was realised: at which step, where in the solver, and how large."""

    step: int  # the step whose incoming latent was perturbed
    kind: str  # "noise_at_step" | "noise_at_frame"
    frames: list[int] | None  # latent frames that got noise; None for all
    noise_l2: list[float]  # ‖δ‖ per batch member
    latent_l2: list[float]  # ‖x‖ per batch member of the latent before this perturbation
    solver_state: str = MODEL_INPUT  # MODEL_INPUT or MODEL_INPUT_AND_CORRECTED_SAMPLE

    def to_json(self) -> dict:
        return asdict(self)


class LatentPerturbations:
    """noise_at_step and noise_at_frame: a shift δ of the state the solver continues from at a step.

    δ is added to the latent entering step s, which is the model's input at s. A solver that
    keeps no sample of its own (FlowMatchEuler: x_{s+1} = x_s + Δσ·v) then carries δ on by
    itself. UniPC's corrector does not: during step s it recomputes the sample at σ_s from its
    stored `last_sample` (the corrected sample of step s−1) and its x̂₀ history, so the input's
    δ would reach the next sample only through the one model evaluation at s (2–14% of it).
    There δ is also added to the corrector's result, the corrected sample that becomes
    `last_sample` and the start of the predictor: the same as shifting `last_sample` by
    δ·σ_{s−1}/σ_s. Earlier x̂₀ predictions in `model_outputs` are kept: they are the model's
    answers at earlier, unperturbed states; x̂₀ at s is the model's answer at the perturbed input.
    Where no corrector runs at s (s = 0, `disable_corrector`), the input is the solver's state.
    """

    def __init__(self, items: Iterable[NoiseAtStep | NoiseAtFrame]):
        self.items = list(items)
        self.applied: list[AppliedPerturbation] = []
        self._pending: tuple[int, torch.Tensor] | None = None  # (step, δ) for that step's corrector

    def __bool__(self) -> bool:
        return bool(self.items)

    def install(self, hooks: HookSet, scheduler) -> None:
        """Make each perturbation part of `scheduler`'s state too; undone by `hooks.remove()`."""
        self.applied = []
        self._pending = None
        if type(scheduler).__name__ == UNIPC:
            original = scheduler.multistep_uni_c_bh_update

            def corrector(*args, **kwargs):
                corrected = original(*args, **kwargs)
                if self._pending is not None and self._pending[0] == scheduler.step_index:
                    step, delta = self._pending
                    self._pending = None
                    for record in self.applied:
                        if record.step == step:
                            record.solver_state = MODEL_INPUT_AND_CORRECTED_SAMPLE
                    corrected = corrected + delta.to(corrected.dtype)
                return corrected

            hooks.patch(scheduler, "multistep_uni_c_bh_update", corrector)
        elif hasattr(scheduler, "last_sample"):
            # Another solver that rebuilds its sample from a stored one would silently undo δ.
            raise ValueError(
                f"noise perturbations are not defined for {type(scheduler).__name__}, which keeps its own previous "
                "sample; use UniPCMultistepScheduler or FlowMatchEulerDiscreteScheduler"
            )

    def perturb(self, step: int, latents: torch.Tensor, sigma: float | None = None) -> torch.Tensor:
        """The latent entering `step` with every perturbation of that step added (δ is remembered).

        `sigma` is σ_s of that step, needed by strengths in units of "sigma" (δ = strength·σ_s·ε).
        """
        delta = None
        for item in self.items:
            if isinstance(item, NoiseAtStep) and step in item.steps:
                frames = None
                scale = _scale(latents, item.strength, item.strength_units, sigma)
                added = scale * _noise_like(latents, item.seed, step)
            elif isinstance(item, NoiseAtFrame) and (item.steps is None or step in item.steps):
                frames = item.latent_frame_list
                if max(frames) >= latents.shape[2]:
                    raise ValueError(f"latent frame {max(frames)} is beyond the latent's {latents.shape[2]} frames")
                mask = torch.zeros(latents.shape[2], dtype=torch.bool, device=latents.device)
                mask[frames] = True
                noise = _noise_like(latents, item.seed, step)
                scale = _scale(latents, item.strength, item.strength_units, sigma)
                added = scale * noise * mask.view(1, 1, -1, 1, 1)
            else:
                continue
            self.applied.append(
                AppliedPerturbation(
                    step=step,
                    kind=item.kind,
                    frames=frames,
                    noise_l2=_l2_per_member(added),
                    latent_l2=_l2_per_member(latents),
                )
            )
            latents = latents + added.to(latents.dtype)
            delta = added if delta is None else delta + added
        if delta is not None:
            self._pending = (step, delta)
        return latents


def _l2_per_member(x: torch.Tensor) -> list[float]:
    return torch.linalg.vector_norm(x.flatten(1), dim=1, dtype=torch.float32).tolist()


def token_slice_for_frames(frames: list[int] | None, tokens_per_frame: int, num_tokens: int) -> torch.Tensor | None:
    """Token indices of the given latent frames (tokens are frame-major), or None for all."""
    if frames is None:
        return None
    idx = [torch.arange(f * tokens_per_frame, (f + 1) * tokens_per_frame) for f in frames]
    out = torch.cat(idx)
    if int(out.max()) >= num_tokens:
        raise ValueError(f"frame {max(frames)} is beyond the {num_tokens // tokens_per_frame} token frames")
    return out


class HiddenStateBank:
    """Block outputs of a swap source, keyed by (step, pass, layer).

    States go to host memory (pinned when a GPU is used) until `memory_budget` bytes are held,
    then to files in a scratch directory, so a swap over many steps of a 14B model stays
    bounded in RAM. The scratch directory is removed by `close()`.
    """

    def __init__(self, memory_budget: int = DEFAULT_BANK_MEMORY, scratch_dir: str | None = None):
        self.memory_budget = memory_budget
        self.bytes_in_memory = 0
        self._memory: dict[tuple[int, str, int], torch.Tensor] = {}
        self._on_disk: dict[tuple[int, str, int], str] = {}
        self._scratch_parent = scratch_dir
        self._scratch: tempfile.TemporaryDirectory | None = None

    def __len__(self) -> int:
        return len(self._memory) + len(self._on_disk)

    def put(self, key: tuple[int, str, int], state: torch.Tensor) -> None:
        size = state.numel() * state.element_size()
        if self.bytes_in_memory + size <= self.memory_budget:
            host = torch.empty(state.shape, dtype=state.dtype, pin_memory=state.is_cuda)
            host.copy_(state)
            self._memory[key] = host
            self.bytes_in_memory += size
            return
        if self._scratch is None:
            self._scratch = tempfile.TemporaryDirectory(prefix="stepscope-swap-", dir=self._scratch_parent)
        path = os.path.join(self._scratch.name, f"{key[0]}_{key[1]}_{key[2]}.pt")
        torch.save(state.detach().cpu(), path)
        self._on_disk[key] = path

    def get(self, key: tuple[int, str, int], device: torch.device) -> torch.Tensor:
        if key in self._memory:
            return self._memory[key].to(device, non_blocking=True)
        if key in self._on_disk:
            return torch.load(self._on_disk[key], weights_only=True).to(device)
        raise KeyError(f"no stored hidden state for step {key[0]}, pass {key[1]}, layer {key[2]}")

    def close(self) -> None:
        self._memory.clear()
        self._on_disk.clear()
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None


class SwapRecorder:
    """Stores the source run's block outputs that a layer swap will need."""

    def __init__(self, swap: LayerSwap, bank: HiddenStateBank):
        self.swap = swap
        self.bank = bank

    def __call__(self, step: int, expert: str, pass_name: str, layer: int, output: torch.Tensor):
        if self._wanted(step, pass_name, layer):
            self.bank.put((step, pass_name, layer), output)
        return None

    def _wanted(self, step: int, pass_name: str, layer: int) -> bool:
        return (
            layer in self.swap.layers
            and (self.swap.steps is None or step in self.swap.steps)
            and wants_pass(self.swap.passes, pass_name)
        )


class SwapReplayer(SwapRecorder):
    """Replaces this run's block outputs by the source's (all tokens, or those of chosen frames).

    Only the CFG passes named by `swap.passes` are touched: with the default "cond", the
    unconditional forward keeps this run's own states, so the guided velocity combines B's
    conditional states with A's unconditional ones ("both" swaps the two forwards). With all
    tokens swapped, a forward's output depends only on the last swapped layer: see
    `layer_swap_warnings`.
    """

    def __init__(self, swap: LayerSwap, bank: HiddenStateBank, tokens_per_frame: int):
        super().__init__(swap, bank)
        self.tokens_per_frame = tokens_per_frame

    def __call__(self, step: int, expert: str, pass_name: str, layer: int, output: torch.Tensor):
        if not self._wanted(step, pass_name, layer):
            return None
        source = self.bank.get((step, pass_name, layer), output.device)
        if source.shape != output.shape:
            raise ValueError(f"swap source state {tuple(source.shape)} does not match {tuple(output.shape)}")
        tokens = token_slice_for_frames(self.swap.latent_frame_list, self.tokens_per_frame, output.shape[1])
        if tokens is None:
            return source.to(output.dtype)
        replaced = output.clone()
        tokens = tokens.to(output.device)
        replaced[:, tokens] = source[:, tokens].to(output.dtype)
        return replaced


def layer_swap_warnings(swap: LayerSwap) -> list[str]:
    """What a user should know about a layer swap that does less than it appears to.

    A swap of all tokens replaces a block's whole output by B's, so whatever this run computed
    before the last swapped layer of a forward no longer reaches that forward's output: swapping
    [20, 21] gives exactly the run of swapping [21] alone. (Swapping chosen frames does not
    collapse: the other tokens carry the earlier swaps on through attention.)
    """
    layers = sorted(set(swap.layers))
    if swap.frames is not None or len(layers) < 2:
        return []
    return [
        f"layer_swap of all tokens at layers {layers}: each forward's output depends only on the last swapped "
        f"layer, so this equals swapping layer {layers[-1]} alone; swap chosen frames, or one layer per variant, "
        "to see the earlier layers' effect"
    ]


def default_ensemble_layers(num_layers: int) -> list[int]:
    """The third quarter of the depth, depth/2 … 3·depth/4 − 1 (at least one layer): 20–29 of 40, 4–5 of 8."""
    start, stop = num_layers // 2, (3 * num_layers) // 4
    return list(range(start, max(stop, start + 1)))


# How a seed ensemble combines its members' hidden states over its layers (EnsembleAverager.mode).
ENSEMBLE_UPDATES = "updates"
ENSEMBLE_LAST_LAYER = "last_layer"
ENSEMBLE_SEQUENTIAL = "sequential"
ENSEMBLE_MODES = (ENSEMBLE_UPDATES, ENSEMBLE_LAST_LAYER, ENSEMBLE_SEQUENTIAL)


class EnsembleAverager:
    """A seed ensemble: one batch member per seed, hidden states averaged across members at chosen layers and steps.

    The paper's recipe — 3 seeds, first step, hidden states of layers 20–29 averaged across the
    runs, denoising continues — has three readings here (`mode`):

    - "updates" (default): the members run the layers independently; at the last chosen layer
      each member's state becomes its own state entering the first chosen layer plus the
      across-member mean of what every chosen layer added (output − input), summed over the
      layers: h_k ← h_k(in) + Σ_l mean_j(Δ_l,j) for consecutive layers (unchosen layers in a gap
      keep each member's own update). Every layer's mean contributes; each member keeps the
      state it brought into the range (the layers before it: global structure in the paper).
    - "last_layer": the members run the layers independently; the across-member mean of the last
      chosen layer's output is handed on to every member (the layers before it count only
      through each member's own states).
    - "sequential": each chosen layer's output is replaced by the mean as it is computed, in one
      pass. After the first chosen layer every member holds the same state, so the later layers
      average identical tensors: [a, …, b] gives the result of [a] alone.

    In every mode the members then denoise on, each from its own latent with the step's
    velocity computed from the averaged states. Means are taken in a wider type than the states
    (float64 for float32, float32 for bf16/fp16), so identical members give back exactly their
    own states in every mode.
    """

    def __init__(self, ensemble: SeedEnsemble, layers: list[int], mode: str | None = None):
        mode = mode or getattr(ensemble, "mode", None) or ENSEMBLE_UPDATES
        if mode not in ENSEMBLE_MODES:
            raise ValueError(f"seed_ensemble mode must be one of {', '.join(ENSEMBLE_MODES)}, got {mode!r}")
        self.ensemble = ensemble
        self.layers = sorted(layers)
        self.mode = mode
        self.needs_block_input = mode == ENSEMBLE_UPDATES  # install_block_rewrite passes block_input then
        self._correction: torch.Tensor | None = None  # Σ_l (mean_j Δ_l,j − Δ_l,k) so far in this forward

    def __call__(
        self,
        step: int,
        expert: str,
        pass_name: str,
        layer: int,
        output: torch.Tensor,
        block_input: torch.Tensor | None = None,
    ):
        if layer not in self.layers or step not in self.ensemble.steps:
            return None
        if not wants_pass(self.ensemble.passes, pass_name):
            return None
        wide = _wide_dtype(output)
        last = layer == self.layers[-1]
        if self.mode == ENSEMBLE_SEQUENTIAL or (self.mode == ENSEMBLE_LAST_LAYER and last):
            mean = output.to(wide).mean(dim=0, keepdim=True).to(output.dtype)
            return mean.expand_as(output).contiguous()
        if self.mode == ENSEMBLE_LAST_LAYER:
            return None
        if block_input is None:
            raise ValueError(
                "the 'updates' seed ensemble needs each block's input (install it with install_block_rewrite)"
            )
        update = output.to(wide) - block_input.to(wide)
        correction = update.mean(dim=0, keepdim=True) - update
        if layer == self.layers[0] or self._correction is None:
            self._correction = correction
        else:
            self._correction = self._correction + correction
        if not last:
            return None
        averaged = (output.to(wide) + self._correction).to(output.dtype)
        self._correction = None
        return averaged


def _wide_dtype(states: torch.Tensor) -> torch.dtype:
    """The type means are taken in: float64 for float32 states (float32 on MPS, which has no float64)."""
    if states.dtype == torch.float32 and states.device.type != "mps":
        return torch.float64
    return torch.float32


# -- one protocol for every kind ---------------------------------------------------------------


@dataclass
class TrajectoryChanges:
    """What a trajectory's interventions make of the baseline's pipeline call; each adds its part, in order."""

    inputs: TrajectoryInputs  # the call's inputs: the baseline's, or changed (guidance, seeds)
    noise: list[NoiseAtStep | NoiseAtFrame] = field(default_factory=list)  # become one LatentPerturbations
    rewrites: list[tuple[list[int], BlockRewrite]] = field(default_factory=list)  # (layers, rewrite), in order


@dataclass(frozen=True)
class PlanContext:
    """What the experiment tells an intervention that applies itself to a trajectory."""

    base: TrajectoryInputs  # the baseline's inputs
    num_layers: int
    tokens_per_frame: int  # tokens of one latent frame (tokens are frame-major)
    source_states: Callable[[LayerSwap], HiddenStateBank]  # runs a layer swap's run B: its block outputs


class Intervention:
    """One kind of intervention as the engine runs it; `spec` is its model from spec.py.

    Before anything runs the experiment asks each intervention for `source_runs` (progress),
    `warnings` (the manifest) and `first_step` (where a sweep member may start from the
    baseline's state); building the trajectory, `apply`. A new kind: its spec model (spec.py's
    `Intervention` union), a subclass here overriding what differs, and its entry in `INTERVENTIONS`.
    """

    def __init__(self, spec):
        self.spec = spec

    def apply(self, changes: TrajectoryChanges, context: PlanContext) -> None:
        """Add this intervention's part to the trajectory: changed inputs, latent noise or block rewrites."""
        raise NotImplementedError

    def first_step(self) -> int:
        """The first step it can change: a sweep member starts there from the baseline's stored state (0: from
        scratch). The smallest of its `steps`; 0 when it acts at every step."""
        steps = getattr(self.spec, "steps", None)
        return 0 if steps is None else min(steps)

    def source_runs(self) -> int:
        """Trajectories it runs before its own (counted in the experiment's progress)."""
        return 0

    def warnings(self) -> list[str]:
        """What a user should know about it, stored in the manifest."""
        return []


class AddNoise(Intervention):
    """noise_at_step, noise_at_frame: Gaussian noise added to the latent entering chosen steps (`LatentPerturbations`,
    one for all of a trajectory's noise, so the perturbations of one step enter the solver as one δ)."""

    def apply(self, changes: TrajectoryChanges, context: PlanContext) -> None:
        changes.noise.append(self.spec)


class ChangeGuidance(Intervention):
    """guidance: the pipeline's guidance scales; with only `scale` given the low-noise expert keeps the baseline's
    guidance_2."""

    def apply(self, changes: TrajectoryChanges, context: PlanContext) -> None:
        scale_2 = self.spec.scale_2 if self.spec.scale_2 is not None else context.base.guidance_2
        changes.inputs = replace(changes.inputs, guidance=self.spec.scale, guidance_2=scale_2)


class AverageSeeds(Intervention):
    """seed_ensemble: the seeds run as one batch, block outputs averaged across it (`EnsembleAverager`)."""

    def apply(self, changes: TrajectoryChanges, context: PlanContext) -> None:
        changes.inputs = replace(changes.inputs, seeds=list(self.spec.seeds))
        layers = list(self.spec.layers) if self.spec.layers is not None else default_ensemble_layers(context.num_layers)
        changes.rewrites.append((layers, EnsembleAverager(self.spec, layers)))

    def first_step(self) -> int:
        return 0  # its batch is not the baseline's: no stored state of the baseline continues it


class SwapLayers(Intervention):
    """layer_swap: block outputs replaced by those of run B, which runs first (`SwapRecorder` → `SwapReplayer`)."""

    def apply(self, changes: TrajectoryChanges, context: PlanContext) -> None:
        replayer = SwapReplayer(self.spec, context.source_states(self.spec), context.tokens_per_frame)
        changes.rewrites.append((list(self.spec.layers), replayer))

    def source_runs(self) -> int:
        return 1

    def warnings(self) -> list[str]:
        return layer_swap_warnings(self.spec)


# Each spec model of spec.py's `Intervention` union → the class that runs it.
INTERVENTIONS: dict[type, type[Intervention]] = {
    NoiseAtStep: AddNoise,
    NoiseAtFrame: AddNoise,
    Guidance: ChangeGuidance,
    SeedEnsemble: AverageSeeds,
    LayerSwap: SwapLayers,
}


def intervention_for(spec) -> Intervention:
    """The engine's side of an intervention of the spec (a member of spec.py's `Intervention` union)."""
    return INTERVENTIONS[type(spec)](spec)
