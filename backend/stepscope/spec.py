"""The experiment spec: what a user asks stepscope to run, with a limit on every number.

An experiment is a baseline trajectory plus optional variants (the same inputs with
interventions applied). Everything here is checked without loading a model;
`check_against_model` adds the checks that need the model's shape (depth, latent frames).
Every error names the field it is about, as a dotted path such as `variants.0.interventions.0.steps`.

`check_spec(data, info)` does both and is the one way to a `CheckedSpec`, the only spec the
probe engine runs: each process that takes a spec from outside (the API from a request, the
worker from a job record, the CLI, bench and reproduce from their options) checks it once there.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

if TYPE_CHECKING:
    from stepscope.models.presets import ModelInfo

MAX_STEPS = 200
MAX_SIDE = 1280
MAX_FRAMES = 241
MAX_VARIANTS = 16
MAX_SWEEPS = 4
MAX_SWEEP_MEMBERS = MAX_STEPS  # members of one sweep: up to one per step of the longest run
MAX_INTERVENTIONS = 8
MAX_ENSEMBLE = 8  # seeds in one seed_ensemble batch: k latents live on the device at once
MAX_SEED = 2**63 - 1
MAX_STRENGTH = 100.0
MAX_GUIDANCE = 30.0
MAX_PROMPT_CHARS = 4000
VARIANT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,47}$")
BASELINE = "baseline"

Passes = Literal["cond", "uncond", "both"]
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]
StepIndex = Annotated[int, Field(ge=0, lt=MAX_STEPS)]
LayerIndex = Annotated[int, Field(ge=0, le=255)]
FrameIndex = Annotated[int, Field(ge=0, lt=MAX_FRAMES)]


def _unique_sorted(values: list[int]) -> list[int]:
    return sorted(set(values))


# Index lists are kept sorted and free of repeats, so [3, 1, 3] and [1, 3] mean one thing.
Steps = Annotated[list[StepIndex], AfterValidator(_unique_sorted)]
Layers = Annotated[list[LayerIndex], AfterValidator(_unique_sorted)]
Frames = Annotated[list[FrameIndex], AfterValidator(_unique_sorted)]


class SpecError(ValueError):
    """A spec that cannot run; `field` is the dotted path of the offending value."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class _Strict(BaseModel):
    # strict: `"steps": true` or `"seed": "3"` is an error, not 1 or 3 (an int still passes as a float).
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Probes(_Strict):
    """What to record at each captured step."""

    every: int = Field(1, ge=1, le=MAX_STEPS, description="capture every k-th step (the last step always)")
    layers: Literal["all", "none"] | Layers = Field(
        "all", description="blocks whose per-token output L2 norms are recorded, in every expert"
    )
    passes: Passes = Field("cond", description="which CFG pass the layer norms come from")
    x0_arrays: bool = Field(True, description="store x̂₀ latents (float32 .npy) besides the RGB previews")
    cond_x0: bool = Field(
        False, description="also store x̂₀ of the conditional prediction alone (x_s − σ_s·v_cond, float32)"
    )
    decode_every: int | None = Field(
        None, ge=1, le=MAX_STEPS, description="full VAE decode of every k-th step, in the background"
    )
    decode_steps: Steps = Field(default_factory=list, description="steps to fully decode")
    final_decode: bool = Field(True, description="decode the final latents into the output video")

    @field_validator("layers")
    @classmethod
    def _layers(cls, v):
        if isinstance(v, list) and not v:
            raise ValueError("give at least one layer, or 'none'")
        return v


NoiseUnits = Literal["latent_std", "absolute", "sigma"]
FrameUnits = Literal["latent", "video"]
FRAME_UNITS_HELP = (
    "latent: latent frame indices; video: video frame indices, mapped to the latent frame holding them "
    "(video frame 0 is latent frame 0, then frames 4k-3..4k are latent frame k)"
)


def latent_frame_of(video_frame: int) -> int:
    """The latent frame holding a video frame: the first frame alone, then groups of 4 (Wan's VAE)."""
    return 0 if video_frame == 0 else (video_frame - 1) // 4 + 1


def latent_frames_of(frames: list[int], units: str) -> list[int]:
    """Frame indices in `units` ("latent" or "video") as sorted, distinct latent frames."""
    if units == "latent":
        return list(frames)
    return sorted({latent_frame_of(f) for f in frames})


# Titles and examples below are what the submit form shows: it is built from this module's JSON Schema.
class NoiseAtStep(_Strict):
    """Add Gaussian noise to every frame of the latent entering each of `steps`."""

    model_config = ConfigDict(title="Noise at step")

    kind: Literal["noise_at_step"] = "noise_at_step"
    steps: Steps = Field(min_length=1, max_length=MAX_STEPS, title="steps", examples=[[5], [3, 4, 5]])
    strength: float = Field(ge=0.0, le=MAX_STRENGTH, title="strength", examples=[0.5])
    relative: bool = Field(
        True, title="relative to latent std", description="strength in units of the latent's std at that step"
    )
    units: NoiseUnits | None = Field(
        None,
        title="strength units",
        description="latent_std: × the latent's std; absolute: as given; sigma: × the step's σ_s "
        "(δ = strength·σ_s·ε); when omitted, `relative` decides (latent_std or absolute)",
    )
    seed: Seed = Field(0, title="noise seed")

    @property
    def strength_units(self) -> str:
        """The units `strength` is in: `units`, or what `relative` says when it is omitted."""
        return self.units or ("latent_std" if self.relative else "absolute")


class NoiseAtFrame(_Strict):
    """Add Gaussian noise to chosen latent frames at every step (or the given steps)."""

    model_config = ConfigDict(title="Noise at frame")

    kind: Literal["noise_at_frame"] = "noise_at_frame"
    frames: Frames = Field(min_length=1, max_length=MAX_FRAMES, title="frames", examples=[[2]])
    frame_units: FrameUnits = Field("latent", title="frame units", description=FRAME_UNITS_HELP)
    steps: Steps | None = Field(
        None, min_length=1, title="steps (empty: all)", description="steps to perturb; all steps when omitted"
    )
    strength: float = Field(ge=0.0, le=MAX_STRENGTH, title="strength", examples=[0.5])
    relative: bool = Field(True, title="relative to latent std")
    units: NoiseUnits | None = Field(
        None, title="strength units", description="as in noise_at_step: latent_std, absolute or sigma"
    )
    seed: Seed = Field(0, title="noise seed")

    @property
    def strength_units(self) -> str:
        """The units `strength` is in: `units`, or what `relative` says when it is omitted."""
        return self.units or ("latent_std" if self.relative else "absolute")

    @property
    def latent_frame_list(self) -> list[int]:
        """The latent frames perturbed (video frames mapped to the latent frames holding them)."""
        return latent_frames_of(self.frames, self.frame_units)


class SourceRun(_Strict):
    """Run B of a layer swap: the baseline's inputs with these fields replaced."""

    prompt: str | None = Field(None, max_length=MAX_PROMPT_CHARS, title="B prompt (empty: same)")
    negative_prompt: str | None = Field(None, max_length=MAX_PROMPT_CHARS, title="B negative prompt (empty: same)")
    seed: Seed | None = Field(None, title="B seed (empty: same)")
    image: str | None = Field(
        None,
        description="first frame of B (I2V); same forms as the top-level image",
        json_schema_extra={"contentMediaType": "image/*"},
    )


class LayerSwap(_Strict):
    """Replace block outputs of this run with those of run B at `layers` and `steps`.

    Only the CFG passes named in `passes` are swapped (with "cond" the unconditional forward keeps
    this run's own states). With all tokens swapped, a forward depends only on the last swapped
    layer, so layers [20, 21] give exactly the run of [21] alone (the run warns); swap chosen
    frames, or one layer per variant, to see earlier layers.
    """

    model_config = ConfigDict(title="Layer swap")

    kind: Literal["layer_swap"] = "layer_swap"
    layers: Layers = Field(min_length=1, max_length=256, title="layers", examples=[[20, 21]])
    steps: Steps | None = Field(
        None, min_length=1, title="steps (empty: all)", description="steps to swap at; all steps when omitted"
    )
    frames: Frames | None = Field(
        None, min_length=1, title="frames (empty: all)", description="swap only the tokens of these frames"
    )
    frame_units: FrameUnits = Field("latent", title="frame units", description=FRAME_UNITS_HELP)
    passes: Passes = Field(
        "cond",
        title="CFG passes",
        description="passes whose states are swapped; the others keep this run's own states",
    )
    source: SourceRun = Field(title="run B")

    @property
    def latent_frame_list(self) -> list[int] | None:
        """The latent frames swapped (video frames mapped to latent frames), or None for all tokens."""
        return None if self.frames is None else latent_frames_of(self.frames, self.frame_units)


class SeedEnsemble(_Strict):
    """Run the seeds as one batch and average their block outputs at `layers` and `steps`."""

    model_config = ConfigDict(title="Seed ensemble")

    kind: Literal["seed_ensemble"] = "seed_ensemble"
    seeds: list[Seed] = Field(min_length=2, max_length=MAX_ENSEMBLE, title="seeds", examples=[[0, 1, 2]])
    layers: Layers | None = Field(
        None,
        min_length=1,
        title="layers (empty: the third quarter of the depth)",
        description="layers to average; the third quarter of the depth (depth/2 … 3·depth/4 − 1: 20-29 of 40) when "
        "omitted",
    )
    steps: Steps = Field([0], min_length=1, title="steps")
    passes: Passes = Field("both", title="CFG passes")
    mode: Literal["updates", "last_layer", "sequential"] = Field(
        "updates",
        title="averaging mode",
        description="updates: members run the layers on their own, then each gets its own input plus the mean "
        "of every layer's update; last_layer: the mean of the last layer's output goes to every member "
        "([a..b] equals [b]); sequential: each layer's output is averaged as computed ([a..b] equals [a])",
    )


class Guidance(_Strict):
    """Change classifier-free guidance; a scale of 1 or less turns CFG off."""

    model_config = ConfigDict(title="Guidance")

    kind: Literal["guidance"] = "guidance"
    scale: float = Field(ge=0.0, le=MAX_GUIDANCE, title="scale", examples=[1.0])
    scale_2: float | None = Field(
        None,
        ge=0.0,
        le=MAX_GUIDANCE,
        title="low-noise expert scale",
        description="when omitted, the baseline's guidance_2 is kept",
    )


# The one list of interventions: the API's JSON Schema (and so the submit form) is built from it.
Intervention = Annotated[NoiseAtStep | NoiseAtFrame | LayerSwap | SeedEnsemble | Guidance, Field(discriminator="kind")]
INTERVENTION_KINDS = frozenset(m.model_fields["kind"].default for m in get_args(get_args(Intervention)[0]))


class Variant(_Strict):
    name: str = Field(description="letters, digits, '_' and '-'; unique; not 'baseline'")
    interventions: list[Intervention] = Field(min_length=1, max_length=MAX_INTERVENTIONS)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not VARIANT_NAME.match(v):
            raise ValueError("use 1-48 letters, digits, '_' or '-', starting with a letter or digit")
        if v == BASELINE:
            raise ValueError("'baseline' is the name of the unperturbed run")
        return v

    @model_validator(mode="after")
    def _composable(self):
        kinds = [i.kind for i in self.interventions]
        for kind in ("seed_ensemble", "guidance"):
            if kinds.count(kind) > 1:
                raise ValueError(f"at most one {kind} per variant")
        if "seed_ensemble" in kinds and "layer_swap" in kinds:
            raise ValueError("seed_ensemble and layer_swap do not compose: run them as two variants")
        return self


SweepOver = Literal["steps", "frames", "layers", "strength"]
# Which parameter of which intervention kind a sweep may vary.
SWEEPABLE: dict[str, frozenset[str]] = {
    "steps": frozenset({"noise_at_step", "noise_at_frame", "layer_swap", "seed_ensemble"}),
    "frames": frozenset({"noise_at_frame", "layer_swap"}),
    "layers": frozenset({"layer_swap", "seed_ensemble"}),
    "strength": frozenset({"noise_at_step", "noise_at_frame"}),
}


class Sweep(_Strict):
    """One intervention swept over one parameter: a trajectory per value, each compared with the baseline.

    Member i is `intervention` with `over` set to `values[i]` (steps, frames and layers become the
    one-element list [value]); whatever `intervention` gives for that field is replaced. The run
    stores a summary curve (final 1 − CKA of x̂₀ and of hidden states, final relative L2) against
    the values.
    """

    model_config = ConfigDict(title="Sweep")

    name: str = Field(description="letters, digits, '_' and '-'; unique among variants and sweeps")
    intervention: Intervention
    over: SweepOver = Field(title="swept parameter")
    values: list[int | float] = Field(
        min_length=1, max_length=MAX_SWEEP_MEMBERS, title="values", examples=[[0, 5, 10, 15]]
    )

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return Variant._name(v)

    @model_validator(mode="after")
    def _sweepable(self):
        kind = self.intervention.kind
        if kind not in SWEEPABLE[self.over]:
            allowed = ", ".join(sorted(SWEEPABLE[self.over]))
            raise SpecError("over", f"{kind} has no {self.over} to sweep; {self.over} can be swept for {allowed}")
        if len(set(self.values)) != len(self.values):
            raise SpecError("values", "each value once")
        for i, v in enumerate(self.values):
            if self.over != "strength" and (not isinstance(v, int) or v < 0):
                raise SpecError(f"values.{i}", f"{self.over} are whole numbers ≥ 0, got {v!r}")
            if self.over == "strength" and not 0.0 <= v <= MAX_STRENGTH:
                raise SpecError(f"values.{i}", f"strength must be in [0, {MAX_STRENGTH}], got {v!r}")
        return self

    def members(self) -> list[NoiseAtStep | NoiseAtFrame | LayerSwap | SeedEnsemble]:
        """The intervention of each member, in the order of `values`."""
        base = self.intervention.model_dump()
        out = []
        for v in self.values:
            value = float(v) if self.over == "strength" else [v]
            out.append(type(self.intervention).model_validate({**base, self.over: value}))
        return out


MAX_TASK_SEED = 2**31 - 1


class TaskRef(_Strict):
    """A task instance (`stepscope.tasks.generate(family, difficulty, seed)`) whose scorer grades every trajectory.

    The instance is generated at the run's canvas (square `height` = `width`, `frames`), as the bench does.
    """

    model_config = ConfigDict(title="Task")

    family: str = Field(title="task family", examples=["maze"])
    difficulty: int = Field(1, ge=1, le=3, title="difficulty")
    seed: int = Field(0, ge=0, le=MAX_TASK_SEED, title="instance seed")

    @field_validator("family")
    @classmethod
    def _family(cls, v: str) -> str:
        from stepscope.tasks import family_names

        known = family_names()
        if v not in known:
            raise ValueError(f"unknown task family {v!r}; known: {', '.join(known)}")
        return v


class ExperimentSpec(_Strict):
    """One experiment: a baseline trajectory and its variants."""

    model: str = Field("tiny", min_length=1, max_length=300)
    prompt: str = Field("", max_length=MAX_PROMPT_CHARS)
    negative_prompt: str = Field("", max_length=MAX_PROMPT_CHARS)
    image: str | None = Field(
        None,
        description="first frame for image-to-video models: a data: URL, or (CLI only) a file path; "
        "the API stores uploads and rewrites this to the run directory's copy",
        json_schema_extra={"contentMediaType": "image/*"},
    )
    seed: Seed = 0
    steps: int = Field(20, ge=1, le=MAX_STEPS)
    guidance: float = Field(5.0, ge=0.0, le=MAX_GUIDANCE)
    guidance_2: float | None = Field(None, ge=0.0, le=MAX_GUIDANCE, description="low-noise expert's guidance")
    height: int = Field(64, ge=16, le=MAX_SIDE)
    width: int = Field(64, ge=16, le=MAX_SIDE)
    frames: int = Field(17, ge=1, le=MAX_FRAMES, description="video frames; 4k+1")
    probes: Probes = Field(default_factory=Probes)
    variants: list[Variant] = Field(default_factory=list, max_length=MAX_VARIANTS)
    sweeps: list[Sweep] = Field(
        default_factory=list,
        max_length=MAX_SWEEPS,
        description=f"each sweep runs up to {MAX_SWEEP_MEMBERS} members; they do not count against the "
        f"{MAX_VARIANTS} variants",
    )
    task: TaskRef | None = Field(
        None,
        description="score every trajectory's final video (and each captured step's preview) with this task "
        "instance's rule-based scorer; needs probes.final_decode and a square task canvas",
    )

    @field_validator("height", "width")
    @classmethod
    def _multiple_of_16(cls, v: int) -> int:
        if v % 16:
            raise ValueError(f"must be a multiple of 16, got {v}")
        return v

    @field_validator("frames")
    @classmethod
    def _frames(cls, v: int) -> int:
        if (v - 1) % 4:
            raise ValueError(f"must be 4k+1 (1, 5, 9, ..., 81), got {v}")
        return v

    @property
    def latent_frames(self) -> int:
        return (self.frames - 1) // 4 + 1

    @model_validator(mode="after")
    def _within_run(self):
        names = [v.name for v in self.variants]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise SpecError(f"variants.{i}.name", f"duplicate variant name {name!r}")
        for i, sweep in enumerate(self.sweeps):
            if sweep.name in names:
                raise SpecError(f"sweeps.{i}.name", f"{sweep.name!r} is already the name of a variant or sweep")
            names.append(sweep.name)
        for field, step in self._step_fields():
            if step >= self.steps:
                raise SpecError(field, f"step {step} is beyond the run's {self.steps} steps (0..{self.steps - 1})")
        for field, frame, units in self._frame_fields():
            if units == "video" and frame >= self.frames:
                raise SpecError(field, f"video frame {frame} is out of range: the run has {self.frames} frames")
            if units == "latent" and frame >= self.latent_frames:
                raise SpecError(
                    field,
                    f"latent frame {frame} is out of range: {self.frames} frames give "
                    f"{self.latent_frames} latent frames (0..{self.latent_frames - 1})",
                )
        return self

    @model_validator(mode="after")
    def _task_canvas(self):
        if self.task is None:
            return self
        if not self.probes.final_decode:
            raise SpecError("probes.final_decode", "a task is scored on the final video: keep final_decode on")
        from stepscope.tasks import Canvas, TaskError

        if self.height != self.width:
            raise SpecError("task", f"tasks use square frames: height {self.height} ≠ width {self.width}")
        try:
            Canvas(size=self.width, frames=self.frames)
        except TaskError as exc:
            raise SpecError("task", f"the run's canvas cannot hold a task: {exc}") from None
        return self

    def _interventions(self):
        """(field prefix, intervention) for every variant's intervention and every sweep's template."""
        for vi, variant in enumerate(self.variants):
            for ii, iv in enumerate(variant.interventions):
                yield f"variants.{vi}.interventions.{ii}", iv
        for si, sweep in enumerate(self.sweeps):
            yield f"sweeps.{si}.intervention", sweep.intervention

    def _swept(self, over: str):
        """(field, value) of every sweep value of parameter `over`."""
        for si, sweep in enumerate(self.sweeps):
            if sweep.over == over:
                for i, v in enumerate(sweep.values):
                    yield f"sweeps.{si}.values.{i}", sweep, v

    def _step_fields(self):
        for s in self.probes.decode_steps:
            yield "probes.decode_steps", s
        for prefix, iv in self._interventions():
            for s in getattr(iv, "steps", None) or []:
                yield f"{prefix}.steps", s
        for field, _, s in self._swept("steps"):
            yield field, s

    def _frame_fields(self):
        for prefix, iv in self._interventions():
            for f in getattr(iv, "frames", None) or []:
                yield f"{prefix}.frames", f, iv.frame_units
        for field, sweep, f in self._swept("frames"):
            yield field, f, sweep.intervention.frame_units

    def layer_fields(self):
        """(field, layer) for every layer index the spec names, for `check_against_model`."""
        if isinstance(self.probes.layers, list):
            for layer in self.probes.layers:
                yield "probes.layers", layer
        for prefix, iv in self._interventions():
            for layer in getattr(iv, "layers", None) or []:
                yield f"{prefix}.layers", layer
        for field, _, layer in self._swept("layers"):
            yield field, layer

    def images(self):
        """(field, value) for every first-frame image the spec names."""
        if self.image is not None:
            yield "image", self.image
        for prefix, iv in self._interventions():
            if isinstance(iv, LayerSwap) and iv.source.image is not None:
                yield f"{prefix}.source.image", iv.source.image


def parse_spec(data: dict) -> ExperimentSpec:
    """Validate a JSON object into a spec; raise SpecError naming the first bad field."""
    try:
        return ExperimentSpec.model_validate(data)
    except ValidationError as exc:
        raise spec_error_from(exc) from None


def spec_error_from(exc: ValidationError) -> SpecError:
    """The first validation error as a SpecError with a plain dotted field path."""
    err = exc.errors()[0]
    ctx_error = (err.get("ctx") or {}).get("error")
    # Unions put the member they tried into the path (`...interventions.0.noise_at_step`,
    # `probes.layers.list[...]`); drop it so the path is the field the user wrote.
    loc = list(err["loc"])
    parts = []
    for i, p in enumerate(loc):
        union_tag = p in INTERVENTION_KINDS and (
            (i >= 2 and loc[i - 2] == "interventions") or (i >= 1 and loc[i - 1] == "intervention")
        )
        if union_tag or (isinstance(p, str) and "[" in p):
            continue
        parts.append(str(p))
    if isinstance(ctx_error, SpecError):  # raised by a nested model's validator: its field is relative to it
        return SpecError(".".join([*parts, ctx_error.field]), ctx_error.message) if parts else ctx_error
    message = err["msg"].removeprefix("Value error, ")
    value = err.get("input")
    if isinstance(value, float) and not math.isfinite(value):  # JSON's NaN/Infinity fail a bound, but are no number
        message = f"must be a finite number, got {value}"
    return SpecError(".".join(parts) or "spec", message)


def check_against_model(spec: ExperimentSpec, info: ModelInfo) -> None:
    """Checks that need the model's shape (a `models.ModelInfo`); raise SpecError naming the field.

    The part of `check_spec` that needs the model: callers outside spec.py want `check_spec`.
    """
    multiple = info.vae_spatial * info.patch_size[1]
    for field in ("height", "width"):
        value = getattr(spec, field)
        if value % multiple:
            raise SpecError(field, f"must be a multiple of {multiple} for this model, got {value}")
    # The rotary embedding covers `rope_max_seq_len` tokens along each axis (diffusers' WanRotaryPosEmbed).
    p_t, p_h, p_w = info.patch_size
    rope = info.rope_max_seq_len
    axes = {
        "frames": (spec.latent_frames // p_t, (rope * p_t - 1) * info.vae_temporal + 1),
        "height": (spec.height // info.vae_spatial // p_h, rope * p_h * info.vae_spatial),
        "width": (spec.width // info.vae_spatial // p_w, rope * p_w * info.vae_spatial),
    }
    for field, (tokens, largest) in axes.items():
        if tokens > rope:
            value = getattr(spec, field)
            raise SpecError(
                field,
                f"{value} gives {tokens} tokens along this axis, beyond the {rope} this model's rotary "
                f"position embedding covers: at most {largest} for this model",
            )
    for field, layer in spec.layer_fields():
        if layer >= info.num_layers:
            raise SpecError(
                field, f"layer {layer} is beyond the model's {info.num_layers} layers (0..{info.num_layers - 1})"
            )
    if spec.guidance_2 is not None and info.boundary_ratio is None:
        raise SpecError("guidance_2", "this model has one expert; guidance_2 needs a two-expert model")
    for vi, variant in enumerate(spec.variants):
        for ii, iv in enumerate(variant.interventions):
            if isinstance(iv, Guidance) and iv.scale_2 is not None and info.boundary_ratio is None:
                raise SpecError(f"variants.{vi}.interventions.{ii}.scale_2", "needs a two-expert model")
    images = list(spec.images())
    if info.task == "i2v" and spec.image is None:
        raise SpecError("image", "this image-to-video model needs a first-frame image")
    if info.task != "i2v" and images:
        raise SpecError(images[0][0], "this model is text-to-video and takes no image")


@dataclass(frozen=True)
class CheckedSpec:
    """A spec that passed every check, against the model of `info`: what the probe engine runs.

    Making one runs `check_against_model`, so a CheckedSpec cannot hold a spec that was not checked;
    make it with `check_spec`.
    """

    spec: ExperimentSpec
    info: ModelInfo  # the model it was checked against; the engine refuses to run it on another

    def __post_init__(self) -> None:
        if not isinstance(self.spec, ExperimentSpec):
            raise TypeError(f"CheckedSpec: expected an ExperimentSpec, got {type(self.spec).__name__}")
        check_against_model(self.spec, self.info)


def check_spec(data: dict | ExperimentSpec, info: ModelInfo) -> CheckedSpec:
    """Parse `data` (a JSON object; or a spec already parsed, when the model had to be known first) and check it
    against the model of `info` (a `models.ModelInfo`); raise SpecError naming the first bad field."""
    spec = data if isinstance(data, ExperimentSpec) else parse_spec(data)
    return CheckedSpec(spec, info)
