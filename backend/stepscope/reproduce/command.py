"""`stepscope reproduce --model M --out DIR`: the paper's six analyses on held-out task instances, in one command.

Every run goes through the probe engine into DIR/runs/<run id>/ (the store `stepscope up --data-dir DIR`
serves), then DIR/findings.json (every number), DIR/findings.md (tables, figures, links to the runs) and
the SVG figures are written. docs/reproduce.md describes each analysis.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from stepscope.reproduce import analyses as an
from stepscope.reproduce.config import NOISE_UNITS, ReproduceConfig, make_config, trajectories_per_instance
from stepscope.reproduce.instances import held_out_instances, latent_frame_video_frames, swap_partners
from stepscope.reproduce.report import write_report
from stepscope.tasks.core import Canvas, TaskError, family_names
from stepscope.train.data import HELD_OUT_SEEDS

if TYPE_CHECKING:  # the model stack is imported when a reproduction runs, not with the command's options
    from stepscope.probe import EncoderCache

# Sized for one H100 and a ~5M-parameter 16-block model at 64×64×17, 20 steps (docs/reproduce.md): ≤ 15 min.
DEFAULT_N = 10
REDUCED_N = 1


def deviations(cfg: ReproduceConfig, info, ensemble_layers: list[int]) -> list[str]:
    """Every way this reproduction's setup differs from the paper's, in words."""
    bands = an.layer_bands(info.num_layers)
    frames = latent_frame_video_frames(cfg.noise_frame, info.vae_temporal)
    out = [
        f"Model: {info.num_layers} blocks ({', '.join(info.experts)}), not the paper's 40-block Wan2.2-I2V-A14B / "
        "VBVR-Wan2.2; the paper's layer numbers are mapped by share of depth.",
        f"Tasks: stepscope's synthetic families ({', '.join(cfg.families)}) scored by rule-based checkers "
        f"(docs/tasks.md), not VBVR-Bench; {cfg.size}×{cfg.size} px, {cfg.frames} frames, {cfg.steps} steps; "
        "success = the scorer passes the final video.",
        f"Layer bands are thirds of the depth ({', '.join(an.layer_span(bands[b]) for b in an.BANDS)}); the "
        "paper's bands (0–9, 10–29, 30–39 of 40) are a quarter, a half and a quarter.",
        f"Noise (analyses 1, 2): strength in units of the latent's std ({NOISE_UNITS}) at the step it enters; "
        f"strengths {', '.join(f'{s:g}' for s in cfg.strengths)} (analysis 1) and {cfg.sweep_strength:g} "
        f"(analysis 2) were chosen here, not taken from the paper. The middle step is step {cfg.noise_step}; the "
        f"frame is latent frame {cfg.noise_frame} (video frames {frames.start}–{frames.stop - 1}).",
        "Hidden-state CKA (analysis 2) is on the cond pass at the last step, against the baseline of the same run.",
        f"Layer swap (analysis 4): one layer per run, only the tokens of latent frames "
        f"{', '.join(map(str, cfg.swap_frames))} (not frame 0, which holds the given image), at every step, in both "
        "CFG passes; swapping all tokens would make every layer equivalent here (the prompt is shared within a "
        "family and the image enters through the input; docs/experiments.md). The source is another held-out "
        "instance with a different answer.",
        f"Seed ensemble (analysis 5): layers {an.layer_span(ensemble_layers)} (the third quarter of the depth, "
        f"depth/2 … 3·depth/4 − 1: the paper's 20–29 of 40 scaled), {cfg.ensemble_seeds} seeds, step 0, mode "
        "`updates`; the paper's +0.031 is on VBVR-Bench with its own models.",
        "Candidate curves (analysis 6) are measured on the linear x̂₀ preview of every step, not on full VAE decodes.",
        f"The sweep runs (analyses 1, 2, 4) store every {cfg.sweep_every}th step and the last, so the explorer shows "
        "those steps of their members; their comparisons and scores use the final step.",
    ]
    if len(info.experts) > 1:
        out.append(
            f"The model has {len(info.experts)} experts ({', '.join(info.experts)}): at each step the layer indices "
            "are those of the expert that ran (`experts` per step in findings.json, analysis 3), so a layer's "
            "numbers mix experts across the boundary."
        )
    if cfg.reduced:
        out.append(
            "REDUCED run (--reduced): one strength, two injection steps and two swap layers; a smoke test of the "
            "pipeline, not a measurement."
        )
    return out


def _device_name(model) -> str:
    import torch

    device = str(model.device)
    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return device


def run_reproduce(
    model,
    cfg: ReproduceConfig,
    out: str | Path,
    *,
    command: str = "",
    resume: bool = False,
    log=None,
    encoder_cache: EncoderCache | None = None,
) -> dict:
    """Run every analysis for `cfg` on a loaded model into `out`; returns what findings.json holds.

    With `resume`, runs already in `out/runs` whose spec is the one this config gives are read if they finished,
    else (left `failed` by Ctrl-C or `running` by a kill) deleted and run again, so an interrupted reproduction
    goes on where it stopped; an existing run with another spec is an error naming `out`.

    Every run shares `encoder_cache` (a `probe.EncoderCache` of the model's pipeline; by default one for this
    reproduction): an instance's four runs encode its prompt and first frame once."""
    from stepscope.probe import EncoderCache, run_experiment
    from stepscope.probe.interventions import default_ensemble_layers
    from stepscope.run import load_run
    from stepscope.spec import ExperimentSpec, check_spec
    from stepscope.store import Store

    started = time.perf_counter()
    encoder_cache = encoder_cache if encoder_cache is not None else EncoderCache(model.pipe)
    out = Path(out)
    store = Store(str(out / "runs"))
    canvas = cfg.canvas
    info = model.info
    plan = []
    for family in cfg.families:
        instances = held_out_instances(family, cfg.n, canvas)
        plan += list(zip(instances, swap_partners(instances, canvas), strict=True))
    taken = [an.run_id(i, kind) for i, _ in plan for kind in an.RUN_KINDS if store.exists(an.run_id(i, kind))]
    if taken and not resume:
        raise TaskError(
            "out", f"{out / 'runs'} already holds run {taken[0]} (of {len(taken)}): choose another --out, or --resume"
        )
    rows = []
    run_seconds: dict[str, float] = {kind: 0.0 for kind in an.RUN_KINDS}
    trajectories = reused = redone = 0
    for index, (instance, partner) in enumerate(plan):
        specs = an.run_specs(instance, partner, model.name, info.task, cfg)
        row = {
            "family": instance.family,
            "seed": instance.seed,
            "difficulty": instance.difficulty,
            "partner_seed": partner.seed,
            "runs": {},
            "seconds": {},
        }
        for kind in an.RUN_KINDS:
            checked = check_spec(specs[kind], info)
            name = an.run_id(instance, kind)
            t0 = time.perf_counter()
            run = None
            if name in taken:  # --resume: a finished run of this very spec is read, an unfinished one redone
                run_dir = store.open(name)
                stored = load_run(run_dir.path)
                if stored.manifest["spec"] != checked.spec.model_dump(mode="json"):
                    raise TaskError(
                        "out",
                        f"run {name} in {out / 'runs'} has another spec than these options: resume with the "
                        "options it was made with, or choose another --out",
                    )
                if stored.status == "finished":
                    run = stored
                    reused += 1
                else:
                    if log:
                        log(f"{name} is {stored.status}: running it again")
                    store.delete(name)
                    redone += 1
            if run is None:
                run_dir = store.create(name)
                run_experiment(model, checked, run_dir, encoder_cache=encoder_cache)
                run = load_run(run_dir.path)
            seconds = time.perf_counter() - t0
            trajectories += len(run.trajectories)
            row["runs"][kind] = run_dir.run_id
            row["seconds"][kind] = round(seconds, 3)
            run_seconds[kind] += seconds
            if kind == "noise":
                row["noise"] = an.measure_noise(run)
            elif kind == "steps":
                row["steps"] = an.measure_steps(run, info.num_layers)
            elif kind == "swap":
                row["swap"] = an.measure_swap(run, instance, partner)
            else:
                row["trajectory"] = an.measure_trajectory(run, instance, info)
        rows.append(row)
        if log:
            log(
                f"[{index + 1}/{len(plan)}] {instance.family} seed {instance.seed}: "
                f"baseline {'pass' if row['trajectory']['baseline']['passed'] else 'fail'}, "
                f"{sum(row['seconds'].values()):.1f} s"
            )
    families = cfg.families
    ensemble_layers = default_ensemble_layers(info.num_layers)
    guidance = cfg.guidance if cfg.guidance is not None else ExperimentSpec.model_fields["guidance"].default
    findings = {
        "format": "stepscope-findings/1",
        "command": command,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "device": _device_name(model),
        "model": {"name": model.name, "info": info.to_json(), "loaded": model.describe()},
        "config": cfg.to_json(),
        "guidance": guidance,
        "seeds": {
            "first": plan[0][0].seed if plan else None,
            "held_out_start": HELD_OUT_SEEDS.start,
            "held_out_stop": HELD_OUT_SEEDS.stop,
        },
        "ensemble_layers": ensemble_layers,
        "layer_bands": an.layer_bands(info.num_layers),
        "deviations": deviations(cfg, info, ensemble_layers),
        "analyses": {
            "noise": an.summarize_noise(rows, families),
            "injection_step": an.summarize_steps(rows, families),
            "layer_energy": an.summarize_energy(rows, families, info.num_layers),
            "layer_swap": an.summarize_swap(rows, families),
            "seed_ensemble": an.summarize_ensemble(rows, families),
            "candidates": an.summarize_candidates(rows, families),
        },
        "runs_total": len(rows) * len(an.RUN_KINDS),
        "trajectories_total": trajectories,
        "runs_reused": reused,
        "runs_redone": redone,
        "trajectory_equivalents_per_instance": trajectories_per_instance(cfg),
        "seconds_by_run_kind": {k: round(v, 2) for k, v in run_seconds.items()},
        "seconds": round(time.perf_counter() - started, 2),
        "instances": rows,
    }
    out.mkdir(parents=True, exist_ok=True)
    findings = _finite(findings)
    (out / "findings.json").write_text(json.dumps(findings, indent=1, allow_nan=False))
    write_report(findings, out)
    return findings


def _finite(value):
    """The same JSON value with NaN and ±inf (e.g. a CKA not compared) as null: findings.json is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The command's options on `p` (also used by `stepscope reproduce`)."""
    p.add_argument("--model", required=True, help="preset (e.g. mini-reasoner), local diffusers directory or hub id")
    p.add_argument("--out", required=True, help="output directory: findings.md, findings.json, figures, runs/")
    p.add_argument(
        "--n", type=int, help=f"held-out instances per family (default {DEFAULT_N}; {REDUCED_N} with --reduced)"
    )
    p.add_argument("--tasks", default=",".join(family_names()), help="comma-separated families")
    p.add_argument("--steps", type=int, help="denoising steps (default: the model preset's, else 20)")
    p.add_argument("--size", type=int, default=Canvas.size, help="canvas side in pixels (multiple of 16)")
    p.add_argument("--frames", type=int, default=Canvas.frames, help="video frames (4k+1)")
    p.add_argument("--guidance", type=float, help="CFG scale (default: the preset's, else the spec's)")
    p.add_argument(
        "--reduced", action="store_true", help="one strength, two injection steps, two swap layers: a smoke test"
    )
    p.add_argument(
        "--resume", action="store_true", help="go on in OUT: read its finished runs, run its unfinished ones again"
    )
    p.add_argument("--device", help="torch device (default: settings)")
    p.add_argument("--dtype", help="model dtype (default: the preset's)")
    return p


def _command_line(args: argparse.Namespace, n: int) -> str:
    parts = ["stepscope reproduce", f"--model {args.model}", f"--out {args.out}", f"--n {n}"]
    for flag in ("tasks", "steps", "size", "frames", "guidance", "device", "dtype"):
        value = getattr(args, flag)
        if value is not None:
            parts.append(f"--{flag} {value}")
    if args.reduced:
        parts.append("--reduced")
    return " ".join(parts)


def run_from_args(args: argparse.Namespace) -> int:
    """Run the reproduction from parsed options (see add_arguments); returns the exit status."""
    n = args.n if args.n is not None else (REDUCED_N if args.reduced else DEFAULT_N)
    try:
        families = [f.strip() for f in args.tasks.split(",") if f.strip()]
        known = family_names()
        for family in families:
            if family not in known:
                raise TaskError("tasks", f"unknown task family {family!r}; known: {', '.join(known)}")
        if not families:
            raise TaskError("tasks", "name at least one family")
        if n < 1:
            raise TaskError("n", f"must be at least 1, got {n}")
        Canvas(size=args.size, frames=args.frames)
        if args.steps is not None and args.steps < 2:
            raise TaskError("steps", f"must be at least 2, got {args.steps}")
    except TaskError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    from stepscope.config import get_settings
    from stepscope.models import ModelError, load_model
    from stepscope.models.presets import PRESETS
    from stepscope.spec import SpecError
    from stepscope.store import StoreError

    preset = PRESETS.get(args.model)
    defaults = preset.defaults if preset else {}
    steps = args.steps or defaults.get("steps") or 20
    guidance = args.guidance if args.guidance is not None else defaults.get("guidance")
    try:
        model = load_model(args.model, device=args.device or get_settings().device, dtype=args.dtype)
        cfg = make_config(
            families,
            n,
            steps,
            model.info.num_layers,
            size=args.size,
            frames=args.frames,
            guidance=guidance,
            reduced=args.reduced,
        )
        findings = run_reproduce(
            model,
            cfg,
            args.out,
            command=_command_line(args, n),
            resume=args.resume,
            log=lambda line: print(line, file=sys.stderr),
        )
    except (ModelError, SpecError, TaskError, StoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{findings['runs_total']} runs in {findings['seconds']:.0f} s; written to {args.out}/findings.md")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m stepscope.reproduce", description=__doc__.splitlines()[0])
    return run_from_args(add_arguments(parser).parse_args(argv))
