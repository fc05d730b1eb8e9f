"""findings.md and the SVG figures, from the numbers in findings.json (nothing here measures anything)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, urlencode

from stepscope.reproduce.analyses import (
    ALL,
    BANDS,
    ENSEMBLE,
    INTERVALS,
    SWEEP_NOISE_FRAME,
    SWEEP_NOISE_STEP,
    layer_bands,
    layer_span,
)
from stepscope.reproduce.svg import COLOURS, Series, line_chart

FIGURES = {
    "noise": "fig1_noise_strength.svg",
    "steps_cka": "fig2_injection_step_cka.svg",
    "steps_success": "fig2_injection_step_success.svg",
    "energy_layers": "fig3_energy_per_layer.svg",
    "energy_steps": "fig3_energy_per_step.svg",
    "swap": "fig4_layer_swap.svg",
    "candidates": "fig6_live_candidates.svg",
    "answer_wins": "fig6_answer_wins.svg",
}

PAPER = {
    "noise": "Gaussian noise in all frames at one step collapses task scores (0.685 → below 0.3); noise in one "
    "frame across all steps barely hurts.",
    "steps": "Early-step perturbations propagate through the trajectory, late ones matter less; sensitivity "
    "peaks mid-trajectory.",
    "energy": "Early layers (0–9 of 40) carry global structure, middle layers (10–29) foreground entities and "
    "reasoning, late layers (30–39) consolidation.",
    "swap": "Swapping the hidden state of the middle layers (20–21 of 40) between two inputs flips the outcome.",
    "ensemble": "Averaging the hidden states of layers 20–29 (of 40) across 3 seeds at the first step: +0.031 "
    "overall on VBVR-Bench, more out of domain.",
    "candidates": "Decoding x̂₀ at every step shows several candidate paths early, then one.",
}


def explorer_url(run_id: str, tab: str = "trajectory", **position) -> str:
    """The explorer's address of a run (its job id is the run directory's name), relative to the server root."""
    query = urlencode({k: v for k, v in position.items() if v is not None})
    return f"/#/jobs/{quote(run_id)}/{tab}" + (f"?{query}" if query else "")


def fmt(r: dict | None, digits: int = 3) -> str:
    """'mean [low, high]' of a `rate` record, or '—' where nothing was measured."""
    if not r or r.get("mean") is None:
        return "—"
    lo, hi = r["interval"]
    return f"{r['mean']:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def _mean(r: dict | None) -> float | None:
    return None if not r else r.get("mean")


def _interval(r: dict | None) -> list[float] | None:
    return None if not r else r.get("interval")


def _series(label: str, x: list, rates: list[dict], dashed: bool = False, colour: str | None = None) -> Series:
    return Series(label, list(x), [_mean(r) for r in rates], [_interval(r) for r in rates], dashed, colour)


def _groups(summary: dict) -> list[str]:
    """Family rows first, then the pooled row."""
    return [g for g in summary if g != ALL] + ([ALL] if ALL in summary else [])


def figures(findings: dict) -> dict[str, str]:
    """Every figure's SVG text by file name."""
    a = findings["analyses"]
    colours = {g: COLOURS[i % len(COLOURS)] for i, g in enumerate(_groups(a["noise"]))}
    out = {}
    series = []
    for g, entry in a["noise"].items():
        for sweep, dashed in ((SWEEP_NOISE_STEP, False), (SWEEP_NOISE_FRAME, True)):
            x = [0.0, *entry[sweep]["strengths"]]
            rates = [entry["baseline"], *entry[sweep]["success"]]
            kind = "step" if sweep == SWEEP_NOISE_STEP else "frame"
            series.append(_series(f"{g}: {kind}", x, rates, dashed, colours[g]))
    out[FIGURES["noise"]] = line_chart(
        "1. Success vs noise strength (solid: middle step, dashed: one frame)",
        "strength (× latent std; 0 = baseline)",
        "success rate",
        series,
        y_range=(0, 1),
    )
    steps = a["injection_step"][ALL] if ALL in a["injection_step"] else next(iter(a["injection_step"].values()))
    cka = [_series("1 − CKA x̂₀", steps["steps"], steps["cka_x0_distance_final"])]
    if steps["hidden_state_cka_distance_final"] is not None:
        cka.append(_series("1 − CKA hidden (mean)", steps["steps"], steps["hidden_state_cka_distance_final"]))
        for band, rates in steps["hidden_state_cka_distance_final_band"].items():
            cka.append(_series(f"1 − CKA hidden ({band})", steps["steps"], rates, dashed=True))
    out[FIGURES["steps_cka"]] = line_chart(
        "2. Final dissimilarity vs injection step (all families)", "injection step", "final 1 − CKA", cka
    )
    out[FIGURES["steps_success"]] = line_chart(
        "2. Success vs injection step",
        "injection step",
        "success rate",
        [_series(g, e["steps"], e["success"], colour=colours.get(g)) for g, e in a["injection_step"].items()],
        y_range=(0, 1),
    )
    energy = a["layer_energy"]
    out[FIGURES["energy_layers"]] = line_chart(
        "3. Foreground ÷ background token energy per layer (mean over steps)",
        "layer",
        "energy ratio (1 = no preference)",
        [_series(g, e["layers"], e["per_layer"], colour=colours.get(g)) for g, e in energy.items() if e["n"]],
    )
    pooled = energy.get(ALL) or next(iter(energy.values()))
    out[FIGURES["energy_steps"]] = line_chart(
        "3. Foreground ÷ background energy per step, by layer band (all families)",
        "step",
        "energy ratio",
        [_series(b, pooled["steps"], r) for b, r in pooled.get("per_band_step", {}).items()],
    )
    swap = a["layer_swap"].get(ALL) or next(iter(a["layer_swap"].values()))
    out[FIGURES["swap"]] = line_chart(
        "4. Layer swap: outputs that pass each instance's scorer (all families)",
        "swapped layer",
        "share of runs",
        [
            _series("follows source", swap["layers"], swap["follows_source"]),
            _series("follows target", swap["layers"], swap["follows_target"]),
            _series("source answer wins", swap["layers"], swap["source_answer_wins"], dashed=True),
            _series("target answer wins", swap["layers"], swap["target_answer_wins"], dashed=True),
            *[
                Series(f"chance, {role} answer", list(swap["layers"]), chance, None, True, "#8c8c8c")
                for role in ("source", "target")
                if (chance := swap.get(f"{role}_answer_wins_chance")) is not None
            ],
        ],
        y_range=(0, 1),
    )
    out[FIGURES["candidates"]] = line_chart(
        "6. Live candidates per step (baseline, x̂₀ previews)",
        "step",
        "mean live candidates",
        [_series(g, e["steps"], e["mean_live"], colour=colours.get(g)) for g, e in a["candidates"].items() if e["n"]],
    )
    wins = []
    for g, e in a["candidates"].items():
        if not e["n"]:
            continue
        wins.append(_series(f"{g}: answer wins", e["steps"], e["answer_wins"], colour=colours.get(g)))
        if e.get("answer_wins_chance") is not None:
            wins.append(Series(f"{g}: chance", list(e["steps"]), e["answer_wins_chance"], None, True, colours.get(g)))
    out[FIGURES["answer_wins"]] = line_chart(
        "6. Winner is the answer per step (solid) beside chance (dashed)",
        "step",
        "share of runs",
        wins,
        y_range=(0, 1),
    )
    return out


def _first_run(findings: dict, kind: str, family: str | None = None) -> str:
    for row in findings["instances"]:
        if family is None or row["family"] == family:
            return row["runs"][kind]
    raise KeyError(kind)


def _links(findings: dict, kind: str, tab: str, **position) -> str:
    """'open: maze · pattern · …': the first instance's run of each family in the explorer."""
    parts = []
    for family in findings["config"]["families"]:
        run = _first_run(findings, kind, family)
        parts.append(f"[{family} `{run}`]({explorer_url(run, tab, **position)})")
    return "Open in the explorer (first instance of each family): " + " · ".join(parts)


def _argmax(rates: list[dict], labels: list) -> tuple | None:
    values = [(r["mean"], label) for r, label in zip(rates, labels, strict=True) if r and r.get("mean") is not None]
    return max(values, key=lambda v: v[0]) if values else None


def markdown(findings: dict) -> str:
    """findings.md: setup, deviations, then one section per analysis with its table, figure and runs."""
    cfg, a, model = findings["config"], findings["analyses"], findings["model"]
    info = model["info"]
    bands = layer_bands(info["num_layers"])
    lines = [
        f"# Findings: the paper's analyses on `{model['name']}`",
        "",
        "Written by `stepscope reproduce`; every number is in `findings.json` beside this file. Do not edit by hand: "
        "rerun the command.",
        "",
        f"- command: `{findings['command']}`",
        f"- device: {findings['device']}; created {findings['created']}; wall time {findings['seconds']:.0f} s "
        f"({findings['runs_total']} runs, {findings['trajectories_total']} trajectories)",
        f"- runs: `runs/` here, one run directory per instance and analysis; serve them with "
        f"`stepscope up --data-dir <this directory> --model {model['name']}` and follow the links below "
        "(addresses relative to the server).",
        "",
        "## Setup",
        "",
        "| | |",
        "|---|---|",
        f"| model | `{model['name']}`: {info['num_layers']} blocks, {info['task']}, "
        f"experts {', '.join(info['experts'])} |",
        f"| tasks | {', '.join(cfg['families'])}; n = {cfg['n']} held-out instances per family (seeds "
        f"{findings['seeds']['first']}…, difficulty 1, 2, 3 in turn) |",
        f"| canvas | {cfg['size']}×{cfg['size']} px, {cfg['frames']} frames; {cfg['steps']} steps; guidance "
        f"{findings['guidance']} |",
        "| noise seed | the instance's seed (each instance its own noise) |",
        f"| intervals | {INTERVALS}; n in every table |",
        f"| layer bands | thirds of the depth: early {layer_span(bands['early'])}, "
        f"middle {layer_span(bands['middle'])}, late {layer_span(bands['late'])} |",
        "",
        "## Deviations from the paper's setup",
        "",
        *[f"- {d}" for d in findings["deviations"]],
        "",
    ]
    lines += _section_noise(findings, a["noise"], cfg)
    lines += _section_steps(findings, a["injection_step"], cfg)
    lines += _section_energy(findings, a["layer_energy"], bands)
    lines += _section_swap(findings, a["layer_swap"], bands)
    lines += _section_ensemble(findings, a["seed_ensemble"])
    lines += _section_candidates(findings, a["candidates"])
    lines += _section_runs(findings)
    return "\n".join(lines) + "\n"


def _band_of(layer: int, bands: dict[str, list[int]]) -> str:
    return next((b for b, ls in bands.items() if layer in ls), "")


def _section_noise(findings: dict, summary: dict, cfg: dict) -> list[str]:
    lines = [
        "## 1. Noise at a step vs noise in a frame",
        "",
        f"Paper: {PAPER['noise']}",
        "",
        f"Here: Gaussian noise of std strength × the latent's std added to every frame of the latent entering step "
        f"{cfg['noise_step']} (`noise_step`), or to latent frame {cfg['noise_frame']} at every step "
        f"(`noise_frame`); success = the family's scorer passes the final video. Strength 0 is the baseline.",
        "",
        _links(findings, "noise", "sweeps"),
        "",
        f"![success vs strength]({FIGURES['noise']})",
        "",
        "| family | n | strength | success, noise at step | success, noise in frame |",
        "|---|---|---|---|---|",
    ]
    for g in _groups(summary):
        e = summary[g]
        n = e["baseline"]["n"]
        lines.append(f"| {g} | {n} | 0 (baseline) | {fmt(e['baseline'])} | {fmt(e['baseline'])} |")
        for i, s in enumerate(e[SWEEP_NOISE_STEP]["strengths"]):
            lines.append(
                f"| {g} | {n} | {s:g} | {fmt(e[SWEEP_NOISE_STEP]['success'][i])} | "
                f"{fmt(e[SWEEP_NOISE_FRAME]['success'][i])} |"
            )
    return [*lines, ""]


def _section_steps(findings: dict, summary: dict, cfg: dict) -> list[str]:
    pooled = summary.get(ALL) or next(iter(summary.values()))
    hidden = pooled["hidden_state_cka_distance_final"]
    lines = [
        "## 2. Sensitivity against the injection step",
        "",
        f"Paper: {PAPER['steps']}",
        "",
        f"Here: a sweep of noise (strength {cfg['sweep_strength']:g} × latent std, every frame) over the step it "
        "enters; per member the final 1 − linear CKA of x̂₀ against the baseline (positions × channels), the final "
        "1 − CKA of the hidden states (tokens × width, cond pass, mean over layers and per band) and the success rate.",
        "",
        _links(findings, "steps", "sweeps"),
        "",
        f"![dissimilarity vs step]({FIGURES['steps_cka']})",
        "",
        f"![success vs step]({FIGURES['steps_success']})",
        "",
        f"All families (n = {pooled['success'][0]['n']} per step; baseline success {fmt(pooled['baseline_success'])}):",
        "",
        "| injection step | final 1 − CKA x̂₀ | final 1 − CKA hidden | success |",
        "|---|---|---|---|",
    ]
    for i, step in enumerate(pooled["steps"]):
        h = fmt(hidden[i]) if hidden else "—"
        lines.append(f"| {step} | {fmt(pooled['cka_x0_distance_final'][i])} | {h} | {fmt(pooled['success'][i])} |")
    peak = _argmax(pooled["cka_x0_distance_final"], pooled["steps"])
    if peak:
        lines += ["", f"Largest mean final 1 − CKA of x̂₀: {peak[0]:.3f} at injection step {peak[1]}."]
    if hidden:
        peak_h = _argmax(hidden, pooled["steps"])
        if peak_h:
            lines.append(f"Largest mean final 1 − CKA of hidden states: {peak_h[0]:.3f} at injection step {peak_h[1]}.")
    families = [g for g in _groups(summary) if g != ALL]
    if families:
        lines += ["", "Success per family:", "", "| injection step | " + " | ".join(families) + " |"]
        lines.append("|---|" + "---|" * len(families))
        for i, step in enumerate(pooled["steps"]):
            lines.append(f"| {step} | " + " | ".join(fmt(summary[g]["success"][i]) for g in families) + " |")
    return [*lines, ""]


def _section_energy(findings: dict, summary: dict, bands: dict) -> list[str]:
    lines = [
        "## 3. Layer roles: token-norm energy on the foreground",
        "",
        f"Paper: {PAPER['energy']}",
        "",
        "Here: per layer and step of the baseline (cond pass), the mean ‖h‖² of the foreground tokens ÷ that of the "
        "background tokens (1 = no preference). Foreground tokens: those covering any pixel that the ground-truth "
        "video paints with the task's objects (maze: agent, trail, goal; trajectory: the ball; pattern: the shape) "
        "in any video frame the token's latent frame holds (8 px a latent pixel, the patch's pixels a token). "
        "Per instance the ratio is averaged over steps (and the band's layers); the interval is over instances.",
        "",
        _links(findings, "trajectory", "layers"),
        "",
        f"![energy per layer]({FIGURES['energy_layers']})",
        "",
        f"![energy per step]({FIGURES['energy_steps']})",
        "",
        "| family | n | foreground token share | early | middle | late |",
        "|---|---|---|---|---|---|",
    ]
    for g in _groups(summary):
        e = summary[g]
        if not e["n"]:
            lines.append(f"| {g} | 0 | — | — | — | — |")
            continue
        row = " | ".join(fmt(e["per_band"].get(b)) for b in BANDS)
        lines.append(f"| {g} | {e['n']} | {fmt(e['foreground_token_share'])} | {row} |")
    pooled = summary.get(ALL)
    experts = (pooled or {}).get("experts") or []
    if len(set(experts)) > 1:
        runs = []
        for step, expert in zip(pooled["steps"], experts, strict=True):
            if runs and runs[-1][2] == expert:
                runs[-1][1] = step
            else:
                runs.append([step, step, expert])
        spans = "; ".join(f"steps {a}–{b}: `{e}`" for a, b, e in runs)
        lines += ["", f"Experts by step ({spans}): a layer index names a block of the expert that ran."]
    if pooled and pooled["n"]:
        top = _argmax([pooled["per_band"].get(b) for b in BANDS], list(BANDS))
        if top:
            lines += [
                "",
                f"Band with the largest foreground ÷ background ratio (all families): {top[1]} ({top[0]:.3f}).",
            ]
        lines += ["", "Per layer (all families, mean over steps):", "", "| layer | band | ratio |", "|---|---|---|"]
        for layer, r in zip(pooled["layers"], pooled["per_layer"], strict=True):
            lines.append(f"| {layer} | {_band_of(layer, bands)} | {fmt(r)} |")
    skipped = sum(summary[g].get("skipped", 0) for g in summary if g != ALL)
    if skipped:
        lines += ["", f"{skipped} instance(s) left out: no foreground or no background token."]
    return [*lines, ""]


def _chance(values: list[float] | float | None, i: int | None = None) -> str:
    """A chance level as the tables print it ('—' where older findings have none)."""
    value = values[i] if isinstance(values, list) and i is not None else values
    return "—" if value is None else f"{value:.3f}"


def _section_swap(findings: dict, summary: dict, bands: dict) -> list[str]:
    cfg = findings["config"]
    lines = [
        "## 4. Layer swap between instances with different answers",
        "",
        f"Paper: {PAPER['swap']}",
        "",
        "Here: target A is the instance; source B is another held-out instance of the same family and difficulty "
        "with another answer (goal cell, landing column, number of turns). Run B records its block outputs; in a "
        f"run of A, the output of one layer is replaced by B's for the tokens of latent frames "
        f"{', '.join(map(str, cfg['swap_frames']))} (frame 0 holds A's given image), in both CFG passes, at every "
        "step. An output *follows the source* when B's scorer passes it (with frame 0 replaced by B's given "
        "image: the first frame is the input, not the answer) and *follows the target* when A's scorer does; "
        "*answer wins*: the instance's right answer is the winning candidate of the final video; *chance* beside "
        "it: what a winner picked at random among the candidates would score (the mean of [a winner exists] / the "
        "number of candidates).",
        "",
        _links(findings, "swap", "sweeps"),
        "",
        f"![layer swap]({FIGURES['swap']})",
        "",
    ]
    for g in _groups(summary):
        e = summary[g]
        lines += [
            f"**{g}** (n = {e['follows_source'][0]['n']}; "
            f"unswapped A: follows target {fmt(e['baseline']['follows_target'])}; "
            f"run B itself: follows source {fmt(e['source_run']['follows_source'])})",
            "",
            "| layer | band | follows source | follows target | source answer wins | chance "
            "| target answer wins | chance |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for i, layer in enumerate(e["layers"]):
            lines.append(
                f"| {layer} | {_band_of(layer, bands)} | {fmt(e['follows_source'][i])} | {fmt(e['follows_target'][i])} "
                f"| {fmt(e['source_answer_wins'][i])} | {_chance(e.get('source_answer_wins_chance'), i)} "
                f"| {fmt(e['target_answer_wins'][i])} | {_chance(e.get('target_answer_wins_chance'), i)} |"
            )
        lines.append("")
    return lines


def _section_ensemble(findings: dict, summary: dict) -> list[str]:
    cfg = findings["config"]
    layers = findings["ensemble_layers"]
    lines = [
        "## 5. Seed ensemble",
        "",
        f"Paper: {PAPER['ensemble']}",
        "",
        f"Here: {cfg['ensemble_seeds']} seeds (the instance's seed s, s+1, …) run as one batch; at step 0 the block "
        f"outputs of layers {layer_span(layers)} are combined across the seeds (mode `updates`, both CFG passes), then "
        "each member denoises on; member 0 (seed s, the baseline's own) is scored. Baseline and ensemble are the "
        "same instances, so the difference is paired.",
        "",
        _links(findings, "trajectory", "compare", right=ENSEMBLE),
        "",
        "| family | n | baseline success | ensemble success | ensemble − baseline | mean score difference |",
        "|---|---|---|---|---|---|",
    ]
    for g in _groups(summary):
        e = summary[g]
        lines.append(
            f"| {g} | {e['baseline']['n']} | {fmt(e['baseline'])} | {fmt(e['ensemble'])} | {fmt(e['difference'])} | "
            f"{fmt(e['score_difference'])} |"
        )
    return [*lines, ""]


def _section_candidates(findings: dict, summary: dict) -> list[str]:
    lines = [
        "## 6. Multi-path exploration: candidate curves",
        "",
        f"Paper: {PAPER['candidates']}",
        "",
        "Here: the baseline's per-step candidate masses, measured on member 0's x̂₀ preview at every step "
        "(`tasks.candidate_curves`); a candidate is live with mass ≥ 0.2 and ≥ half the largest; *explored then "
        "committed*: ≥ 2 live candidates at some step of the first half and exactly 1 at the last step.",
        "",
        _links(findings, "trajectory", "trajectory"),
        "",
        f"![live candidates]({FIGURES['candidates']})",
        "",
        f"![winner is the answer, beside chance]({FIGURES['answer_wins']})",
        "",
        "*Final winner is the answer* counts a run with no live candidate at the last step as a miss; *…, when "
        "live* is over the runs with a live final winner. Each *chance* is what a winner picked at random among "
        "the candidates would score on the same runs: the mean of [a live final winner] / the number of "
        "candidates beside the first, the mean of 1 / the number of candidates over the runs with a live final "
        "winner beside the second (the dashed curves of the figure: the same per step). The candidate measures "
        "read every candidate alike, so on videos that carry no answer they score chance "
        "(docs/tasks.md, *Chance level*); a share above chance is the model's, not the measure's.",
        "",
        "| family | n | explored then committed | final winner is the answer | chance | final winner live "
        "| final winner is the answer, when live | chance | mean live, first step | mean live, last step |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for g in _groups(summary):
        e = summary[g]
        if not e["n"]:
            lines.append(f"| {g} | 0 | — | — | — | — | — | — | — | — |")
            continue
        lines.append(
            f"| {g} | {e['n']} | {fmt(e['explored_then_committed'])} | {fmt(e['final_winner_is_answer'])} | "
            f"{_chance(e.get('chance'))} | {fmt(e.get('final_winner_live'))} | "
            f"{fmt(e.get('final_winner_is_answer_when_live'))} | {_chance(e.get('chance_when_live'))} | "
            f"{fmt(e['mean_live'][0])} | {fmt(e['mean_live'][-1])} |"
        )
    left_out = {g: summary[g]["n"] - summary[g].get("n_per_step", summary[g]["n"]) for g in _groups(summary)}
    if any(left_out.values()):
        lines += [
            "",
            "Per-step means (mean live, winner is the answer and its chance: the figures) are over the runs with the "
            "first run's steps only: "
            + "; ".join(f"{g}: {summary[g]['n_per_step']} of {summary[g]['n']}" for g, k in left_out.items() if k)
            + ".",
        ]
    return [*lines, ""]


def _section_runs(findings: dict) -> list[str]:
    lines = [
        "## Runs",
        "",
        "| family | seed | difficulty | swap source seed | noise | steps | swap | trajectory |",
        "|---|---|---|---|---|---|---|---|",
    ]
    tabs = {"noise": "sweeps", "steps": "sweeps", "swap": "sweeps", "trajectory": "trajectory"}
    for row in findings["instances"]:
        links = " | ".join(f"[{k}]({explorer_url(row['runs'][k], tabs[k])})" for k in tabs)
        lines.append(f"| {row['family']} | {row['seed']} | {row['difficulty']} | {row['partner_seed']} | {links} |")
    return [*lines, ""]


def write_report(findings: dict, out: Path) -> list[str]:
    """Write findings.md and the figures into `out`; returns the files written."""
    written = []
    for name, text in figures(findings).items():
        (out / name).write_text(text)
        written.append(name)
    (out / "findings.md").write_text(markdown(findings))
    written.append("findings.md")
    return written
