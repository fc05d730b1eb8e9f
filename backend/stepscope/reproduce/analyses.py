"""The six analyses: the runs each needs (experiment specs) and what each reads back from the stored runs.

Per instance there are four runs, each a normal run directory:

* `noise`: baseline + sweep `noise_step` (noise in every frame of the latent entering the middle step,
  over strengths) + sweep `noise_frame` (noise in one latent frame at every step, over strengths) — analysis 1;
* `steps`: baseline + sweep `injection_step` (noise at one step, over the steps), layer norms on so the
  hidden-state CKA is measured — analysis 2;
* `swap`: baseline + sweep `swap_layer` (the tokens of the frames after the first replaced at one layer by
  those of a partner instance with another answer, at every step) — analysis 4;
* `trajectory`: baseline with every step and every layer recorded + variant `ensemble` — analyses 3, 5, 6.

`measure_*` read one stored run (through `stepscope.run.load_run`) into plain numbers; `summarize_*` pool
those numbers per family and over all families, with 95% intervals over instances (`stepscope.stats`): a success
rate (a share of 0/1 outcomes, `rate`) gets the Wilson score interval, any other mean (scores, 1 − CKA, energy
ratios, live candidates, paired differences; `average`) the percentile bootstrap.
"""

from __future__ import annotations

import base64

import numpy as np

from stepscope.reproduce.config import NOISE_UNITS, ReproduceConfig
from stepscope.reproduce.instances import foreground_pixels, token_foreground
from stepscope.stats import RESAMPLES, bootstrap_interval, mean_interval
from stepscope.tasks import TaskInstance
from stepscope.tasks.curves import CandidateCurves, chance_level

RUN_KINDS = ("noise", "steps", "swap", "trajectory")
ENSEMBLE = "ensemble"
SWEEP_NOISE_STEP, SWEEP_NOISE_FRAME, SWEEP_INJECTION, SWEEP_SWAP = (
    "noise_step",
    "noise_frame",
    "injection_step",
    "swap_layer",
)
BANDS = ("early", "middle", "late")
ALL = "all"  # the pooled row over every family


def image_data_url(instance: TaskInstance) -> str:
    """The instance's first frame as a PNG data: URL (a spec's `image`)."""
    from stepscope.images import encode_png

    return "data:image/png;base64," + base64.b64encode(encode_png(instance.first_frame_image())).decode("ascii")


def run_id(instance: TaskInstance, kind: str) -> str:
    """The run directory name (and the explorer's job id) of one instance's run of one kind."""
    return f"{instance.family}-{instance.seed}-{kind}"


def layer_span(layers: list[int]) -> str:
    """'8–11', '3' or 'none': a contiguous range of layers in words."""
    if not layers:
        return "none"
    return str(layers[0]) if layers[0] == layers[-1] else f"{layers[0]}–{layers[-1]}"


def layer_bands(num_layers: int) -> dict[str, list[int]]:
    """Early, middle and late thirds of the depth (np.array_split: the first thirds take the remainder)."""
    return {name: part.tolist() for name, part in zip(BANDS, np.array_split(np.arange(num_layers), 3), strict=True)}


# -- the runs -------------------------------------------------------------------------------
def base_spec(instance: TaskInstance, model_name: str, model_task: str, cfg: ReproduceConfig, probes: dict) -> dict:
    """One instance as an experiment: its prompt, first frame (image-to-video), canvas, seed and `task`."""
    spec = {
        "model": model_name,
        "prompt": instance.prompt,
        "seed": instance.seed,
        "steps": cfg.steps,
        "height": instance.canvas.size,
        "width": instance.canvas.size,
        "frames": instance.canvas.frames,
        "probes": probes,
        "task": {"family": instance.family, "difficulty": instance.difficulty, "seed": instance.seed},
    }
    if cfg.guidance is not None:
        spec["guidance"] = cfg.guidance
    if model_task == "i2v":
        spec["image"] = image_data_url(instance)
    return spec


def run_specs(
    instance: TaskInstance, partner: TaskInstance, model_name: str, model_task: str, cfg: ReproduceConfig
) -> dict[str, dict]:
    """The four experiment specs (JSON) of one instance, by run kind."""
    seed = instance.seed  # the noise's own seed too: each instance gets other noise
    sweep_probes = {"every": cfg.sweep_every, "layers": "none"}

    def noise(kind: str, strength: float, **where) -> dict:
        return {"kind": kind, "strength": strength, "units": NOISE_UNITS, "seed": seed, **where}

    noise_spec = base_spec(instance, model_name, model_task, cfg, sweep_probes)
    noise_spec["sweeps"] = [
        {
            "name": SWEEP_NOISE_STEP,
            "intervention": noise("noise_at_step", cfg.strengths[0], steps=[cfg.noise_step]),
            "over": "strength",
            "values": list(cfg.strengths),
        },
        {
            "name": SWEEP_NOISE_FRAME,
            "intervention": noise("noise_at_frame", cfg.strengths[0], frames=[cfg.noise_frame], frame_units="latent"),
            "over": "strength",
            "values": list(cfg.strengths),
        },
    ]
    # Layer norms on: the hidden-state CKA needs the recorded layers.
    steps_spec = base_spec(instance, model_name, model_task, cfg, {**sweep_probes, "layers": "all"})
    steps_spec["sweeps"] = [
        {
            "name": SWEEP_INJECTION,
            "intervention": noise("noise_at_step", cfg.sweep_strength, steps=[0]),
            "over": "steps",
            "values": list(cfg.injection_steps),
        }
    ]
    source = {"prompt": partner.prompt, "seed": partner.seed}
    if model_task == "i2v":
        source["image"] = image_data_url(partner)
    swap_spec = base_spec(instance, model_name, model_task, cfg, sweep_probes)
    swap_spec["sweeps"] = [
        {
            "name": SWEEP_SWAP,
            "intervention": {
                "kind": "layer_swap",
                "layers": [cfg.swap_layers[0]],
                "frames": list(cfg.swap_frames),
                "frame_units": "latent",
                "passes": "both",
                "source": source,
            },
            "over": "layers",
            "values": list(cfg.swap_layers),
        }
    ]
    trajectory_spec = base_spec(instance, model_name, model_task, cfg, {"every": 1, "layers": "all"})
    trajectory_spec["variants"] = [
        {
            "name": ENSEMBLE,
            # Member 0 is the baseline's own seed, so the ensemble is compared with the same sample.
            "interventions": [
                {"kind": "seed_ensemble", "seeds": [seed + i for i in range(cfg.ensemble_seeds)], "steps": [0]}
            ],
        }
    ]
    return {"noise": noise_spec, "steps": steps_spec, "swap": swap_spec, "trajectory": trajectory_spec}


# -- reading one stored run -----------------------------------------------------------------
def _verdict(run, name: str) -> dict:
    score = run.trajectories[name].record.task_score
    if score is None:
        raise ValueError(f"run {run.dir.run_id}: trajectory {name} has no task score")
    return {"passed": bool(score.passed), "score": float(score.score)}


def measure_noise(run) -> dict:
    """Analysis 1 for one instance: the baseline's verdict and each strength's, per sweep."""
    out = {"baseline": _verdict(run, "baseline")}
    for sweep in (SWEEP_NOISE_STEP, SWEEP_NOISE_FRAME):
        record = run.sweep(sweep)
        out[sweep] = {
            "values": record["values"],
            "members": record["members"],
            "verdicts": [_verdict(run, m) for m in record["members"]],
        }
    return out


def _none_to_nan(values) -> list[float]:
    return [float("nan") if v is None else float(v) for v in values]


def measure_steps(run, num_layers: int) -> dict:
    """Analysis 2 for one instance: per injection step, final 1 − CKA of x̂₀ and of hidden states, and the verdict."""
    record = run.sweep(SWEEP_INJECTION)
    curve = record["curve"]
    hidden = curve.get("hidden_state_cka_distance_final")
    layers = curve.get("hidden_state_layers") or []
    bands = layer_bands(num_layers)
    hidden_rows = [_none_to_nan(row) for row in hidden] if hidden is not None else None
    band_means = {}
    if hidden_rows is not None:
        for band, band_layers in bands.items():
            idx = [layers.index(layer) for layer in band_layers if layer in layers]
            band_means[band] = [float(np.nanmean([row[i] for i in idx])) if idx else None for row in hidden_rows]
    return {
        "baseline": _verdict(run, "baseline"),
        "steps": [int(v) for v in record["values"]],
        "members": record["members"],
        "start_steps": record.get("start_steps"),
        "cka_x0_distance_final": _none_to_nan(curve["cka_x0_distance_final"]),
        "hidden_state_layers": layers,
        "hidden_state_cka_distance_final": hidden_rows,
        "hidden_state_cka_distance_final_mean": (
            [float(np.nanmean(row)) for row in hidden_rows] if hidden_rows is not None else None
        ),
        "hidden_state_cka_distance_final_band": band_means,
        "final_relative_l2": [float(v) for v in curve["final_relative_l2"]],
        "verdicts": [_verdict(run, m) for m in record["members"]],
    }


def _with_first_frame(video: np.ndarray, instance: TaskInstance) -> np.ndarray:
    """The video with frame 0 replaced by the instance's given first frame (resized to the video's size)."""
    from stepscope.tasks.core import conform

    video = conform(video, instance.canvas).copy()
    video[0] = instance.first_frame
    return video


def follows(video: np.ndarray, target: TaskInstance, source: TaskInstance) -> dict:
    """Which instance an output video answers: each instance's scorer on the video with that instance's own
    first frame (the given image is not the model's answer), and the winning candidate of each."""
    out = {}
    for role, instance in (("target", target), ("source", source)):
        framed = _with_first_frame(video, instance)
        verdict = instance.score(framed)
        measure = instance.measure_candidates(framed)
        out[role] = {
            "passed": bool(verdict.passed),
            "score": float(verdict.score),
            "answer_wins": measure.winner == instance.answer,
            # what a winner picked at random among the candidates would score: [a winner exists] / K
            "answer_wins_chance": (measure.winner is not None) * chance_level(len(instance.candidates)),
        }
    return out


def measure_swap(run, target: TaskInstance, source: TaskInstance) -> dict:
    """Analysis 4 for one instance: for each swapped layer, whether the output follows the source or the target."""
    record = run.sweep(SWEEP_SWAP)
    sources = [t for t in run.trajectories.values() if t.kind == "swap_source"]
    return {
        "source_seed": source.seed,
        "layers": [int(v) for v in record["values"]],
        "members": record["members"],
        "baseline": follows(run.baseline.video, target, source),
        "source_run": follows(sources[0].video, target, source) if sources else None,
        "outputs": [follows(run.trajectories[m].video, target, source) for m in record["members"]],
    }


def energy_ratio(norms: np.ndarray, foreground: np.ndarray) -> np.ndarray:
    """(steps, layers) mean ‖h‖² over foreground tokens ÷ mean ‖h‖² over background tokens.

    `norms` is (steps, layers, F', H', W') of per-token L2 norms, `foreground` (F', H', W') bool.
    """
    energy = np.asarray(norms, dtype=np.float64) ** 2
    fg = energy[..., foreground].mean(axis=-1)
    bg = energy[..., ~foreground].mean(axis=-1)
    return fg / bg


def measure_trajectory(run, instance: TaskInstance, info) -> dict:
    """Analyses 3, 5 and 6 for one instance: foreground/background energy, the ensemble's verdict, candidate curves."""
    shapes = run.record.shapes
    pixels = foreground_pixels(instance)
    mask = token_foreground(pixels, tuple(shapes.tokens), tuple(shapes.patch), info.vae_spatial, info.vae_temporal)
    out: dict = {"baseline": _verdict(run, "baseline"), "ensemble": _verdict(run, ENSEMBLE)}
    out["ensemble_seeds"] = run.trajectories[ENSEMBLE].record.seeds
    out["foreground_tokens"] = int(mask.sum())
    out["tokens"] = int(mask.size)
    out["norm_layers"] = list(run.record.probes.layers)
    out["norm_steps"] = run.baseline.steps
    out["experts"] = list(run.baseline.experts)  # which expert ran each step (two-expert models)
    if 0 < mask.sum() < mask.size:
        norms = run.baseline.layer_norms("cond")[:, 0]  # member 0: (steps, layers, F', H', W')
        out["energy_ratio"] = energy_ratio(norms, mask).tolist()
    else:  # no foreground (or no background) token: the ratio is undefined
        out["energy_ratio"] = None
    candidates = run.baseline.record.candidates
    if candidates is not None:
        curve = CandidateCurves.from_record(candidates)
        out["candidates"] = {
            "steps": curve.steps,
            "live": curve.live,
            "answer_wins": [w == curve.answer for w in curve.winner],
            "has_winner": [w is not None for w in curve.winner],
            "explored_then_committed": curve.explored_then_committed(),
            "final_winner_is_answer": curve.final_winner == curve.answer,
            "final_winner_live": curve.final_winner is not None,
            "candidate_count": len(curve.labels),
        }
    return out


# -- pooling over instances -----------------------------------------------------------------
WILSON, BOOTSTRAP = "wilson", "bootstrap"  # the `method` of an interval record


def _finite_values(values) -> list[float]:
    return [float(v) for v in values if v is not None and not np.isnan(v)]


def rate(values: list[float]) -> dict:
    """A success rate of 0/1 outcomes: mean, 95% Wilson score interval and n; NaN values are left out (n counts
    the rest). Wilson, not the bootstrap: a 0/n or n/n rate keeps a nonzero width."""
    clean = _finite_values(values)
    if any(v not in (0.0, 1.0) for v in clean):
        raise ValueError(f"rate: outcomes must be 0 or 1, got {sorted(set(clean))[:5]}")
    if not clean:
        return {"mean": None, "interval": None, "n": 0, "method": WILSON}
    return {"mean": float(np.mean(clean)), "interval": mean_interval(clean), "n": len(clean), "method": WILSON}


def average(values: list[float]) -> dict:
    """The mean of any values (scores, distances, ratios, counts, paired differences): mean, its 95% percentile
    bootstrap interval (RESAMPLES resamples, seed 0) and n; NaN values are left out (n counts the rest)."""
    clean = _finite_values(values)
    if not clean:
        return {"mean": None, "interval": None, "n": 0, "method": BOOTSTRAP}
    return {"mean": float(np.mean(clean)), "interval": bootstrap_interval(clean), "n": len(clean), "method": BOOTSTRAP}


INTERVALS = (
    f"95% over instances: success rates (success, follows source/target, answer wins, explored then committed, "
    f"winner shares) the Wilson score interval; every other mean (scores, 1 − CKA, relative L2, energy ratios, "
    f"live candidates, paired differences) the percentile bootstrap ({RESAMPLES:,} resamples, seed 0)"
)


def _groups(rows: list[dict], families: tuple[str, ...]) -> dict[str, list[dict]]:
    groups = {family: [r for r in rows if r["family"] == family] for family in families}
    groups[ALL] = rows
    return {k: v for k, v in groups.items() if v}


def summarize_noise(rows: list[dict], families: tuple[str, ...]) -> dict:
    """Success per family against strength (0 = the baseline) for noise at the step and in the frame."""
    out = {}
    for group, members in _groups(rows, families).items():
        entry = {"baseline": rate([float(r["noise"]["baseline"]["passed"]) for r in members])}
        for sweep in (SWEEP_NOISE_STEP, SWEEP_NOISE_FRAME):
            values = members[0]["noise"][sweep]["values"]
            entry[sweep] = {
                "strengths": values,
                "success": [
                    rate([float(r["noise"][sweep]["verdicts"][i]["passed"]) for r in members])
                    for i in range(len(values))
                ],
                "mean_score": [
                    average([r["noise"][sweep]["verdicts"][i]["score"] for r in members]) for i in range(len(values))
                ],
            }
        out[group] = entry
    return out


def summarize_steps(rows: list[dict], families: tuple[str, ...]) -> dict:
    """Per injection step: mean final 1 − CKA of x̂₀ and of hidden states (mean over layers, and per band), success."""
    out = {}
    for group, members in _groups(rows, families).items():
        first = members[0]["steps"]
        count = len(first["steps"])
        hidden = first["hidden_state_cka_distance_final_mean"] is not None

        def per_step(getter, summary=average, members=members, count=count):
            return [summary([getter(r["steps"], i) for r in members]) for i in range(count)]

        entry = {
            "steps": first["steps"],
            "baseline_success": rate([float(r["steps"]["baseline"]["passed"]) for r in members]),
            "success": per_step(lambda m, i: float(m["verdicts"][i]["passed"]), rate),
            "cka_x0_distance_final": per_step(lambda m, i: m["cka_x0_distance_final"][i]),
            "final_relative_l2": per_step(lambda m, i: m["final_relative_l2"][i]),
            "hidden_state_cka_distance_final": (
                per_step(lambda m, i: m["hidden_state_cka_distance_final_mean"][i]) if hidden else None
            ),
            "hidden_state_cka_distance_final_band": (
                {
                    band: per_step(lambda m, i, b=band: m["hidden_state_cka_distance_final_band"][b][i])
                    for band in first["hidden_state_cka_distance_final_band"]
                }
                if hidden
                else None
            ),
        }
        out[group] = entry
    return out


def summarize_energy(rows: list[dict], families: tuple[str, ...], num_layers: int) -> dict:
    """Foreground ÷ background energy per layer (mean over steps), per band and step, and per band overall."""
    out = {}
    bands = layer_bands(num_layers)
    for group, members in _groups(rows, families).items():
        ratios = [np.asarray(r["trajectory"]["energy_ratio"]) for r in members if r["trajectory"]["energy_ratio"]]
        if not ratios:
            out[group] = {"n": 0, "skipped": len(members)}
            continue
        stack = np.stack(ratios)  # (instances, steps, layers)
        steps = members[0]["trajectory"]["norm_steps"]
        layers = members[0]["trajectory"]["norm_layers"]
        band_idx = {b: [layers.index(x) for x in ls if x in layers] for b, ls in bands.items()}
        out[group] = {
            "n": len(ratios),
            "skipped": len(members) - len(ratios),
            "layers": layers,
            "steps": steps,
            "experts": members[0]["trajectory"]["experts"],
            "per_layer": [average(stack[:, :, j].mean(axis=1).tolist()) for j in range(stack.shape[2])],
            "per_band": {b: average(stack[:, :, idx].mean(axis=(1, 2)).tolist()) for b, idx in band_idx.items() if idx},
            "per_band_step": {
                b: [average(stack[:, s, idx].mean(axis=1).tolist()) for s in range(stack.shape[1])]
                for b, idx in band_idx.items()
                if idx
            },
            "foreground_token_share": average(
                [r["trajectory"]["foreground_tokens"] / r["trajectory"]["tokens"] for r in members]
            ),
        }
    return out


def summarize_swap(rows: list[dict], families: tuple[str, ...]) -> dict:
    """Per swapped layer: the share of outputs that pass the source's scorer, the target's, and whose winning
    candidate is the source's or the target's answer, beside the chance level of each (`curves.answer_win_shares`:
    the mean of [a winner exists] / the number of candidates)."""
    out = {}
    for group, members in _groups(rows, families).items():
        layers = members[0]["swap"]["layers"]

        def share(getter, i, members=members):
            return rate([float(getter(r["swap"]["outputs"][i])) for r in members])

        def chance(getter, i, members=members):
            # Older findings (before the chance was kept) leave it out.
            values = [getter(r["swap"]["outputs"][i]).get("answer_wins_chance") for r in members]
            return None if None in values else float(np.mean(values))

        def reference(key, members=members):
            items = [r["swap"][key] for r in members if r["swap"][key] is not None]
            return {
                "follows_source": rate([float(x["source"]["passed"]) for x in items]),
                "follows_target": rate([float(x["target"]["passed"]) for x in items]),
            }

        out[group] = {
            "layers": layers,
            "follows_source": [share(lambda o: o["source"]["passed"], i) for i in range(len(layers))],
            "follows_target": [share(lambda o: o["target"]["passed"], i) for i in range(len(layers))],
            "source_answer_wins": [share(lambda o: o["source"]["answer_wins"], i) for i in range(len(layers))],
            "target_answer_wins": [share(lambda o: o["target"]["answer_wins"], i) for i in range(len(layers))],
            "source_answer_wins_chance": [chance(lambda o: o["source"], i) for i in range(len(layers))],
            "target_answer_wins_chance": [chance(lambda o: o["target"], i) for i in range(len(layers))],
            "baseline": reference("baseline"),
            "source_run": reference("source_run"),
        }
    return out


def summarize_ensemble(rows: list[dict], families: tuple[str, ...]) -> dict:
    """Success of the seed ensemble and of the baseline on the same instances, and the paired difference."""
    out = {}
    for group, members in _groups(rows, families).items():
        base = [float(r["trajectory"]["baseline"]["passed"]) for r in members]
        ens = [float(r["trajectory"]["ensemble"]["passed"]) for r in members]
        base_score = [r["trajectory"]["baseline"]["score"] for r in members]
        ens_score = [r["trajectory"]["ensemble"]["score"] for r in members]
        out[group] = {
            "baseline": rate(base),
            "ensemble": rate(ens),
            "difference": average([e - b for e, b in zip(ens, base, strict=True)]),
            "baseline_mean_score": average(base_score),
            "ensemble_mean_score": average(ens_score),
            "score_difference": average([e - b for e, b in zip(ens_score, base_score, strict=True)]),
        }
    return out


def summarize_candidates(rows: list[dict], families: tuple[str, ...]) -> dict:
    """Mean live candidates and the share of answer wins per step beside its chance level; share explored then
    committed; the final winner's share among all runs and among runs with a live final winner, each beside its
    chance level (what a winner picked at random among the candidates would score: the mean of [a winner exists] /
    the number of candidates, and the mean of 1 / the number of candidates over the runs with a winner).

    `n` counts the runs with candidate curves (the whole-run shares are over them); `n_per_step` those whose
    steps are the first run's, which the per-step means are over."""
    out = {}
    for group, members in _groups(rows, families).items():
        curves = [r["trajectory"]["candidates"] for r in members if r["trajectory"].get("candidates")]
        if not curves:
            out[group] = {"n": 0, "n_per_step": 0}
            continue
        steps = curves[0]["steps"]
        same = [c for c in curves if c["steps"] == steps]
        # Older findings (before these keys) count every run as live and leave the chance levels out.
        live = [c for c in curves if c.get("final_winner_live", True)]
        counted = all(c.get("candidate_count") for c in curves)
        per_step = all("has_winner" in c for c in same) and counted
        out[group] = {
            "n": len(curves),
            "n_per_step": len(same),
            "steps": steps,
            "mean_live": [average([c["live"][i] for c in same]) for i in range(len(steps))],
            "answer_wins": [rate([float(c["answer_wins"][i]) for c in same]) for i in range(len(steps))],
            "answer_wins_chance": [
                float(np.mean([c["has_winner"][i] * chance_level(c["candidate_count"]) for c in same]))
                for i in range(len(steps))
            ]
            if per_step
            else None,
            "explored_then_committed": rate([float(c["explored_then_committed"]) for c in curves]),
            "final_winner_is_answer": rate([float(c["final_winner_is_answer"]) for c in curves]),
            "final_winner_live": rate([float(c.get("final_winner_live", True)) for c in curves]),
            "final_winner_is_answer_when_live": rate([float(c["final_winner_is_answer"]) for c in live]),
            "chance": float(
                np.mean([c.get("final_winner_live", True) * chance_level(c["candidate_count"]) for c in curves])
            )
            if counted
            else None,
            "chance_when_live": float(np.mean([chance_level(c["candidate_count"]) for c in live]))
            if counted and live
            else None,
        }
    return out
