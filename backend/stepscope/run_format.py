"""The run directory's format: every path in it and the manifest's types, in one place.

    run_format.x0_path("baseline", 7)            → "trajectories/baseline/x0/step_007.npy"
    run_format.input_image_path("image")         → "inputs/first_frame.png"
    run_format.parse_manifest(json.load(f))      → Manifest (or RunFormatError for unknown formats)

The engine writes a run through these functions and `ManifestWriter`; the API, `stepscope.run`
and the exports read it through them. Adding an artifact means a path function here plus the
code that produces it. This module is a leaf (pydantic only), so every side can import it.
docs/run-format.md describes the format; docs/schema/manifest.schema.json is generated from
`Manifest` (`python -m stepscope.run_format` rewrites it; a test checks it is current).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

FORMAT_VERSION = 3
FORMAT = f"stepscope-run/{FORMAT_VERSION}"
# Versions this code reads. 1 differs only in naming swap-source images
# `inputs/<variant>-source-<i>.png` (recorded in `inputs`, so readers need no change); 1 and 2
# name the norm-map metric `layer_norm_cka_distance` (MetricsFile reads it as layer_norm_map_r2_distance).
READABLE_FORMATS = {"stepscope-run/1": 1, "stepscope-run/2": 2, FORMAT: FORMAT_VERSION}

MANIFEST = "manifest.json"
RUN_PREFIX = "run:"  # a spec image already stored in the run directory, e.g. run:inputs/first_frame.png
BASELINE = "baseline"

# A run's status (and a job's once it has a run directory): the one definition; events.py and jobs.py take theirs
# from here, frontend/contract/run_format.js is generated from it.
Status = Literal["running", "finished", "failed", "cancelled"]
RUN_STATUSES: tuple[str, ...] = get_args(Status)
FINAL_STATUSES = RUN_STATUSES[1:]  # a run (and a job's event stream) ends with one of these
TrajectoryKind = Literal["baseline", "variant", "swap_source", "sweep_member"]


class RunFormatError(ValueError):
    """A run directory this version of stepscope cannot read."""


# -- paths ----------------------------------------------------------------------------------
STEP_DIGITS = 3  # step_007
FRAME_DIGITS = 3  # frame_016.jpg
LAYER_NORMS = "layer_norms"  # the directory of a trajectory's layer norms, and the prefix of their artifact keys


def step_name(index: int) -> str:
    """Steps are zero-padded to STEP_DIGITS digits: step_007."""
    return f"step_{index:0{STEP_DIGITS}d}"


def trajectory_dir(name: str) -> str:
    return f"trajectories/{name}"


def swap_source_name(variant: str, intervention: int) -> str:
    """The trajectory name of run B of a layer swap."""
    return f"{variant}.source{intervention}"


def sweep_member_name(sweep: str, index: int) -> str:
    """The trajectory (and metrics) name of member `index` of a sweep: `<sweep>.003`."""
    return f"{sweep}.{index:03d}"


def input_image_path(field: str) -> str:
    """Where the image of a spec field is stored (`image`, `variants.0.interventions.1.source.image`)."""
    if field == "image":
        return "inputs/first_frame.png"
    return f"inputs/{field.replace('.', '_')}.png"


def run_ref(rel: str) -> str:
    """The spec value that points at an image already stored in the run."""
    return RUN_PREFIX + rel


def preview_path(trajectory: str, step: int) -> str:
    return f"{trajectory_dir(trajectory)}/preview/{step_name(step)}.png"


def x0_path(trajectory: str, step: int) -> str:
    return f"{trajectory_dir(trajectory)}/x0/{step_name(step)}.npy"


def x0_cond_path(trajectory: str, step: int) -> str:
    """x̂₀ of the conditional prediction alone (probes.cond_x0)."""
    return f"{trajectory_dir(trajectory)}/x0_cond/{step_name(step)}.npy"


def layer_norms_path(trajectory: str, pass_name: str, step: int) -> str:
    return f"{trajectory_dir(trajectory)}/{LAYER_NORMS}/{pass_name}/{step_name(step)}.npy"


def layer_norms_key(pass_name: str) -> str:
    """The key of a pass's layer norms in a step record's `artifacts`."""
    return f"{LAYER_NORMS}.{pass_name}"


def decode_dir(trajectory: str, step: int) -> str:
    """A full-quality decode of one step: frames, video and (when requested later) decode.json."""
    return f"{trajectory_dir(trajectory)}/decode/{step_name(step)}"


def decode_record_path(trajectory: str, step: int) -> str:
    return f"{decode_dir(trajectory, step)}/decode.json"


DECODE_RECORDS_GLOB = "trajectories/*/decode/*/decode.json"


def final_dir(trajectory: str) -> str:
    """The decoded output video's frames and MP4."""
    return f"{trajectory_dir(trajectory)}/final"


def final_latents_path(trajectory: str) -> str:
    return f"{final_dir(trajectory)}/latents.npy"


def frame_path(frames_dir: str, index: int) -> str:
    """One decoded video frame in a decode or final directory."""
    return f"{frames_dir}/frame_{index:0{FRAME_DIGITS}d}.jpg"


def video_path(frames_dir: str) -> str:
    return f"{frames_dir}/video.mp4"


def convergence_path(trajectory: str) -> str:
    return f"{trajectory_dir(trajectory)}/convergence.npy"


def metrics_path(variant: str) -> str:
    return f"metrics/{variant}.json"


def difference_path(variant: str) -> str:
    return f"metrics/{variant}/difference.npy"


# -- benchmarks (`stepscope bench` and bench jobs) --------------------------------------------
# A bench directory holds one run directory per task instance, plus the summary and its table.
BENCH_RESULT = "bench.json"  # the summary and every instance with its per-step curves (large: 1 GB at 2,000 runs)
BENCH_SUMMARY = "bench-summary.json"  # all of bench.json but the instances: bounded, replaced after each instance
BENCH_TABLE = "bench.md"


def bench_instance_dir(family: str, seed: int) -> str:
    """The run directory of one task instance inside a bench directory: `maze/seed000007`."""
    return f"{family}/seed{seed:06d}"


# -- the manifest ---------------------------------------------------------------------------
class _Record(BaseModel):
    # Keys written by a newer stepscope are kept, not refused: readers only need what they know.
    model_config = ConfigDict(extra="allow")


class Shapes(_Record):
    latent: list[int] = Field(description="(C, F_lat, H_lat, W_lat) of one member's latent")
    tokens: list[int] = Field(description="token grid (F', H', W') of the layer norms")
    video: list[int] = Field(description="(frames, height, width) of the output video")
    patch: list[int] = Field(description="the transformer's patch size (p_t, p_h, p_w)")


class ProbesRecord(_Record):
    captured_steps: list[int]
    layers: list[int] = Field(description="blocks on the layer axis of every layer_norms array")
    passes: list[str]
    decode_steps: list[int]
    x0_arrays: bool


class PreviewMap(_Record):
    """The fitted linear latent→RGB map of the previews: pixels = clip(W·x̂₀ + b, −1, 1)."""

    weight: list[list[float]]
    bias: list[float]
    fingerprint: str
    residual_rms: float | None = None


class StepTimings(_Record):
    step_seconds: float
    store_seconds: float
    forward_to_stored_seconds: float


class StepRecord(_Record):
    """One captured step: its timestep, σ, expert and stored artifacts."""

    index: int
    t: float
    sigma: float
    expert: str
    artifacts: dict[str, str] = Field(
        description="'preview', 'x0', 'x0_cond' and 'layer_norms.<pass>' → paths in the run directory"
    )
    timings: StepTimings


class DecodeEntry(_Record):
    """A full-quality VAE decode of one step (or of the final latents)."""

    step: int | Literal["final"]
    dir: str
    frames: int
    video: str
    dtype: str


class DecodeRecord(DecodeEntry):
    """decode.json beside the frames of a decode requested after the run."""

    trajectory: str
    seconds: float | None = None


class FinalOutput(_Record):
    latents: str
    video: str | None = None
    frames_dir: str | None = None


class Convergence(_Record):
    file: str
    steps: list[int]
    commitment_step: int | None
    threshold: float


class Percentiles(_Record):
    p50: float | None
    p95: float | None


class TrajectoryResult(_Record):
    """What a trajectory records once its loop is over."""

    timesteps: list[float]
    sigmas: list[float]
    experts: list[str]
    step_seconds: list[float]
    loop_seconds: float
    final: FinalOutput
    convergence: Convergence
    forward_to_event_seconds: Percentiles


class AppliedPerturbation(_Record):
    """A latent perturbation as realised: δ added to the latent entering `step` (docs/experiments.md)."""

    step: int
    kind: str = Field(description="noise_at_step or noise_at_frame")
    frames: list[int] | None = Field(description="latent frames that got noise; null for all")
    noise_l2: list[float] = Field(description="‖δ‖ per batch member")
    latent_l2: list[float] = Field(description="‖x‖ per batch member of the latent before δ")
    solver_state: Literal["model_input", "model_input+corrected_sample"] = Field(
        description="model_input: δ is the whole solver state's shift; +corrected_sample: UniPC's corrected "
        "sample was shifted by δ too"
    )


class TaskScore(_Record):
    """The task scorer's verdict on a trajectory's final video (runs whose spec names a `task`)."""

    score: float = Field(ge=0.0, le=1.0, description="the family's score in [0, 1]")
    passed: bool
    reason: str = Field(description="what decided the verdict, in words")


class CandidateRegionsRecord(_Record):
    """Where each candidate is read in the picture (`tasks.core.CandidateRegions`), in cells of the task's grid."""

    grid: int = Field(
        description="cells per side of the task's square picture; cell [r, c] is its fraction "
        "[c/grid, (c+1)/grid) × [r/grid, (r+1)/grid) of any picture of it"
    )
    cells: list[list[list[int]]] = Field(
        description="cells[j]: the [row, col] cells whose colour is candidate j's mass"
    )
    anchors: list[list[int]] = Field(description="anchors[j]: the cell that names candidate j (its end, its place)")
    area: list[list[int]] = Field(description="every cell the measure reads: nothing outside changes a mass")
    frames: list[int] = Field(description="the task's video frames the measure reads")
    measured_frames: list[int] | None = Field(
        None, description="the frames of the measured previews (latent frames) those video frames come from"
    )


class TaskCandidates(_Record):
    """Per captured step, the mass of every candidate answer in member 0's x̂₀ preview (`tasks.candidate_curves`)."""

    steps: list[int]
    labels: list[str] = Field(description="one label per candidate answer")
    answer: int = Field(description="index into labels of the right answer")
    masses: list[list[float]] = Field(description="masses[i][j]: candidate j's mass at steps[i]")
    live: list[int] = Field(description="live candidates at each step")
    winner: list[int | None] = Field(description="the strongest live candidate at each step, or null")
    chance: float | None = Field(
        None,
        description="the chance level of winner == answer at a step with a winner: 1 / the number of candidates "
        "(`tasks.curves.chance_level`; runs stored before it was kept have none)",
    )
    alive: list[list[bool]] | None = Field(
        None, description="alive[i][j]: candidate j is live at steps[i] (runs stored before it was kept have none)"
    )
    regions: CandidateRegionsRecord | None = Field(
        None, description="where each candidate is read in the picture (runs stored before it was kept have none)"
    )


class TrajectoryEntry(_Record):
    """One trajectory: the baseline, a variant or a swap source (run B of a layer swap)."""

    kind: TrajectoryKind
    status: Status
    seeds: list[int]
    guidance: float
    guidance_2: float | None
    prompt: str
    steps: list[StepRecord] = Field(default_factory=list, description="captured steps only")
    decodes: list[DecodeEntry] = Field(default_factory=list)
    # variants
    variant: str | None = None
    interventions: list[dict[str, Any]] | None = None
    returned_member: int | None = Field(None, description="a seed ensemble's member that continues (0)")
    perturbations: list[AppliedPerturbation] | None = Field(None, description="latent perturbations as realised")
    # sweep members
    sweep: str | None = None
    sweep_index: int | None = None
    resumed_from_step: int | None = Field(
        None, description="continued from the baseline's state entering this step; earlier steps are the baseline's"
    )
    # swap sources
    source_of: str | None = None
    intervention: int | None = None
    source: dict[str, Any] | None = None
    # once finished (TrajectoryResult's fields)
    timesteps: list[float] | None = Field(None, description="every step, captured or not")
    sigmas: list[float] | None = None
    experts: list[str] | None = None
    step_seconds: list[float] | None = None
    loop_seconds: float | None = None
    final: FinalOutput | None = None
    convergence: Convergence | None = None
    forward_to_event_seconds: Percentiles | None = None
    # runs with a task, once the run's decodes are stored (swap sources are not scored)
    task_score: TaskScore | None = Field(None, description="the task scorer's verdict on the final video")
    candidates: TaskCandidates | None = Field(None, description="candidate masses per captured step's preview")


class MetricSummary(_Record):
    file: str
    difference: str
    max_cka_x0_distance: float | None
    final_relative_l2: float


class LayerNormDistance(_Record):
    # `pass` is a Python keyword, hence the alias.
    pass_name: str = Field(alias="pass")
    layers: list[int]
    values: list[list[float]]


class HiddenStateDistance(_Record):
    """1 − linear CKA of hidden states (tokens × hidden dim), baseline vs variant, per layer and step."""

    pass_name: str = Field(alias="pass")
    layers: list[int]
    values: list[list[float | None]] = Field(description="(layers, steps); null where not compared")
    error_bound: list[list[float | None]] = Field(
        description="bound on |sketched − exact| per value; 0 where the state had ≤ sketch_rows tokens (exact)"
    )
    sketch_rows: int


class MetricsFile(_Record):
    """metrics/<variant>.json: a variant (or sweep member) compared with the baseline."""

    variant: str
    baseline: str
    steps: list[int]
    cka_x0_distance: list[float]
    difference: str
    difference_shape: list[int]
    final_relative_l2: float
    layer_norm_map_r2_distance: LayerNormDistance | None = Field(
        None, description="1 − r² of per-token norm maps per (layer, step); blind to direction"
    )
    hidden_state_cka_distance: HiddenStateDistance | None = None
    commitment_step: dict[str, int | None]

    @model_validator(mode="before")
    @classmethod
    def _old_names(cls, data: Any) -> Any:
        # Formats 1 and 2 stored the norm-map metric as layer_norm_cka_distance.
        if isinstance(data, dict) and "layer_norm_cka_distance" in data and "layer_norm_map_r2_distance" not in data:
            data = dict(data)
            data["layer_norm_map_r2_distance"] = data.pop("layer_norm_cka_distance")
        return data


class SweepCurve(_Record):
    """One value per sweep member, in the order of the sweep's values."""

    cka_x0_distance_final: list[float | None] = Field(description="1 − CKA of x̂₀ at the last captured step")
    hidden_state_cka_distance_final: list[list[float | None]] | None = Field(
        None, description="1 − CKA of hidden states at the last captured step, per member then per layer"
    )
    hidden_state_layers: list[int] | None = None
    final_relative_l2: list[float] = Field(description="‖x̂₀ − x̂₀_base‖/‖x̂₀_base‖ at the last captured step")
    score: list[float | None] = Field(
        description="task score per member (runs whose spec names a task); null otherwise"
    )


class SweepRecord(_Record):
    """A sweep: one intervention swept over one parameter, a trajectory per value."""

    intervention: dict[str, Any] = Field(description="the template intervention")
    over: str
    values: list[float]
    members: list[str] = Field(description="trajectory and metrics name of each member")
    start_steps: list[int] = Field(
        default_factory=list,
        description="step each member started at: 0 = run from scratch; k > 0 = continued from the baseline's "
        "stored solver state entering step k (its steps before k are the baseline's and were not run again)",
    )
    curve: SweepCurve | None = None


class Manifest(_Record):
    """manifest.json: what ran, with which model, and where every artifact is."""

    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    id: str
    status: Status
    created: str
    finished: str | None = None
    error: str | None = None
    traceback: str | None = None
    partial: bool | None = Field(None, description="the worker was lost; what it stored stays")
    spec: dict[str, Any] = Field(description="the ExperimentSpec (schema: GET /api/schema/spec)")
    model: dict[str, Any] = Field(description="the loaded model: pipeline, scheduler, device, dtype, ModelInfo")
    versions: dict[str, str]
    shapes: Shapes
    probes: ProbesRecord
    preview: PreviewMap
    inputs: dict[str, str] = Field(default_factory=dict, description="spec field → stored image")
    trajectories: dict[str, TrajectoryEntry] = Field(default_factory=dict)
    variants: list[str] = Field(default_factory=list)
    metrics: dict[str, MetricSummary] = Field(default_factory=dict)
    sweeps: dict[str, SweepRecord] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list, description="what the run does less than it appears to")
    timings: dict[str, float] = Field(default_factory=dict)

    @classmethod
    def start(cls, **fields: Any) -> Manifest:
        """A new run's manifest: status running, every collection present (and empty)."""
        empty = {
            "inputs": {},
            "trajectories": {},
            "variants": [],
            "metrics": {},
            "sweeps": {},
            "warnings": [],
            "timings": {},
        }
        base = {"format": FORMAT, "format_version": FORMAT_VERSION, "status": "running", "created": now()}
        return cls(**{**base, "finished": None, "error": None, **empty, **fields})

    def to_json(self) -> dict:
        """The JSON object stored as manifest.json (optional fields never set are left out)."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)

    def progress(self) -> tuple[int, int]:
        """(steps done, steps planned) over all trajectories, as the stored run shows them: a finished trajectory
        ran every step, another one up to its last captured step (the worker counts the same steps as it runs)."""
        steps = self.spec.get("steps")
        steps = steps if isinstance(steps, int) and steps > 0 else 0
        done = 0
        for entry in self.trajectories.values():
            if entry.status == "finished":
                done += steps
            elif entry.steps:
                done += min(steps, max(record.index for record in entry.steps) + 1)
        return done, steps * len(self.trajectories)


def manifest_json_schema() -> dict:
    """The JSON Schema of manifest.json."""
    schema = Manifest.model_json_schema(by_alias=True)
    schema["$id"] = "https://stepscope/schema/manifest.schema.json"
    return schema


SCHEMA_FILE = Path(__file__).resolve().parents[2] / "docs" / "schema" / "manifest.schema.json"


def format_version_of(data: dict) -> int:
    """The format version of a manifest's JSON, or RunFormatError naming what this code reads."""
    fmt = data.get("format") if isinstance(data, dict) else None
    if not isinstance(fmt, str) or fmt not in READABLE_FORMATS:
        readable = ", ".join(READABLE_FORMATS)
        raise RunFormatError(
            f"manifest.json: run format {str(fmt)[:80]!r} is not one this stepscope reads ({readable}); "
            "open it with the stepscope version that wrote it"
        )
    return READABLE_FORMATS[fmt]


def parse_manifest(data: dict) -> Manifest:
    """Validate a stored manifest (any readable format version) into a Manifest."""
    version = format_version_of(data)
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise RunFormatError(f"manifest.json: {where}: {err['msg']}") from None
    manifest.format_version = version
    return manifest


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


class ManifestWriter:
    """The manifest of a run being written: each change under a lock, then stored whole.

    Every change the engine makes to a manifest is one method here, so the manifest's shape
    is visible in one file; `write` stores the JSON (RunDir.write_manifest, atomic on local disks).
    """

    def __init__(self, manifest: Manifest, write: Callable[[dict], None]):
        self.manifest = manifest
        self._write = write
        self._lock = threading.Lock()
        self._store()

    def _store(self) -> None:
        self._write(self.manifest.to_json())

    def _change(self, change: Callable[[Manifest], None]) -> None:
        with self._lock:
            change(self.manifest)
            self._store()

    def trajectory(self, name: str) -> TrajectoryEntry:
        return self.manifest.trajectories[name]

    def set_input(self, field: str, rel: str) -> None:
        self._change(lambda m: m.inputs.__setitem__(field, rel))

    def start_trajectory(self, name: str, entry: TrajectoryEntry) -> None:
        self._change(lambda m: m.trajectories.__setitem__(name, entry))

    def add_step(self, trajectory: str, record: StepRecord) -> None:
        self._change(lambda m: m.trajectories[trajectory].steps.append(record))

    def add_decode(self, trajectory: str, entry: DecodeEntry) -> None:
        self._change(lambda m: m.trajectories[trajectory].decodes.append(entry))

    def finish_trajectory(self, name: str, result: TrajectoryResult) -> None:
        def finish(m: Manifest) -> None:
            entry = m.trajectories[name]
            entry.status = "finished"
            for key in TrajectoryResult.model_fields:
                setattr(entry, key, getattr(result, key))

        self._change(finish)

    def add_metric(self, variant: str, summary: MetricSummary) -> None:
        self._change(lambda m: m.metrics.__setitem__(variant, summary))

    def add_warnings(self, warnings: list[str]) -> None:
        self._change(lambda m: m.warnings.extend(warnings))

    def set_perturbations(self, trajectory: str, applied: list[dict]) -> None:
        records = [AppliedPerturbation(**a) for a in applied]
        self._change(lambda m: setattr(m.trajectories[trajectory], "perturbations", records))

    def start_sweep(self, name: str, record: SweepRecord) -> None:
        self._change(lambda m: m.sweeps.__setitem__(name, record))

    def set_sweep_curve(self, name: str, curve: SweepCurve) -> None:
        self._change(lambda m: setattr(m.sweeps[name], "curve", curve))

    def set_task_score(self, trajectory: str, score: TaskScore, candidates: TaskCandidates) -> None:
        def change(m: Manifest) -> None:
            m.trajectories[trajectory].task_score = score
            m.trajectories[trajectory].candidates = candidates

        self._change(change)

    def set_sweep_scores(self, name: str, scores: list[float | None]) -> None:
        self._change(lambda m: setattr(m.sweeps[name].curve, "score", scores))

    def finish(self, status: Status, error: str | None, total_seconds: float, traceback: str | None = None) -> None:
        """The run's end: its status, and that of every trajectory still running."""

        def finish(m: Manifest) -> None:
            m.status = status
            m.error = error
            m.finished = now()
            m.timings["total_seconds"] = round(total_seconds, 4)
            if traceback:
                m.traceback = traceback[-4000:]
            for entry in m.trajectories.values():
                if entry.status == "running":
                    entry.status = status

        self._change(finish)


def _failed_if_running(entry: Any) -> Any:
    return {**entry, "status": "failed"} if isinstance(entry, dict) and entry.get("status") == "running" else entry


def failed_manifest(manifest: Any, error: str, only_running: bool = False) -> dict | None:
    """A lost writer's manifest labelled failed and partial, every running trajectory failed; None when there is
    nothing of ours to label (not a JSON object, or, with `only_running`, a run that is not running). Works on the
    raw JSON object, so a manifest of another format version is labelled without being parsed or rewritten."""
    if not isinstance(manifest, dict) or (only_running and manifest.get("status") != "running"):
        return None
    labelled = {**manifest, "status": "failed", "error": error, "partial": True}
    trajectories = manifest.get("trajectories")
    if isinstance(trajectories, dict):
        labelled["trajectories"] = {name: _failed_if_running(entry) for name, entry in trajectories.items()}
    return labelled


# -- the frontend's copy ----------------------------------------------------------------------
JS_FILE = Path(__file__).resolve().parents[2] / "frontend" / "contract" / "run_format.js"


def run_format_js() -> str:
    """frontend/contract/run_format.js: the names, statuses and paths the explorer reads, as an ES module."""
    return "\n".join(
        [
            "// Generated from backend/stepscope/run_format.py by `python -m stepscope.run_format`: do not edit.",
            "// tests/unit/test_run_format.py fails when this file and run_format.py disagree.",
            "",
            f"export const FORMAT = {json.dumps(FORMAT)};",
            f"export const MANIFEST = {json.dumps(MANIFEST)};",
            f"export const BASELINE = {json.dumps(BASELINE)};",
            f"export const LAYER_NORMS = {json.dumps(LAYER_NORMS)};",
            "/** A run's statuses; it ends with one of FINAL_STATUSES. */",
            f"export const RUN_STATUSES = Object.freeze({json.dumps(list(RUN_STATUSES))});",
            f"export const FINAL_STATUSES = Object.freeze({json.dumps(list(FINAL_STATUSES))});",
            *(f"export const {s.upper()} = {json.dumps(s)};" for s in RUN_STATUSES),
            "",
            f"/** step_007: a step's name in paths ({STEP_DIGITS} digits). */",
            f'export const stepName = (index) => `step_${{String(index).padStart({STEP_DIGITS}, "0")}}`;',
            f"/** A decoded video frame of a decode or final dir: <dir>/frame_016.jpg ({FRAME_DIGITS} digits). */",
            "export const framePath = (framesDir, index) =>",
            f'  `${{framesDir}}/frame_${{String(index).padStart({FRAME_DIGITS}, "0")}}.jpg`;',
            "/** The key of a CFG pass's layer norms in a step record's `artifacts`: layer_norms.cond */",
            "export const layerNormsKey = (pass) => `${LAYER_NORMS}.${pass}`;",
            "/** Whether a run path is a layer-norm array (trajectories/<name>/layer_norms/<pass>/step_NNN.npy). */",
            "export const isLayerNormsPath = (path) => path.includes(`/${LAYER_NORMS}/`);",
            "",
        ]
    )


def write_schema(path: Path = SCHEMA_FILE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest_json_schema(), indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    write_schema()
    JS_FILE.write_text(run_format_js())
    print(SCHEMA_FILE)
    print(JS_FILE)
