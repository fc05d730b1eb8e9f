"""An experiment: the baseline trajectory, then each variant, then its comparison to the baseline.

    run_experiment(model, spec, run_dir)  →  manifest (also stored as manifest.json)

Everything lands in the run directory through the store; `emit` is told about each artifact
after it is stored (the worker turns these into Redis stream events, the CLI into a progress
bar). Variants share the baseline's seed and inputs unless an intervention says otherwise.
"""

from __future__ import annotations

import datetime as dt
import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

import stepscope
from stepscope.config import get_settings
from stepscope.images import decode_data_url, decode_image, encode_png, is_data_url
from stepscope.models.loading import LoadedModel
from stepscope.preview import linear_preview_for
from stepscope.probe import metrics
from stepscope.probe.interventions import (
    EnsembleAverager,
    HiddenStateBank,
    LatentPerturbations,
    SwapRecorder,
    SwapReplayer,
    default_ensemble_layers,
)
from stepscope.probe.recorder import BackgroundQueue, Decoder, RunManifest, TrajectoryRecorder
from stepscope.probe.trajectory import Cancelled, TrajectoryInputs, captured_steps, run_trajectory
from stepscope.run import trajectory_dir
from stepscope.spec import BASELINE, ExperimentSpec, Guidance, LayerSwap, NoiseAtFrame, NoiseAtStep, SeedEnsemble
from stepscope.store import RunDir

FORMAT = "stepscope-run/1"
RUN_PREFIX = "run:"  # an image already stored in the run directory, e.g. run:inputs/first_frame.png


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def versions() -> dict:
    import diffusers
    import torch

    return {"stepscope": stepscope.__version__, "diffusers": diffusers.__version__, "torch": torch.__version__}


def load_first_frame(ref: str, run: RunDir, field: str, allow_paths: bool) -> Image.Image:
    """Resolve a spec image: a data: URL, a file already in the run, or (CLI) a local path."""
    if is_data_url(ref):
        return decode_data_url(ref, field)
    if ref.startswith(RUN_PREFIX):
        return decode_image(run.read_bytes(ref[len(RUN_PREFIX) :]), field)
    if allow_paths:
        return decode_image(Path(ref).expanduser().read_bytes(), field)
    raise ValueError(f"{field}: expected a data: URL or an uploaded image")


class Experiment:
    """Runs one spec on a resident model into one run directory."""

    def __init__(
        self,
        model: LoadedModel,
        spec: ExperimentSpec,
        run: RunDir,
        *,
        emit: Callable[[dict], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        cache_dir: str | None = None,
        allow_paths: bool = False,
    ):
        self.model = model
        self.spec = spec
        self.run = run
        self.emit = emit or (lambda event: None)
        self.should_stop = should_stop
        self.allow_paths = allow_paths
        if cache_dir is None:
            cache_dir = get_settings().cache_dir
        self.preview = linear_preview_for(model.pipe.vae, cache_dir)
        info = model.info
        self.num_layers = info.num_layers
        self.layers = self._probe_layers()
        self.passes = ["cond", "uncond"] if spec.probes.passes == "both" else [spec.probes.passes]
        lat = (spec.latent_frames, spec.height // info.vae_spatial, spec.width // info.vae_spatial)
        p_t, p_h, p_w = info.patch_size
        self.latent_shape = (info.latent_channels, *lat)
        self.token_grid = (lat[0] // p_t, lat[1] // p_h, lat[2] // p_w)
        self.decode_steps = self._decode_steps()
        self.capture_at = sorted(set(captured_steps(spec.steps, spec.probes.every)) | self.decode_steps)
        self.total_steps = spec.steps * (1 + len(spec.variants) + self._swap_count())
        self.steps_before = 0  # steps of the trajectories already run, for progress
        self.writer = BackgroundQueue("stepscope-writer")
        self.decoder = Decoder(model.pipe.vae, run, self.emit, step_vae=model.step_vae)
        self.manifest = RunManifest(run, self._initial_manifest())
        self.baseline: TrajectoryRecorder | None = None

    # -- what to capture -------------------------------------------------------------------
    def _probe_layers(self) -> list[int]:
        layers = self.spec.probes.layers
        if layers == "all":
            return list(range(self.num_layers))
        if layers == "none":
            return []
        return list(layers)

    def _decode_steps(self) -> set[int]:
        probes = self.spec.probes
        steps = set(probes.decode_steps)
        if probes.decode_every:
            steps |= {i for i in range(self.spec.steps) if i % probes.decode_every == probes.decode_every - 1}
        return steps

    def _swap_count(self) -> int:
        return sum(isinstance(iv, LayerSwap) for v in self.spec.variants for iv in v.interventions)

    def _initial_manifest(self) -> dict:
        spec = self.spec
        return {
            "format": FORMAT,
            "id": self.run.run_id,
            "status": "running",
            "created": now(),
            "finished": None,
            "error": None,
            "spec": spec.model_dump(mode="json"),
            "model": self.model.describe(),
            "versions": versions(),
            "shapes": {
                "latent": list(self.latent_shape),
                "tokens": list(self.token_grid),
                "video": [spec.frames, spec.height, spec.width],
                "patch": list(self.model.info.patch_size),
            },
            "probes": {
                "captured_steps": self.capture_at,
                "layers": self.layers,
                "passes": self.passes,
                "decode_steps": sorted(self.decode_steps),
                "x0_arrays": spec.probes.x0_arrays,
            },
            "preview": self.preview.to_json(),
            "inputs": {},
            "trajectories": {},
            "variants": [v.name for v in spec.variants],
            "metrics": {},
            "timings": {},
        }

    def _progress(self) -> dict:
        return {"done": self.steps_before, "total": self.total_steps}

    # -- running ---------------------------------------------------------------------------
    def run_all(self) -> dict:
        started = time.perf_counter()
        status, error = "finished", None
        try:
            base_inputs = self._base_inputs()
            self.emit({"type": "experiment_started", "progress": self._progress(), "manifest": "manifest.json"})
            self.baseline = self._trajectory(BASELINE, "baseline", base_inputs, {})
            for index, variant in enumerate(self.spec.variants):
                self._variant(index, variant, base_inputs)
        except Cancelled as exc:
            status, error = "cancelled", str(exc)
        except BaseException as exc:
            status, error = "failed", f"{type(exc).__name__}: {exc}"
            self._finish(status, error, started, traceback.format_exc())
            raise
        self._finish(status, error, started)
        if status == "cancelled":
            raise Cancelled(error)
        return self.manifest.data

    def _finish(self, status: str, error: str | None, started: float, tb: str | None = None) -> None:
        try:
            self.writer.drain()
            self.decoder.queue.drain()
        except BaseException as exc:  # keep the first error; the artifacts stored so far stay
            if error is None:
                status, error = "failed", f"{type(exc).__name__}: {exc}"
        finally:
            self.writer.close()
            self.decoder.queue.close()

        def mark(m: dict) -> None:
            m["status"] = status
            m["error"] = error
            m["finished"] = now()
            m["timings"]["total_seconds"] = round(time.perf_counter() - started, 4)
            if tb:
                m["traceback"] = tb[-4000:]
            for traj in m["trajectories"].values():
                if traj["status"] == "running":
                    traj["status"] = status

        self.manifest.update(mark)

    def _base_inputs(self) -> TrajectoryInputs:
        spec = self.spec
        image = None
        if spec.image is not None:
            image = self._stored_image(spec.image, "image", "inputs/first_frame.png")
        elif self.model.info.task == "i2v":
            raise ValueError("image: this image-to-video model needs a first-frame image")
        return TrajectoryInputs(
            prompt=spec.prompt,
            negative_prompt=spec.negative_prompt,
            seeds=[spec.seed],
            steps=spec.steps,
            guidance=spec.guidance,
            guidance_2=spec.guidance_2,
            height=spec.height,
            width=spec.width,
            frames=spec.frames,
            image=image,
        )

    def _stored_image(self, ref: str, field: str, rel: str) -> Image.Image:
        image = load_first_frame(ref, self.run, field, self.allow_paths)
        if ref != RUN_PREFIX + rel:
            self.run.write_bytes(rel, encode_png(image))
        self.manifest.update(lambda m: m["inputs"].__setitem__(field, rel))
        return image

    def _variant(self, variant_index: int, variant, base: TrajectoryInputs) -> None:
        inputs = base
        latent_items: list[NoiseAtStep | NoiseAtFrame] = []
        rewrites = []
        banks: list[HiddenStateBank] = []
        try:
            for index, iv in enumerate(variant.interventions):
                if isinstance(iv, (NoiseAtStep, NoiseAtFrame)):
                    latent_items.append(iv)
                elif isinstance(iv, Guidance):
                    inputs = replace(inputs, guidance=iv.scale, guidance_2=iv.scale_2)
                elif isinstance(iv, SeedEnsemble):
                    inputs = replace(inputs, seeds=list(iv.seeds))
                    layers = list(iv.layers) if iv.layers is not None else default_ensemble_layers(self.num_layers)
                    rewrites.append((layers, EnsembleAverager(iv, layers)))
                elif isinstance(iv, LayerSwap):
                    bank = HiddenStateBank()
                    banks.append(bank)
                    field = f"variants.{variant_index}.interventions.{index}.source.image"
                    self._swap_source(variant.name, index, iv, base, bank, field)
                    tokens_per_frame = self.token_grid[1] * self.token_grid[2]
                    rewrites.append((list(iv.layers), SwapReplayer(iv, bank, tokens_per_frame)))
            meta = {
                "variant": variant.name,
                "interventions": [iv.model_dump(mode="json") for iv in variant.interventions],
            }
            if len(inputs.seeds) > 1:
                # The seed ensemble returns member 0 (its first seed); every member is stored.
                meta["returned_member"] = 0
            recorder = self._trajectory(
                variant.name, "variant", inputs, meta, LatentPerturbations(latent_items), rewrites
            )
        finally:
            for bank in banks:
                bank.close()
        self._compare(variant.name, recorder)

    def _swap_source(self, variant: str, index: int, swap: LayerSwap, base: TrajectoryInputs, bank, field: str):
        src = swap.source
        inputs = replace(
            base,
            prompt=base.prompt if src.prompt is None else src.prompt,
            negative_prompt=base.negative_prompt if src.negative_prompt is None else src.negative_prompt,
            seeds=base.seeds if src.seed is None else [src.seed],
        )
        if src.image is not None:
            inputs = replace(inputs, image=self._stored_image(src.image, field, f"inputs/{variant}-source-{index}.png"))
        name = f"{variant}.source{index}"
        meta = {"variant": variant, "source_of": variant, "intervention": index, "source": src.model_dump(mode="json")}
        self._trajectory(name, "swap_source", inputs, meta, rewrites=[(list(swap.layers), SwapRecorder(swap, bank))])

    def _trajectory(self, name, kind, inputs, meta, perturbations=None, rewrites=()) -> TrajectoryRecorder:
        entry = {
            "kind": kind,
            "status": "running",
            "seeds": inputs.seeds,
            "guidance": inputs.guidance,
            "guidance_2": inputs.guidance_2,
            "prompt": inputs.prompt,
            "steps": [],
            "decodes": [],
            **meta,
        }
        self.manifest.update(lambda m: m["trajectories"].__setitem__(name, entry))
        self.emit({"type": "trajectory_started", "trajectory": name, "kind": kind, "progress": self._progress()})
        recorder = TrajectoryRecorder(
            name=name,
            manifest=self.manifest,
            writer=self.writer,
            decoder=self.decoder,
            preview=self.preview,
            token_grid=self.token_grid,
            store_x0=self.spec.probes.x0_arrays,
            keep_x0=True,
            keep_norms=kind != "swap_source",
            decode_steps=self.decode_steps,
            deferred_decode_step=inputs.steps - 1 if (inputs.steps - 1) in self.decode_steps else None,
            emit=self.emit,
            progress=lambda index, before=self.steps_before: {"done": before + index + 1, "total": self.total_steps},
        )
        started = time.perf_counter()
        result = run_trajectory(
            self.model,
            inputs,
            capture=self.capture_at,
            layers=self.layers,
            passes=self.spec.probes.passes,
            perturbations=perturbations,
            rewrites=rewrites,
            sink=recorder,
            should_stop=self.should_stop,
        )
        self.steps_before += inputs.steps
        loop_seconds = time.perf_counter() - started
        base = trajectory_dir(name)
        final = {
            "latents": self.run.write_array(f"{base}/final/latents.npy", result.final_latents.float().cpu().numpy())
        }
        recorder.finish_decodes(result.final_latents, self.spec.probes.final_decode)
        if self.spec.probes.final_decode:
            final["video"] = f"{base}/final/video.mp4"
            final["frames_dir"] = f"{base}/final"
        self.writer.drain()
        steps = sorted(recorder.kept_x0)
        distances = metrics.convergence([recorder.kept_x0[s] for s in steps])
        conv_rel = self.run.write_array(f"{base}/convergence.npy", distances)
        commit = metrics.commitment_step(steps, distances)

        def done(m: dict) -> None:
            t = m["trajectories"][name]
            t.update(
                status="finished",
                timesteps=result.timesteps,
                sigmas=result.sigmas,
                experts=result.experts,
                step_seconds=[round(s, 6) for s in result.step_seconds],
                loop_seconds=round(loop_seconds, 4),
                final=final,
                convergence={
                    "file": conv_rel,
                    "steps": steps,
                    "commitment_step": commit,
                    "threshold": metrics.COMMIT_THRESHOLD,
                },
                forward_to_event_seconds={
                    "p50": _percentile(recorder.latencies, 50),
                    "p95": _percentile(recorder.latencies, 95),
                },
            )

        self.manifest.update(done)
        self.emit(
            {
                "type": "trajectory_finished",
                "trajectory": name,
                "kind": kind,
                "final": final,
                "commitment_step": commit,
                "convergence": conv_rel,
                "progress": self._progress(),
            }
        )
        return recorder

    def _compare(self, variant: str, recorder: TrajectoryRecorder) -> None:
        base = self.baseline
        steps = sorted(set(base.kept_x0) & set(recorder.kept_x0))
        b_x0 = [base.kept_x0[s] for s in steps]
        v_x0 = [recorder.kept_x0[s] for s in steps]
        diff = np.stack([metrics.difference_map(b, v) for b, v in zip(b_x0, v_x0, strict=True)]).astype(np.float16)
        diff_rel = self.run.write_array(f"metrics/{variant}/difference.npy", diff)
        result = {
            "variant": variant,
            "baseline": BASELINE,
            "steps": steps,
            "cka_x0_distance": metrics.cka_distance_per_step(b_x0, v_x0),
            "difference": diff_rel,
            "difference_shape": list(diff.shape),
            "final_relative_l2": float(np.linalg.norm(v_x0[-1] - b_x0[-1]) / (np.linalg.norm(b_x0[-1]) + 1e-12)),
        }
        norm_pass = self.passes[0]
        if (
            self.layers
            and all(norm_pass in base.kept_norms.get(s, {}) for s in steps)
            and all(norm_pass in recorder.kept_norms.get(s, {}) for s in steps)
        ):
            b_norms = np.stack([base.kept_norms[s][norm_pass] for s in steps])
            v_norms = np.stack([recorder.kept_norms[s][norm_pass] for s in steps])
            result["layer_norm_cka_distance"] = {
                "pass": norm_pass,
                "layers": self.layers,
                "values": metrics.norm_cka_distance(b_norms, v_norms).tolist(),
            }
        manifest = self.manifest.data["trajectories"]
        result["commitment_step"] = {
            BASELINE: manifest[BASELINE].get("convergence", {}).get("commitment_step"),
            variant: manifest[variant].get("convergence", {}).get("commitment_step"),
        }
        rel = self.run.write_json(f"metrics/{variant}.json", result)
        summary = {
            "file": rel,
            "difference": diff_rel,
            "max_cka_x0_distance": max(result["cka_x0_distance"]) if steps else None,
            "final_relative_l2": result["final_relative_l2"],
        }
        self.manifest.update(lambda m: m["metrics"].__setitem__(variant, summary))
        self.emit({"type": "metric", "variant": variant, **summary, "progress": self._progress()})


def _percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 6) if values else None


def run_experiment(model: LoadedModel, spec: ExperimentSpec, run: RunDir, **kwargs) -> dict:
    """Run `spec` on `model` into `run`; returns the final manifest (also stored)."""
    return Experiment(model, spec, run, **kwargs).run_all()
