"""An experiment: the baseline trajectory, then each variant, then its comparison to the baseline.

    run_experiment(model, check_spec(data, model.info), run_dir)  →  manifest (also stored as manifest.json)

Everything lands in the run directory through the store, at the paths `stepscope.run_format`
names; `emit` is told about each artifact after it is stored (the worker turns these into
Redis stream events, the CLI into a progress bar). Variants share the baseline's seed and
inputs unless an intervention says otherwise.

`Experiment.__call__` reads top to bottom: prepare the inputs, run the baseline, then for
each variant turn its interventions into a `TrajectoryPlan` (each applies its part through the
one protocol of `interventions.Intervention`: latent perturbations, block rewrites, changed
inputs), run it, and compare it with the baseline.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

import stepscope
from stepscope import events
from stepscope import run_format as rf
from stepscope.config import get_settings
from stepscope.images import decode_data_url, decode_image, encode_png, is_data_url
from stepscope.models.loading import LoadedModel
from stepscope.preview import linear_preview_for
from stepscope.probe import metrics
from stepscope.probe.encoder_cache import DEFAULT_CAPACITY, EncoderCache
from stepscope.probe.hooks import BlockRewrite, HookSet
from stepscope.probe.interventions import (
    HiddenStateBank,
    LatentPerturbations,
    PlanContext,
    SwapRecorder,
    TrajectoryChanges,
    intervention_for,
)
from stepscope.probe.recorder import BackgroundQueue, Decoder, RunOutputs, TrajectoryRecorder
from stepscope.probe.trajectory import Cancelled, SolverState, TrajectoryInputs, captured_steps, run_trajectory
from stepscope.run_format import BASELINE, RUN_PREFIX
from stepscope.spec import CheckedSpec, ExperimentSpec, LayerSwap, Sweep, Variant
from stepscope.store import RunDir


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


@dataclass
class TrajectoryPlan:
    """One trajectory to run: its inputs, what it records about itself, and its interventions."""

    name: str
    kind: rf.TrajectoryKind
    inputs: TrajectoryInputs
    meta: dict = field(default_factory=dict)  # TrajectoryEntry fields of variants and swap sources
    perturbations: LatentPerturbations | None = None
    rewrites: list[tuple[list[int], BlockRewrite]] = field(default_factory=list)
    hidden_states: metrics.HiddenStateCKA | None = None  # compares this run's hidden states with the baseline's
    keep_states: list[int] = field(default_factory=list)  # steps whose incoming solver state is kept (baseline)
    resume: SolverState | None = None  # start from this stored state instead of step 0


class Experiment:
    """Runs one checked spec (`spec.check_spec`) on a resident model into one run directory.

    `encoder_cache`: an EncoderCache of `model.pipe` to share with other experiments (a bench's instances); by
    default the experiment has its own, so each distinct prompt and image is encoded once in it.
    """

    def __init__(
        self,
        model: LoadedModel,
        checked: CheckedSpec,
        run: RunDir,
        *,
        emit: Callable[[dict], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        cache_dir: str | None = None,
        allow_paths: bool = False,
        encoder_cache: EncoderCache | None = None,
    ):
        spec = _checked_for(checked, model)
        if encoder_cache is not None and encoder_cache.pipe is not model.pipe:
            raise ValueError("encoder_cache: made for another pipeline than this model's")
        self.model = model
        # Each distinct prompt and first frame is encoded once (per experiment, or per bench if the caller shares one).
        # A lone trajectory reuses nothing: no cache there, so it pays no key (a real first frame's SHA-256: ~0.3 s).
        lone = not spec.variants and not spec.sweeps
        self.encoder_cache = (
            encoder_cache
            if encoder_cache is not None
            else EncoderCache(model.pipe, capacity=0 if lone else DEFAULT_CAPACITY)
        )
        self.spec = spec
        self.run = run
        self.emit = emit or (lambda event: None)
        self.should_stop = should_stop
        self.allow_paths = allow_paths
        info = model.info
        probes = spec.probes
        # What to capture: layers and passes of the norms, steps to keep and to decode.
        self.num_layers = info.num_layers
        self.layers = (
            {"all": list(range(info.num_layers)), "none": []}[probes.layers]
            if isinstance(probes.layers, str)
            else list(probes.layers)
        )
        self.passes = ["cond", "uncond"] if probes.passes == "both" else [probes.passes]
        decode_steps = set(probes.decode_steps)
        if probes.decode_every:
            decode_steps |= {i for i in range(spec.steps) if i % probes.decode_every == probes.decode_every - 1}
        self.capture_at = sorted(set(captured_steps(spec.steps, probes.every)) | decode_steps)
        lat = (spec.latent_frames, spec.height // info.vae_spatial, spec.width // info.vae_spatial)
        p_t, p_h, p_w = info.patch_size
        token_grid = (lat[0] // p_t, lat[1] // p_h, lat[2] // p_w)
        # Progress counts the steps of every trajectory: baseline, variants, sweep members and their source runs
        # (a layer swap's run B; a sweep's members share one).
        sources = sum(intervention_for(iv).source_runs() for v in spec.variants for iv in v.interventions)
        sources += sum(intervention_for(s.intervention).source_runs() for s in spec.sweeps)
        members = sum(len(s.values) for s in spec.sweeps)
        self.total_steps = spec.steps * (1 + len(spec.variants) + members + sources)
        self.steps_before = 0

        preview = linear_preview_for(model.pipe.vae, cache_dir or get_settings().cache_dir)
        manifest = rf.Manifest.start(
            id=run.run_id,
            spec=spec.model_dump(mode="json"),
            model=model.describe(),
            versions=versions(),
            shapes=rf.Shapes(
                latent=[info.latent_channels, *lat],
                tokens=list(token_grid),
                video=[spec.frames, spec.height, spec.width],
                patch=list(info.patch_size),
            ),
            probes=rf.ProbesRecord(
                captured_steps=self.capture_at,
                layers=self.layers,
                passes=self.passes,
                decode_steps=sorted(decode_steps),
                x0_arrays=probes.x0_arrays,
            ),
            preview=rf.PreviewMap(**preview.to_json()),
            variants=[v.name for v in spec.variants],
        )
        self.manifest = rf.ManifestWriter(manifest, run.write_manifest)
        self.out = RunOutputs(
            run=run,
            manifest=self.manifest,
            writer=BackgroundQueue("stepscope-writer"),
            decoder=Decoder(model.pipe.vae, run, self.emit, step_vae=model.step_vae),
            preview=preview,
            token_grid=token_grid,
            store_x0=probes.x0_arrays,
            decode_steps=decode_steps,
            emit=self.emit,
        )
        self.baseline: TrajectoryRecorder | None = None
        self.baseline_states: dict[int, SolverState] = {}  # for sweep members that start after step 0
        # The baseline's hidden-state sketches, for each variant's hidden-state CKA (none without layers or variants).
        compared = bool(spec.variants or spec.sweeps)
        self.sketcher = (
            metrics.HiddenStateSketcher(steps=set(self.capture_at), passes=self.passes[0])
            if self.layers and compared
            else None
        )
        warnings = [
            f"{v.name}: {w}" for v in spec.variants for iv in v.interventions for w in intervention_for(iv).warnings()
        ]
        if warnings:
            self.manifest.add_warnings(warnings)

    def _progress(self) -> dict:
        return {"done": self.steps_before, "total": self.total_steps}

    # -- the experiment, top to bottom -----------------------------------------------------
    def __call__(self) -> dict:
        started = time.perf_counter()
        try:
            base = self._base_inputs()
            self.emit(events.experiment_started_event(self._progress(), rf.MANIFEST))
            rewrites = [(self.layers, self.sketcher)] if self.sketcher is not None else []
            keep = sorted({k for sweep in self.spec.sweeps for k in map(first_step, sweep.members()) if k > 0})
            plan = TrajectoryPlan(BASELINE, "baseline", base, rewrites=rewrites, keep_states=keep)
            self.baseline = self._trajectory(plan)
            for index, variant in enumerate(self.spec.variants):
                with ExitStack() as banks:  # a layer swap's hidden states live until its variant ran
                    plan = self._variant_plan(index, variant, base, banks)
                    recorder = self._trajectory(plan)
                self._compare(variant.name, recorder, plan.hidden_states)
            for index, sweep in enumerate(self.spec.sweeps):
                self._sweep(index, sweep, base)
        except Cancelled as exc:
            self._finish("cancelled", str(exc), started)
            raise
        except BaseException as exc:
            self._finish("failed", f"{type(exc).__name__}: {exc}", started, traceback.format_exc())
            raise
        self._finish("finished", None, started)
        return self.manifest.manifest.to_json()

    def _base_inputs(self) -> TrajectoryInputs:
        spec = self.spec
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
            image=None if spec.image is None else self._input_image("image", spec.image),
        )

    def _input_image(self, field: str, ref: str) -> Image.Image:
        """Load a spec image and keep it in the run (once: the API may have stored it already)."""
        image = load_first_frame(ref, self.run, field, self.allow_paths)
        rel = rf.input_image_path(field)
        if ref != rf.run_ref(rel):
            self.run.write_bytes(rel, encode_png(image))
        self.manifest.set_input(field, rel)
        return image

    def _variant_plan(self, vi: int, variant: Variant, base: TrajectoryInputs, banks: ExitStack) -> TrajectoryPlan:
        """Turn a variant's interventions into one trajectory plan (running any swap sources first)."""

        def swap_bank(ii: int, iv: LayerSwap) -> HiddenStateBank:
            bank = HiddenStateBank()
            banks.callback(bank.close)
            self._trajectory(self._swap_source_plan(f"variants.{vi}", variant.name, ii, iv, base, bank))
            return bank

        meta = {"variant": variant.name}
        return self._plan(variant.name, "variant", list(variant.interventions), base, meta, swap_bank)

    def _plan(self, name, kind, interventions, base, meta, swap_bank) -> TrajectoryPlan:
        """One trajectory plan: each intervention, in order, applies its part to the baseline's call;
        `swap_bank(ii, swap)` runs run B of the layer swap at index ii and gives its states."""
        changes = TrajectoryChanges(inputs=base)
        tokens_per_frame = self.out.token_grid[1] * self.out.token_grid[2]
        for ii, iv in enumerate(interventions):
            context = PlanContext(base, self.num_layers, tokens_per_frame, partial(swap_bank, ii))
            intervention_for(iv).apply(changes, context)
        hidden_states = None
        if self.sketcher is not None:
            hidden_states = metrics.HiddenStateCKA(self.sketcher)
            changes.rewrites.append((self.layers, hidden_states))  # last: it sees the rewritten outputs
        meta = {**meta, "interventions": [iv.model_dump(mode="json") for iv in interventions]}
        if len(changes.inputs.seeds) > 1:
            meta["returned_member"] = 0  # the seed ensemble returns its first seed; every member is stored
        plan = TrajectoryPlan(name, kind, changes.inputs, meta, LatentPerturbations(changes.noise), changes.rewrites)
        plan.hidden_states = hidden_states
        return plan

    def _sweep(self, si: int, sweep: Sweep, base: TrajectoryInputs) -> None:
        """Run every member of a sweep, compare each with the baseline, store the curve.

        A member whose intervention first acts at step k > 0 continues from the baseline's stored
        state entering k (the steps before k would repeat the baseline's exactly); one that acts
        from step 0, or changes the batch (a seed ensemble), runs from scratch.
        """
        members = sweep.members()
        names = [rf.sweep_member_name(sweep.name, i) for i in range(len(members))]
        self.manifest.start_sweep(
            sweep.name,
            rf.SweepRecord(
                intervention=sweep.intervention.model_dump(mode="json"),
                over=sweep.over,
                values=[float(v) for v in sweep.values],
                members=names,
                start_steps=[first_step(iv) if first_step(iv) in self.baseline_states else 0 for iv in members],
            ),
        )
        with ExitStack() as banks:
            shared: dict[str, HiddenStateBank] = {}

            def swap_bank(ii: int, iv: LayerSwap) -> HiddenStateBank:
                # Run B does not depend on the swept value: one source run records what every member needs.
                if "bank" not in shared:
                    union = _swap_union(sweep.intervention, members)
                    shared["bank"] = bank = HiddenStateBank()
                    banks.callback(bank.close)
                    self._trajectory(self._swap_source_plan(f"sweeps.{si}", sweep.name, 0, union, base, bank))
                return shared["bank"]

            results = []
            for index, (name, iv) in enumerate(zip(names, members, strict=True)):
                meta = {"sweep": sweep.name, "sweep_index": index}
                plan = self._plan(name, "sweep_member", [iv], base, meta, swap_bank)
                plan.resume = self.baseline_states.get(first_step(iv))
                if plan.resume is not None:
                    plan.meta["resumed_from_step"] = plan.resume.step
                recorder = self._trajectory(plan)
                results.append(self._compare(name, recorder, plan.hidden_states))
        self.manifest.set_sweep_curve(sweep.name, sweep_curve(results))

    def _swap_source_plan(
        self, prefix: str, variant: str, ii: int, swap: LayerSwap, base: TrajectoryInputs, bank: HiddenStateBank
    ) -> TrajectoryPlan:
        """Run B of a layer swap: the baseline's inputs with the source's fields, recording into `bank`."""
        src = swap.source
        inputs = replace(
            base,
            prompt=base.prompt if src.prompt is None else src.prompt,
            negative_prompt=base.negative_prompt if src.negative_prompt is None else src.negative_prompt,
            seeds=base.seeds if src.seed is None else [src.seed],
        )
        if src.image is not None:
            inputs = replace(inputs, image=self._input_image(_source_image_field(prefix, ii), src.image))
        meta = {"variant": variant, "source_of": variant, "intervention": ii, "source": src.model_dump(mode="json")}
        name = rf.swap_source_name(variant, ii)
        return TrajectoryPlan(
            name, "swap_source", inputs, meta, rewrites=[(list(swap.layers), SwapRecorder(swap, bank))]
        )

    def _trajectory(self, plan: TrajectoryPlan) -> TrajectoryRecorder:
        """Run one planned trajectory through the pipeline, recording every captured step."""
        inputs = plan.inputs
        entry = rf.TrajectoryEntry(
            kind=plan.kind,
            status="running",
            seeds=inputs.seeds,
            guidance=inputs.guidance,
            guidance_2=inputs.guidance_2,
            prompt=inputs.prompt,
            steps=[],
            decodes=[],
            **plan.meta,
        )
        self.manifest.start_trajectory(plan.name, entry)
        self.emit(events.trajectory_started_event(plan.name, plan.kind, self._progress()))
        before = self.steps_before
        recorder = TrajectoryRecorder(
            self.out,
            plan.name,
            steps=inputs.steps,
            keep_norms=plan.kind != "swap_source",
            progress=lambda index: {"done": before + index + 1, "total": self.total_steps},
        )
        if plan.resume is not None:  # the steps before it are the baseline's: the comparison sees them too
            prefix = range(plan.resume.step)
            recorder.kept_x0.update({s: x for s, x in self.baseline.kept_x0.items() if s in prefix})
            recorder.kept_norms.update({s: n for s, n in self.baseline.kept_norms.items() if s in prefix})
        started = time.perf_counter()
        with self._encodes_wait_for_decodes(), self.encoder_cache.serving():  # the cache outside the lock
            result = run_trajectory(
                self.model,
                inputs,
                capture=self.capture_at,
                layers=self.layers,
                passes=self.spec.probes.passes,
                perturbations=plan.perturbations,
                rewrites=plan.rewrites,
                sink=recorder,
                should_stop=self.should_stop,
                cond_x0=self.spec.probes.cond_x0,
                keep_states=plan.keep_states,
                resume=plan.resume,
            )
        if plan.name == BASELINE:
            self.baseline_states = result.states
        if plan.perturbations:
            self.manifest.set_perturbations(plan.name, result.perturbations or [])
        summary = recorder.finish(result, time.perf_counter() - started, self.spec.probes.final_decode)
        self.steps_before += inputs.steps
        self.emit(
            events.trajectory_finished_event(
                plan.name,
                plan.kind,
                summary.final.model_dump(mode="json", exclude_unset=True),
                summary.convergence.commitment_step,
                summary.convergence.file,
                self._progress(),
            )
        )
        return recorder

    @contextmanager
    def _encodes_wait_for_decodes(self):
        """Let the pipeline's VAE encode (an image-to-video model's first frame) wait for a background decode of an
        earlier trajectory: both use one AutoencoderKLWan, whose causal frame cache lives on the module."""
        hooks = HookSet()
        vae, lock = self.model.pipe.vae, self.out.decoder.lock
        original = vae.encode

        def encode(*args, **kwargs):
            with lock:
                return original(*args, **kwargs)

        hooks.patch(vae, "encode", encode)
        try:
            yield
        finally:
            hooks.remove()

    def _compare(
        self, variant: str, recorder: TrajectoryRecorder, hidden_states: metrics.HiddenStateCKA | None
    ) -> rf.MetricsFile:
        """The variant against the baseline at their common captured steps, stored and announced."""
        base = self.baseline
        steps = sorted(set(base.kept_x0) & set(recorder.kept_x0))
        b_x0 = [base.kept_x0[s] for s in steps]
        v_x0 = [recorder.kept_x0[s] for s in steps]
        diff = np.stack([metrics.difference_map(b, v) for b, v in zip(b_x0, v_x0, strict=True)]).astype(np.float16)
        trajectories = self.manifest.manifest.trajectories
        result = rf.MetricsFile(
            variant=variant,
            baseline=BASELINE,
            steps=steps,
            cka_x0_distance=metrics.cka_distance_per_step(b_x0, v_x0),
            difference=self.run.write_array(rf.difference_path(variant), diff),
            difference_shape=list(diff.shape),
            final_relative_l2=float(np.linalg.norm(v_x0[-1] - b_x0[-1]) / (np.linalg.norm(b_x0[-1]) + 1e-12)),
            commitment_step={name: trajectories[name].convergence.commitment_step for name in (BASELINE, variant)},
        )
        norm_pass = self.passes[0]
        if self.layers and all(norm_pass in traj.kept_norms.get(s, {}) for traj in (base, recorder) for s in steps):
            b_norms = np.stack([base.kept_norms[s][norm_pass] for s in steps])
            v_norms = np.stack([recorder.kept_norms[s][norm_pass] for s in steps])
            result.layer_norm_map_r2_distance = rf.LayerNormDistance(
                **{"pass": norm_pass},
                layers=self.layers,
                values=metrics.norm_map_r2_distance(b_norms, v_norms).tolist(),
            )
        if hidden_states is not None and steps:
            distance, bound = hidden_states.table(self.layers, steps, norm_pass)
            result.hidden_state_cka_distance = rf.HiddenStateDistance(
                **{"pass": norm_pass},
                layers=self.layers,
                values=_nan_to_none(distance),
                error_bound=_nan_to_none(bound),
                sketch_rows=self.sketcher.rows,
            )
        summary = rf.MetricSummary(
            file=self.run.write_json(
                rf.metrics_path(variant), result.model_dump(mode="json", by_alias=True, exclude_unset=True)
            ),
            difference=result.difference,
            max_cka_x0_distance=max(result.cka_x0_distance) if steps else None,
            final_relative_l2=result.final_relative_l2,
        )
        self.manifest.add_metric(variant, summary)
        self.emit(events.metric_event(variant, summary.model_dump(mode="json"), self._progress()))
        return result

    def _finish(self, status: rf.Status, error: str | None, started: float, tb: str | None = None) -> None:
        try:
            self.out.drain()
            # Scored once every decode is stored: the scorer reads the final videos, off the denoising loop.
            if status == "finished" and self.spec.task is not None:
                self._score_task()
        except BaseException as exc:  # keep the first error; the artifacts stored so far stay
            if error is None:
                status, error = "failed", f"{type(exc).__name__}: {exc}"
                tb = traceback.format_exc()
        finally:
            self.out.close()
            if self.sketcher is not None:
                self.sketcher.close()
        self.manifest.finish(status, error, time.perf_counter() - started, tb)

    def _score_task(self) -> None:
        """Score every trajectory but swap sources with the spec's task: the final video's verdict, the candidate
        curve of member 0's preview at each captured step, and each sweep member's score on its sweep's curve."""
        from stepscope.run import Trajectory
        from stepscope.tasks import Canvas, candidate_curves, generate

        task, spec = self.spec.task, self.spec
        instance = generate(task.family, task.difficulty, task.seed, canvas=Canvas(size=spec.width, frames=spec.frames))
        manifest = self.manifest.manifest
        scores: dict[str, float] = {}
        for name, entry in list(manifest.trajectories.items()):
            if entry.kind == "swap_source" or entry.status != "finished":
                continue
            stored = Trajectory(self.run, name, entry, entry.model_dump(mode="json"), manifest.shapes)
            verdict = instance.score(stored.video)
            curves = candidate_curves(instance, [member[0] for member in stored.previews], stored.steps)
            self.manifest.set_task_score(
                name,
                rf.TaskScore(score=verdict.score, passed=verdict.passed, reason=verdict.reason),
                rf.TaskCandidates(**curves.to_json()),
            )
            scores[name] = verdict.score
        for sweep_name, sweep in manifest.sweeps.items():
            if sweep.curve is not None:
                self.manifest.set_sweep_scores(sweep_name, [scores.get(m) for m in sweep.members])


def first_step(iv) -> int:
    """The first step an intervention of the spec can change: a sweep member of it starts there from the baseline's
    stored state (0: from scratch)."""
    return intervention_for(iv).first_step()


def _source_image_field(prefix: str, ii: int) -> str:
    """The spec field of a swap source's image: variants.<v>.interventions.<i>.source.image or sweeps.<s>...."""
    if prefix.startswith("sweeps."):
        return f"{prefix}.intervention.source.image"
    return f"{prefix}.interventions.{ii}.source.image"


def _swap_union(template: LayerSwap, members: list[LayerSwap]) -> LayerSwap:
    """The layer swap whose source run records what every member of a sweep replays."""
    layers = sorted({layer for m in members for layer in m.layers})
    steps = None if any(m.steps is None for m in members) else sorted({s for m in members for s in m.steps})
    return template.model_copy(update={"layers": layers, "steps": steps})


def _nan_to_none(table: np.ndarray) -> list[list[float | None]]:
    return [[None if np.isnan(v) else float(v) for v in row] for row in table]


def sweep_curve(results: list[rf.MetricsFile]) -> rf.SweepCurve:
    """The summary curve of a sweep: each member's final comparison with the baseline, in member order."""
    hidden = [r.hidden_state_cka_distance for r in results]
    return rf.SweepCurve(
        cka_x0_distance_final=[r.cka_x0_distance[-1] if r.cka_x0_distance else None for r in results],
        hidden_state_cka_distance_final=(
            [[row[-1] for row in h.values] for h in hidden] if all(h is not None for h in hidden) else None
        ),
        hidden_state_layers=hidden[0].layers if hidden and hidden[0] is not None else None,
        final_relative_l2=[r.final_relative_l2 for r in results],
        score=[None] * len(results),
    )


def _checked_for(checked: CheckedSpec, model: LoadedModel) -> ExperimentSpec:
    """The spec of `checked`, which must have been checked against this model (`spec.check_spec`)."""
    if not isinstance(checked, CheckedSpec):
        raise TypeError(
            f"the probe engine runs a CheckedSpec, got {type(checked).__name__}: "
            "check it once with stepscope.spec.check_spec(data, model.info)"
        )
    if checked.info != model.info:
        raise ValueError("the spec was checked against another model than this one: check it with model.info")
    return checked.spec


def run_experiment(model: LoadedModel, checked: CheckedSpec, run: RunDir, **kwargs) -> dict:
    """Run the checked spec (`spec.check_spec(data, model.info)`) on `model` into `run`; returns the final manifest
    (also stored)."""
    return Experiment(model, checked, run, **kwargs)()
