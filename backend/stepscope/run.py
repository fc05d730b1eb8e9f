"""Read a run directory back into numpy: `stepscope.load_run(path)`.

run = stepscope.load_run("runs/demo")
run.baseline.x0                 # (S, B, C, F, H, W) x̂₀ of every captured step
run.baseline.layer_norms()      # (S, B, L, F', H', W') per-token L2 norms, cond pass
run.baseline.previews           # (S, B, F, h, w, 3) uint8 linear previews
run.metrics("noise10")          # dict with 1 − CKA per step, commitment steps, ...
"""

from __future__ import annotations

import io
from functools import cached_property

import numpy as np
from PIL import Image

from stepscope import run_format as rf
from stepscope.run_format import Manifest, TrajectoryEntry, decode_dir, parse_manifest
from stepscope.spec import SpecError
from stepscope.store import NotFound, RunDir

__all__ = [
    "Run",
    "Trajectory",
    "decode_dir",
    "existing_decode",
    "list_decodes",
    "load_run",
    "read_manifest",
    "x0_artifact",
]


def read_manifest(run: RunDir) -> Manifest:
    """The typed manifest of a run directory (RunFormatError for formats this code cannot read)."""
    return parse_manifest(run.manifest())


def x0_artifact(manifest: Manifest, trajectory: str, step: int) -> str:
    """The stored x̂₀ of a step, or a SpecError naming what is missing."""
    traj = manifest.trajectories.get(trajectory)
    if traj is None:
        names = ", ".join(manifest.trajectories)
        raise SpecError("trajectory", f"no trajectory {trajectory!r} in this run (has: {names})")
    for record in traj.steps:
        if record.index == step:
            if "x0" not in record.artifacts:
                raise SpecError("step", f"step {step} has no stored x̂₀ (the run had probes.x0_arrays off)")
            return record.artifacts["x0"]
    stored = [r.index for r in traj.steps]
    raise SpecError("step", f"step {step} of {trajectory} was not captured (captured: {stored})")


def existing_decode(run: RunDir, manifest: Manifest, trajectory: str, step: int) -> dict | None:
    """A decode of that step made during the run or by an earlier request, if any."""
    traj = manifest.trajectories.get(trajectory)
    for entry in traj.decodes if traj is not None else []:
        if entry.step == step:
            return entry.model_dump(mode="json")
    try:
        return _decode_record(run, rf.decode_record_path(trajectory, step))
    except NotFound:
        return None


def _decode_record(run: RunDir, rel: str) -> dict:
    """A decode.json as stored; NotFound if it is missing or not a decode record (an object naming its trajectory
    and its step), so one bad file cannot break the listing."""
    try:
        entry = run.read_json(rel)
    except (ValueError, RecursionError):  # not JSON, or not a regular file of the run
        raise NotFound(f"no decode record {rel}") from None
    step = entry.get("step") if isinstance(entry, dict) else None
    if not isinstance(entry, dict) or not isinstance(entry.get("trajectory"), str):
        raise NotFound(f"no decode record {rel}")
    if not (step == "final" or (isinstance(step, int) and not isinstance(step, bool))):
        raise NotFound(f"no decode record {rel}")
    return entry


def list_decodes(run: RunDir, manifest: Manifest) -> list[dict]:
    """Every full-quality decode of a run: those made during it (in the manifest) and those
    requested afterwards (a decode.json beside their frames)."""
    found = {}
    for name, traj in manifest.trajectories.items():
        for entry in traj.decodes:
            found[(name, str(entry.step))] = {"trajectory": name, **entry.model_dump(mode="json")}
    for rel in run.glob(rf.DECODE_RECORDS_GLOB):
        try:
            entry = _decode_record(run, rel)
        except NotFound:
            continue
        found.setdefault((entry["trajectory"], str(entry["step"])), entry)
    return sorted(found.values(), key=lambda d: (d["trajectory"], str(d["step"])))


class Trajectory:
    """One stored trajectory (baseline, variant or swap source); arrays load lazily.

    `record` is the typed `run_format.TrajectoryEntry`, `entry` the same as stored JSON.
    """

    def __init__(self, run: RunDir, name: str, record: TrajectoryEntry, entry: dict, shapes: rf.Shapes):
        self._run = run
        self.name = name
        self.record = record
        self.entry = entry
        self._shapes = shapes

    def __repr__(self) -> str:
        return f"Trajectory({self.name!r}, kind={self.kind!r}, steps={self.steps})"

    @property
    def kind(self) -> str:
        return self.record.kind

    @property
    def status(self) -> str:
        return self.record.status

    @property
    def steps(self) -> list[int]:
        """Indices of the stored (captured) steps, in order."""
        return [s.index for s in self.record.steps]

    @property
    def timesteps(self) -> np.ndarray:
        """The timestep of every step (captured or not, once the trajectory finished)."""
        values = self.record.timesteps
        return np.asarray(values if values is not None else [s.t for s in self.record.steps])

    @property
    def sigmas(self) -> np.ndarray:
        values = self.record.sigmas
        return np.asarray(values if values is not None else [s.sigma for s in self.record.steps])

    @property
    def experts(self) -> list[str]:
        values = self.record.experts
        return values if values is not None else [s.expert for s in self.record.steps]

    def _stack(self, key: str) -> np.ndarray:
        paths = [s.artifacts[key] for s in self.record.steps if key in s.artifacts]
        if not paths:
            raise KeyError(f"trajectory {self.name} stored no {key!r} arrays")
        return np.stack([self._run.read_array(p) for p in paths])

    @cached_property
    def x0(self) -> np.ndarray:
        return self._stack("x0")

    @cached_property
    def x0_cond(self) -> np.ndarray:
        """x̂₀ of the conditional prediction alone per captured step (runs with probes.cond_x0)."""
        return self._stack("x0_cond")

    def layer_norms(self, pass_name: str = "cond") -> np.ndarray:
        return self._stack(rf.layer_norms_key(pass_name))

    @cached_property
    def previews(self) -> np.ndarray:
        frames = self._shapes.latent[1]
        members = len(self.record.seeds)
        out = []
        for step in self.record.steps:
            strip = np.asarray(Image.open(io.BytesIO(self._run.read_bytes(step.artifacts["preview"]))))
            h, w = strip.shape[0] // members, strip.shape[1] // frames
            out.append(strip.reshape(members, h, frames, w, 3).transpose(0, 2, 1, 3, 4))
        return np.stack(out)

    def _finished(self) -> TrajectoryEntry:
        if self.record.final is None or self.record.convergence is None:
            raise KeyError(f"trajectory {self.name} is {self.status}: it has no final outputs")
        return self.record

    @cached_property
    def final_latents(self) -> np.ndarray:
        return self._run.read_array(self._finished().final.latents)

    @cached_property
    def convergence(self) -> np.ndarray:
        return self._run.read_array(self._finished().convergence.file)

    @property
    def commitment_step(self) -> int | None:
        return self.record.convergence.commitment_step if self.record.convergence is not None else None

    def _frames(self, rel_dir: str, count: int) -> np.ndarray:
        return np.stack(
            [np.asarray(Image.open(io.BytesIO(self._run.read_bytes(rf.frame_path(rel_dir, i))))) for i in range(count)]
        )

    def decoded(self, step: int | str) -> np.ndarray:
        """Full-quality decode of a step (if one was made): (T, H, W, 3) uint8."""
        for d in self.record.decodes:
            if d.step == step:
                return self._frames(d.dir, d.frames)
        raise KeyError(f"step {step} of {self.name} was not decoded; decoded: {[d.step for d in self.record.decodes]}")

    @cached_property
    def video(self) -> np.ndarray:
        """The decoded output video: (T, H, W, 3) uint8."""
        return self.decoded("final")


class Run:
    """A loaded run directory: `record` is the typed `run_format.Manifest`, `manifest` the stored JSON."""

    def __init__(self, run: RunDir):
        self.dir = run
        self.manifest = run.manifest()
        self.record = parse_manifest(self.manifest)
        self.trajectories = {
            name: Trajectory(run, name, entry, self.manifest["trajectories"][name], self.record.shapes)
            for name, entry in self.record.trajectories.items()
        }

    def __repr__(self) -> str:
        return f"Run({self.dir.path!r}, status={self.status!r}, trajectories={list(self.trajectories)})"

    @property
    def status(self) -> str:
        return self.record.status

    @property
    def baseline(self) -> Trajectory:
        return self.trajectories[rf.BASELINE]

    def __getitem__(self, name: str) -> Trajectory:
        return self.trajectories[name]

    @property
    def variants(self) -> list[str]:
        return list(self.record.variants)

    def metrics(self, variant: str) -> dict:
        """The comparison of a variant (or sweep member) with the baseline, its difference maps as an array.

        Runs of formats 1 and 2 are read with today's names (their `layer_norm_cka_distance` is
        `layer_norm_map_r2_distance`).
        """
        entry = self.record.metrics[variant]
        stored = rf.MetricsFile.model_validate(self.dir.read_json(entry.file))
        data = stored.model_dump(mode="json", by_alias=True, exclude_unset=True)
        data["difference"] = self.dir.read_array(entry.difference)
        return data

    @property
    def sweeps(self) -> list[str]:
        return list(self.record.sweeps)

    def sweep(self, name: str) -> dict:
        """A sweep's record: swept parameter, values, member names and the summary `curve` against the values."""
        if name not in self.record.sweeps:
            raise KeyError(f"no sweep {name!r} in this run; sweeps: {self.sweeps}")
        return self.record.sweeps[name].model_dump(mode="json")


def load_run(path: str) -> Run:
    """Open a run directory (local path or fsspec URL) for reading."""
    return Run(RunDir.at(path))
