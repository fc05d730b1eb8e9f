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

from stepscope.spec import SpecError
from stepscope.store import NotFound, RunDir


def step_name(index: int) -> str:
    return f"step_{index:03d}"


def trajectory_dir(name: str) -> str:
    return f"trajectories/{name}"


def decode_dir(trajectory: str, step: int) -> str:
    return f"{trajectory_dir(trajectory)}/decode/{step_name(step)}"


def x0_artifact(manifest: dict, trajectory: str, step: int) -> str:
    """The stored x̂₀ of a step, or a SpecError naming what is missing."""
    traj = manifest.get("trajectories", {}).get(trajectory)
    if traj is None:
        names = ", ".join(manifest.get("trajectories", {}))
        raise SpecError("trajectory", f"no trajectory {trajectory!r} in this run (has: {names})")
    for record in traj["steps"]:
        if record["index"] == step:
            if "x0" not in record["artifacts"]:
                raise SpecError("step", f"step {step} has no stored x̂₀ (the run had probes.x0_arrays off)")
            return record["artifacts"]["x0"]
    stored = [r["index"] for r in traj["steps"]]
    raise SpecError("step", f"step {step} of {trajectory} was not captured (captured: {stored})")


def existing_decode(run: RunDir, manifest: dict, trajectory: str, step: int) -> dict | None:
    """A decode of that step made during the run or by an earlier request, if any."""
    for entry in manifest.get("trajectories", {}).get(trajectory, {}).get("decodes", []):
        if entry["step"] == step:
            return entry
    try:
        return run.read_json(f"{decode_dir(trajectory, step)}/decode.json")
    except NotFound:
        return None


def list_decodes(run: RunDir, manifest: dict) -> list[dict]:
    """Every full-quality decode of a run: those made during it (in the manifest) and those
    requested afterwards (a decode.json beside their frames)."""
    found = {}
    for name, traj in manifest.get("trajectories", {}).items():
        for entry in traj.get("decodes", []):
            found[(name, str(entry["step"]))] = {"trajectory": name, **entry}
    for rel in run.glob("trajectories/*/decode/*/decode.json"):
        entry = run.read_json(rel)
        found.setdefault((entry["trajectory"], str(entry["step"])), entry)
    return sorted(found.values(), key=lambda d: (d["trajectory"], str(d["step"])))


class Trajectory:
    """One stored trajectory (baseline, variant or swap source); arrays load lazily."""

    def __init__(self, run: RunDir, name: str, entry: dict, shapes: dict):
        self._run = run
        self.name = name
        self.entry = entry
        self._shapes = shapes

    def __repr__(self) -> str:
        return f"Trajectory({self.name!r}, kind={self.kind!r}, steps={self.steps})"

    @property
    def kind(self) -> str:
        return self.entry["kind"]

    @property
    def status(self) -> str:
        return self.entry["status"]

    @property
    def steps(self) -> list[int]:
        """Indices of the stored (captured) steps, in order."""
        return [s["index"] for s in self.entry["steps"]]

    @property
    def timesteps(self) -> np.ndarray:
        return np.asarray(self.entry.get("timesteps", [s["t"] for s in self.entry["steps"]]))

    @property
    def sigmas(self) -> np.ndarray:
        return np.asarray(self.entry.get("sigmas", [s["sigma"] for s in self.entry["steps"]]))

    @property
    def experts(self) -> list[str]:
        return self.entry.get("experts", [s["expert"] for s in self.entry["steps"]])

    def _stack(self, key: str) -> np.ndarray:
        paths = [s["artifacts"][key] for s in self.entry["steps"] if key in s["artifacts"]]
        if not paths:
            raise KeyError(f"trajectory {self.name} stored no {key!r} arrays")
        return np.stack([self._run.read_array(p) for p in paths])

    @cached_property
    def x0(self) -> np.ndarray:
        return self._stack("x0")

    def layer_norms(self, pass_name: str = "cond") -> np.ndarray:
        return self._stack(f"layer_norms.{pass_name}")

    @cached_property
    def previews(self) -> np.ndarray:
        frames = self._shapes["latent"][1]
        members = len(self.entry["seeds"])
        out = []
        for step in self.entry["steps"]:
            strip = np.asarray(Image.open(io.BytesIO(self._run.read_bytes(step["artifacts"]["preview"]))))
            h, w = strip.shape[0] // members, strip.shape[1] // frames
            out.append(strip.reshape(members, h, frames, w, 3).transpose(0, 2, 1, 3, 4))
        return np.stack(out)

    @cached_property
    def final_latents(self) -> np.ndarray:
        return self._run.read_array(self.entry["final"]["latents"])

    @cached_property
    def convergence(self) -> np.ndarray:
        return self._run.read_array(self.entry["convergence"]["file"])

    @property
    def commitment_step(self) -> int | None:
        return self.entry.get("convergence", {}).get("commitment_step")

    def _frames(self, rel_dir: str, count: int) -> np.ndarray:
        return np.stack(
            [
                np.asarray(Image.open(io.BytesIO(self._run.read_bytes(f"{rel_dir}/frame_{i:03d}.jpg"))))
                for i in range(count)
            ]
        )

    def decoded(self, step: int) -> np.ndarray:
        """Full-quality decode of a step (if one was made): (T, H, W, 3) uint8."""
        for d in self.entry["decodes"]:
            if d["step"] == step:
                return self._frames(d["dir"], d["frames"])
        raise KeyError(
            f"step {step} of {self.name} was not decoded; decoded: {[d['step'] for d in self.entry['decodes']]}"
        )

    @cached_property
    def video(self) -> np.ndarray:
        """The decoded output video: (T, H, W, 3) uint8."""
        return self.decoded("final")


class Run:
    """A loaded run directory."""

    def __init__(self, run: RunDir):
        self.dir = run
        self.manifest = run.manifest()
        shapes = self.manifest["shapes"]
        self.trajectories = {
            name: Trajectory(run, name, entry, shapes) for name, entry in self.manifest["trajectories"].items()
        }

    def __repr__(self) -> str:
        return f"Run({self.dir.path!r}, status={self.status!r}, trajectories={list(self.trajectories)})"

    @property
    def status(self) -> str:
        return self.manifest["status"]

    @property
    def baseline(self) -> Trajectory:
        return self.trajectories["baseline"]

    def __getitem__(self, name: str) -> Trajectory:
        return self.trajectories[name]

    @property
    def variants(self) -> list[str]:
        return list(self.manifest.get("variants", []))

    def metrics(self, variant: str) -> dict:
        """The comparison of a variant with the baseline, with its difference maps as an array."""
        entry = self.manifest["metrics"][variant]
        data = self.dir.read_json(entry["file"])
        data["difference"] = self.dir.read_array(entry["difference"])
        return data


def load_run(path: str) -> Run:
    return Run(RunDir.at(path))
