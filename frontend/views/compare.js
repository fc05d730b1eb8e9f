// Comparison view: two trajectories side by side at the same step and frame (the baseline and a
// variant by default, any two on request), their x̂₀ difference map, 1 − CKA over steps (variant
// against the baseline), convergence to the final x̂₀ and commitment steps.

import { ApiError, artifactUrl, getJSON } from "../api.js";
import { colourBar, formatNumber, lineChart, matrixChart } from "../charts.js";
import { heatmapPixels, summary } from "../colour.js";
import { fill, h } from "../dom.js";
import { describeIntervention } from "../interventions.js";
import { subarray } from "../npy.js";
import { interventionSteps } from "../specform.js";
import { taskScoreBadge } from "../taskscore.js";
import { drawFrame, drawPlaceholder, integerScale, pixelCanvas } from "../preview.js";
import { channelMeanAbsDiff } from "../xdiff.js";
import { RunView } from "./runview.js";

const FRAME_BOX = 250; // largest side of each of the three frames; smaller where three do not fit side by side
const ROW_GAP = 16;

/**
 * The per-(layer, step) comparisons of a metrics file: hidden-state 1 − CKA (format 3) and
 * 1 − r² of layer-norm maps (stored as `layer_norm_cka_distance` before format 3).
 */
export function layerMatrices(metrics) {
  return {
    hidden: metrics?.hidden_state_cka_distance ?? null,
    norms: metrics?.layer_norm_map_r2_distance ?? metrics?.layer_norm_cka_distance ?? null,
  };
}
const COLOURS = { baseline: "#5ec8ff", variant: "#ffb454", layers: "#c792ea" };

export class CompareView extends RunView {
  constructor(explorer) {
    super(explorer);
    this.variant = null; // the right-hand trajectory
    this.left = "baseline";
    this.diffScale = "global";
    this.metricsData = new Map(); // variant → metrics/<variant>.json (or {error})
    this.diffCanvasTokens = document.createElement("canvas");
    this.build();
  }

  build() {
    this.variantSelect = h("select", { id: "variant-select", "aria-label": "right trajectory", onchange: () => this.choose({ right: this.variantSelect.value }) });
    this.leftSelect = h("select", { id: "left-select", "aria-label": "left trajectory", onchange: () => this.choose({ left: this.leftSelect.value }) });
    this.ivSummary = h("span", { class: "muted", id: "intervention-summary" });
    this.diffScaleSelect = h("select", { id: "diff-scale", onchange: () => {
      this.diffScale = this.diffScaleSelect.value;
      this.explorer.invalidate("view");
    } }, h("option", { value: "global" }, "global (all steps)"), h("option", { value: "step" }, "per step"));
    this.baseCanvas = h("canvas", { id: "compare-baseline", class: "pixelated", role: "img" });
    this.variantCanvas = h("canvas", { id: "compare-variant", class: "pixelated", role: "img" });
    this.diffCanvas = h("canvas", { id: "compare-diff", class: "pixelated", role: "img" });
    this.baseCaption = h("figcaption", { class: "caption" });
    this.variantCaption = h("figcaption", { class: "caption" });
    this.diffCaption = h("figcaption", { class: "caption" });
    this.diffBar = h("canvas", { class: "colourbar", id: "diff-colourbar" });
    this.cka = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    this.cka.id = "cka-chart";
    this.cka.classList.add("chart");
    this.convergence = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    this.convergence.id = "convergence-chart";
    this.convergence.classList.add("chart");
    this.layerCka = h("canvas", { id: "layer-cka", class: "matrix short" });
    this.layerCkaBar = h("canvas", { id: "layer-cka-colourbar", class: "colourbar" });
    this.layerCkaTitle = h("span", { id: "layer-matrix-title" });
    this.layerRow = null; // the matrix row (layer) whose value at the current step is read out; null: the last
    this.layerReadout = h("p", { class: "muted", id: "layer-matrix-readout" });
    this.layerMatrix = "hidden";
    this.layerMatrixSelect = h("select", { id: "layer-matrix", "aria-label": "layer × step matrix", onchange: () => {
      this.layerMatrix = this.layerMatrixSelect.value;
      this.explorer.invalidate("view");
    } }, h("option", { value: "hidden" }, "hidden states, 1 − CKA"), h("option", { value: "norms" }, "layer-norm maps, 1 − r²"));
    this.status = h("p", { class: "muted", id: "compare-status" });
    this.scores = h("div", { class: "compare-scores", id: "compare-scores", hidden: true });
    this.commitNote = h("span", { class: "muted", id: "commitment-note" });
    this.element = h(
      "div",
      { class: "view compare-view" },
      h("div", { class: "toolbar compare-tools" },
        h("label", {}, "Left ", this.leftSelect), h("label", {}, "Right ", this.variantSelect), this.ivSummary,
        h("label", { class: "push" }, "Difference scale ", this.diffScaleSelect)),
      this.status,
      this.scores,
      this.row = h("div", { class: "compare-row" },
        h("figure", { class: "frame-figure" }, this.baseCanvas, this.baseCaption),
        h("figure", { class: "frame-figure" }, this.variantCanvas, this.variantCaption),
        h("figure", { class: "frame-figure" }, this.diffCanvas, this.diffCaption, this.diffBar)),
      h("div", { class: "chart-row" },
        h("section", { class: "panel-box" }, h("h3", {}, "1 − CKA to the baseline, per step"), this.cka),
        h("section", { class: "panel-box" },
          h("h3", {}, "Convergence · ‖x̂₀ − x̂₀(final)‖ / ‖x̂₀(final)‖ per step ", this.commitNote), this.convergence)),
      h("section", { class: "panel-box" },
        h("h3", { class: "with-tools" }, this.layerCkaTitle, h("label", { class: "tool" }, "Matrix ", this.layerMatrixSelect)),
        this.layerCka, this.layerCkaBar, this.layerReadout),
    );
  }

  /** Both sides' task scores, in task-scored runs (the manifest's task_score of each trajectory). */
  renderScores() {
    const sides = [this.left, this.variant].filter(Boolean);
    const scores = sides.map((name) => [name, this.run.trajectories.get(name)?.meta?.task_score]);
    const key = JSON.stringify(scores);
    if (key === this.scores.dataset.key) return;
    this.scores.dataset.key = key;
    this.scores.hidden = !scores.some(([, score]) => score);
    fill(this.scores, scores.map(([name, score]) => taskScoreBadge(score, name)));
  }

  /** The difference map's colour scale: "global" (all steps) or "step". */
  setDiffScale(scale) {
    this.diffScale = scale;
    this.diffScaleSelect.value = scale;
    this.explorer.invalidate("view");
  }

  /** Compare `left` with `right` (trajectory names; either may be left out). */
  choose({ left, right } = {}) {
    if (left) this.left = left;
    if (right) this.variant = right;
    this.explorer.invalidate("view");
  }

  /** The compared pair, for the URL (the default left, the baseline, left out). */
  pair() {
    return { left: this.left !== "baseline" ? this.left : null, right: this.variant };
  }

  /** Whether the pair is a variant against the baseline: the one the stored metrics describe. */
  get againstBaseline() {
    // Sweep members have metrics files too, once they finish.
    return this.left === "baseline" && (this.run.variants().includes(this.variant) || this.run.metrics.has(this.variant));
  }

  /** metrics/<variant>.json: fetched once the variant's metric event has arrived. */
  metrics(variant) {
    const summaryEntry = this.run.metrics.get(variant);
    if (!summaryEntry) return null;
    if (!this.metricsData.has(variant)) {
      this.metricsData.set(variant, { loading: true });
      getJSON(artifactUrl(this.explorer.jobId, summaryEntry.file))
        .then((data) => this.metricsData.set(variant, data))
        .catch((error) => this.metricsData.set(variant, { error: error instanceof ApiError ? error.detail : String(error) }))
        .finally(() => this.explorer.invalidate("data"));
    }
    const data = this.metricsData.get(variant);
    return data.loading ? null : data;
  }

  /** Options for a trajectory picker: baseline, variants, swap sources, then one group per sweep. */
  trajectoryOptions() {
    const option = (name) => h("option", { value: name }, name);
    const plain = this.run.viewable().filter((t) => t.kind !== "sweep_member").map((t) => option(t.name));
    const groups = this.run.sweepGroups().map(({ sweep, members }) =>
      h("optgroup", { label: `sweep ${sweep}` }, members.filter((m) => this.run.trajectories.has(m)).map(option)));
    return [plain, groups];
  }

  render(reasons) {
    this.renderScores();
    // Variants and sweep members: what the stored metrics compare with the baseline.
    const sweepMembers = this.run.sweepGroups().flatMap((g) => g.members).filter((m) => this.run.trajectories.has(m));
    const variants = [...this.run.variants(), ...sweepMembers];
    const names = this.run.viewable().map((t) => t.name);
    const key = names.join(",");
    if (key !== this.variantsKey) {
      this.variantsKey = key;
      fill(this.variantSelect, this.trajectoryOptions());
      fill(this.leftSelect, this.trajectoryOptions());
    }
    if (!variants.length) {
      const spec = this.run.spec ?? {};
      this.status.textContent = this.run.ended || (spec.variants?.length === 0 && !spec.sweeps?.length)
        ? "This run has no variants: add one (noise at step, layer swap, …) when submitting to compare it with the baseline."
        : "Waiting for the first variant to start…";
      return;
    }
    if (!names.includes(this.variant)) this.variant = variants[0];
    if (!names.includes(this.left)) this.left = "baseline";
    this.variantSelect.value = this.variant;
    this.leftSelect.value = this.left;
    const traj = this.run.trajectories.get(this.variant);
    const interventions = traj?.meta?.interventions
      ?? this.run.spec?.variants?.find((v) => v.name === this.variant)?.interventions ?? [];
    this.ivSummary.textContent = interventions.map(describeIntervention).join(" + ");
    const metrics = this.againstBaseline ? this.metrics(this.variant) : null;
    this.status.textContent = !this.againstBaseline
      ? "1 − CKA is stored for each variant against the baseline (pick the baseline on the left to see it); the difference map is computed here from the two x̂₀ arrays."
      : metrics?.error
        ? `metrics: ${metrics.error}`
        : metrics ? "" : `${this.variant} is ${traj?.status ?? "queued"}: metrics appear when it finishes.`;
    this.renderSides();
    this.renderDifference(metrics);
    const structural = !reasons.has("position") || reasons.size > 1;
    if (structural || !this.ckaChart) {
      this.renderCka(metrics, interventions);
      this.renderLayerCka(metrics);
    }
    // The convergence chart's dashed curves and title belong to the current frame.
    if (structural || !this.convChart || this.convFrame !== this.scrubber.frame) this.renderConvergence();
    this.ckaChart?.setCursor(this.scrubber.step);
    this.convChart?.setCursor(this.scrubber.step);
    const col = metrics?.steps?.indexOf(this.scrubber.step) ?? -1;
    this.layerCkaChart?.setCursor(col);
    this.renderLayerReadout(metrics, col);
  }

  /** The matrix value of the picked layer at the current step, with the hidden-state CKA's error bound. */
  renderLayerReadout(metrics, col) {
    const matrices = layerMatrices(metrics);
    const kind = this.layerCka.dataset.matrix;
    const entry = matrices[kind];
    if (!entry || col < 0) {
      this.layerReadout.textContent = "";
      return;
    }
    const row = this.layerRow !== null && this.layerRow < entry.layers.length ? this.layerRow : entry.layers.length - 1;
    const value = entry.values[row]?.[col];
    const bound = kind === "hidden" ? entry.error_bound?.[row]?.[col] : null;
    const name = kind === "hidden" ? "1 − CKA" : "1 − r²";
    const shown = Number.isFinite(value) ? formatNumber(value) : "not compared at this step";
    const boundText = !Number.isFinite(bound) ? ""
      : bound === 0 ? " ± 0 (exact: every token kept, no sketch)"
        : ` ± ${formatNumber(bound)} (error bound of the ${entry.sketch_rows}-row token sketch)`;
    this.layerReadout.replaceChildren(`layer ${entry.layers[row]} · step ${this.scrubber.step}: ${name} = `,
      h("b", { id: "layer-matrix-value" }, shown), boundText, " · click a cell to pick the layer");
    Object.assign(this.layerReadout.dataset, { layer: entry.layers[row], step: this.scrubber.step, value: value ?? "", bound: bound ?? "" });
  }

  frameGeometry() {
    const latent = this.run.manifest?.shapes?.latent;
    const w = latent?.[3] ?? 8;
    const hh = latent?.[2] ?? 8;
    // Three frames side by side in the row's width (a laptop screen), at most FRAME_BOX each.
    const room = this.row.clientWidth ? Math.floor((this.row.clientWidth - 2 * ROW_GAP) / 3) : FRAME_BOX;
    const box = Math.max(Math.min(w, hh), Math.min(FRAME_BOX, room));
    const scale = integerScale(w, hh, box, box);
    for (const figure of this.row.children) figure.style.width = `${w * scale}px`; // captions wrap under their frame
    return { w, h: hh, width: w * scale, height: hh * scale, box };
  }

  renderSides() {
    const geo = this.frameGeometry();
    const step = this.scrubber.step;
    const frame = this.scrubber.frame;
    for (const [name, canvas, caption] of [[this.left, this.baseCanvas, this.baseCaption], [this.variant, this.variantCanvas, this.variantCaption]]) {
      const { g } = pixelCanvas(canvas, geo.w, geo.h, geo.box);
      const record = step === null ? null : this.run.stepRecord(name, step);
      const bitmap = record ? this.explorer.cache.get(record.artifacts.preview) : null;
      if (bitmap) {
        const members = this.run.members(name);
        drawFrame(g, bitmap, this.run.latentFrames, members, frame, 0, 0, 0, geo.width, geo.height);
      } else {
        drawPlaceholder(g, 0, 0, geo.width, geo.height, record ? "loading…" : "not computed yet");
      }
      Object.assign(canvas.dataset, { trajectory: name, step: step ?? "", frame, src: bitmap ? record.artifacts.preview : "" });
      canvas.setAttribute("aria-label", `x̂₀ preview of ${name} at step ${step ?? "none"}, latent frame ${frame}`);
      caption.replaceChildren(h("b", { style: { color: canvas === this.baseCanvas ? COLOURS.baseline : COLOURS.variant } }, name), ` · step ${step ?? "–"} · frame ${frame}`);
    }
  }

  renderDifference(metrics) {
    if (!this.againstBaseline) {
      this.renderPairDifference();
      return;
    }
    const geo = this.frameGeometry();
    const { g } = pixelCanvas(this.diffCanvas, geo.w, geo.h, geo.box);
    const path = this.run.metrics.get(this.variant)?.difference;
    if (path) this.explorer.cache.want(path, "array", true);
    const diff = path ? this.explorer.cache.get(path) : null;
    const stepPos = metrics?.steps?.indexOf(this.scrubber.step) ?? -1;
    let range = null;
    if (diff && stepPos >= 0) {
      // float16 (steps, F, H, W): mean |x̂₀ baseline − x̂₀ variant| over channels.
      const [, , th, tw] = diff.shape;
      const plane = subarray(diff, [stepPos, this.scrubber.frame]);
      const scope = this.diffScale === "global" ? diff.data : subarray(diff, [stepPos]).data;
      if (!this.diffMax || this.diffMax.path !== path) this.diffMax = { path, max: summary(diff.data).max };
      range = { lo: 0, hi: this.diffScale === "global" ? this.diffMax.max : summary(scope).max };
      this.diffCanvasTokens.width = tw;
      this.diffCanvasTokens.height = th;
      this.diffCanvasTokens.getContext("2d").putImageData(new ImageData(heatmapPixels(plane.data, range.lo, range.hi, "viridis"), tw, th), 0, 0);
      g.imageSmoothingEnabled = false;
      g.drawImage(this.diffCanvasTokens, 0, 0, tw, th, 0, 0, geo.width, geo.height);
    } else {
      drawPlaceholder(g, 0, 0, geo.width, geo.height, path ? (diff ? "step not compared" : "loading…") : "after the variant finishes");
    }
    Object.assign(this.diffCanvas.dataset, { step: this.scrubber.step ?? "", frame: this.scrubber.frame, src: diff ? path : "", hi: range?.hi ?? "" });
    this.diffCaption.replaceChildren(h("b", {}, "difference"), " · mean |Δx̂₀| over channels");
    this.diffCanvas.setAttribute("aria-label", `difference of baseline and ${this.variant} at step ${this.scrubber.step ?? "none"}, `
      + `latent frame ${this.scrubber.frame}: mean |Δx̂₀| over channels, ${this.diffScale === "global" ? "global" : "per-step"} scale`);
    colourBar(this.diffBar, range, "viridis", "|Δx̂₀|");
  }

  /** Difference of any two trajectories at this step and frame, from their x̂₀ arrays (member 0). */
  renderPairDifference() {
    const geo = this.frameGeometry();
    const { g } = pixelCanvas(this.diffCanvas, geo.w, geo.h, geo.box);
    const step = this.scrubber.step;
    const paths = [this.left, this.variant].map((name) => (step === null ? null : this.run.stepRecord(name, step)?.artifacts?.x0 ?? null));
    for (const path of paths) if (path) this.explorer.cache.want(path, "array", true);
    const [a, b] = paths.map((path) => (path ? this.explorer.cache.get(path) : null));
    let range = null;
    if (a && b) {
      const diff = channelMeanAbsDiff(a, b, 0, this.scrubber.frame);
      range = { lo: 0, hi: Math.max(summary(diff.data).max, 1e-12) };
      this.diffCanvasTokens.width = diff.w;
      this.diffCanvasTokens.height = diff.h;
      this.diffCanvasTokens.getContext("2d").putImageData(new ImageData(heatmapPixels(diff.data, range.lo, range.hi, "viridis"), diff.w, diff.h), 0, 0);
      g.imageSmoothingEnabled = false;
      g.drawImage(this.diffCanvasTokens, 0, 0, diff.w, diff.h, 0, 0, geo.width, geo.height);
    } else {
      drawPlaceholder(g, 0, 0, geo.width, geo.height, paths.every(Boolean) ? "loading…" : "no x̂₀ arrays at this step");
    }
    Object.assign(this.diffCanvas.dataset, { step: step ?? "", frame: this.scrubber.frame, src: a && b ? "x0" : "", hi: range?.hi ?? "" });
    this.diffCaption.replaceChildren(h("b", {}, "difference"), ` · ${this.left} vs ${this.variant} · mean |Δx̂₀| over channels, this frame's range`);
    this.diffCanvas.setAttribute("aria-label", `difference of ${this.left} and ${this.variant} at step ${step ?? "none"}, `
      + `latent frame ${this.scrubber.frame}: mean |Δx̂₀| over channels`);
    colourBar(this.diffBar, range, "viridis", "|Δx̂₀|");
  }

  renderCka(metrics, interventions) {
    const steps = metrics?.steps ?? [];
    const x0 = metrics?.cka_x0_distance ?? [];
    const layerValues = layerMatrices(metrics).norms?.values ?? [];
    const layerMean = steps.map((_, i) => layerValues.length ? layerValues.reduce((a, row) => a + row[i], 0) / layerValues.length : NaN);
    const all = [...x0, ...layerMean.filter(Number.isFinite)];
    const hi = Math.max(1e-3, ...all) * 1.1;
    const total = Math.max(this.run.totalSteps, 2);
    const labelled = new Set();
    const vlines = interventionSteps(interventions).map(({ step, kind }) => {
      const label = labelled.has(kind) ? null : kind.replaceAll("_", " "); // one label per kind: no overprint
      labelled.add(kind);
      return { x: step, label, color: "#ff7b72", cls: "intervention" };
    });
    this.ckaChart = lineChart(this.cka, {
      title: `1 − CKA of ${this.variant} to the baseline per step`,
      x: { domain: [-0.5, total - 0.5], label: "denoising step" },
      y: { domain: [0, hi], label: layerValues.length ? "1 − CKA · 1 − r²" : "1 − CKA" },
      series: [
        { name: "x̂₀", color: COLOURS.variant, points: steps.map((s, i) => ({ x: s, y: x0[i] })) },
        ...(layerValues.length ? [{ name: "1 − r² of layer-norm maps (mean over layers)", color: COLOURS.layers, dash: "4 2", points: steps.map((s, i) => ({ x: s, y: layerMean[i] })) }] : []),
      ],
      vlines,
      cursor: this.scrubber.step,
      empty: metrics ? null : this.againstBaseline ? "waiting for the comparison…" : "stored against the baseline only",
      onPick: (x) => this.scrubber.setStep(Math.round(x)),
    });
    this.cka.dataset.points = steps.length;
  }

  renderConvergence() {
    const series = [];
    const vlines = [];
    let hi = 0;
    let threshold = null;
    const frame = this.scrubber.frame;
    this.convFrame = frame;
    this.convergence.dataset.frame = frame;
    for (const [name, colour] of [[this.left, COLOURS.baseline], [this.variant, COLOURS.variant]]) {
      const traj = this.run.trajectories.get(name);
      if (!traj?.convergence) continue;
      this.explorer.cache.want(traj.convergence, "array", true);
      const array = this.explorer.cache.get(traj.convergence);
      const steps = traj.meta?.convergence?.steps ?? this.run.stepIndices(name);
      threshold = traj.meta?.convergence?.threshold ?? threshold;
      if (array) {
        const [count, frames] = array.shape;
        const mean = [];
        const one = [];
        for (let s = 0; s < count; s++) {
          const row = array.data.subarray(s * frames, (s + 1) * frames);
          mean.push({ x: steps[s], y: row.reduce((a, b) => a + b, 0) / frames });
          one.push({ x: steps[s], y: row[Math.min(frame, frames - 1)] });
          hi = Math.max(hi, ...row);
        }
        series.push({ name, color: colour, points: mean });
        series.push({ name: `${name} frame ${frame}`, color: colour, dash: "3 3", dots: false, legend: false, points: one });
      }
      if (traj.commitmentStep !== null && traj.commitmentStep !== undefined) {
        vlines.push({ x: traj.commitmentStep, label: `${name} commits`, color: colour, dash: "6 3", row: name === this.left ? 0 : 1, cls: "commitment" });
      }
    }
    const commits = vlines.map((v) => v.label.replace(" commits", `: step ${v.x}`)).join(" · ");
    this.commitNote.textContent = `· solid: mean over frames, dashed: latent frame ${frame}${commits ? ` · commitment ${commits}` : ""}`;
    this.commitNote.dataset.steps = vlines.map((v) => v.x).join(",");
    const total = Math.max(this.run.totalSteps, 2);
    this.convChart = lineChart(this.convergence, {
      x: { domain: [-0.5, total - 0.5], label: "denoising step" },
      y: { domain: [0, Math.max(hi * 1.05, threshold ?? 0, 1e-3)], label: "rel. L2 to final" },
      series,
      vlines,
      hlines: threshold !== null ? [{ y: threshold, label: `commit threshold ${threshold}` }] : [],
      cursor: this.scrubber.step,
      empty: series.length ? null : "convergence appears when a trajectory finishes",
      onPick: (x) => this.scrubber.setStep(Math.round(x)),
    });
  }

  renderLayerCka(metrics) {
    const matrices = layerMatrices(metrics);
    const kind = matrices[this.layerMatrix] ? this.layerMatrix : matrices.hidden ? "hidden" : "norms";
    const entry = matrices[kind];
    this.layerCka.parentElement.hidden = !entry;
    if (!entry) {
      this.layerCkaChart = null;
      return;
    }
    this.layerMatrixSelect.value = kind;
    this.layerMatrixSelect.parentElement.hidden = !(matrices.hidden && matrices.norms);
    const label = kind === "hidden" ? "1 − CKA" : "1 − r²";
    this.layerCkaTitle.textContent = kind === "hidden"
      ? "1 − CKA of hidden states (tokens × channels) · layer × step"
      : "1 − r² of layer-norm maps · layer × step (blind to direction)";
    this.layerCka.dataset.matrix = kind;
    const steps = metrics.steps;
    let hi = 0;
    for (const row of entry.values) for (const v of row) if (Number.isFinite(v)) hi = Math.max(hi, v);
    const every = Math.max(1, Math.ceil(steps.length / 12));
    this.layerCkaChart = matrixChart(this.layerCka, {
      rows: entry.layers.length,
      cols: steps.length,
      value: (r, c) => entry.values[r][c] ?? NaN, // null: not compared at that step
      range: { lo: 0, hi: Math.max(hi, 1e-6) },
      cmap: "inferno",
      xLabel: "denoising step",
      yLabel: "layer",
      title: `${label} of ${this.variant} to the baseline per layer and step; click a cell to pick its layer and step`,
      xTicks: steps.map((s, i) => ({ index: i, label: String(s) })).filter((_, i) => i % every === 0),
      rowLabel: (r) => String(entry.layers[r]),
      onPick: (r, c) => {
        this.layerRow = r;
        this.scrubber.setStep(steps[c]);
        this.explorer.invalidate("view");
      },
    });
    colourBar(this.layerCkaBar, { lo: 0, hi: Math.max(hi, 1e-6) }, "inferno", label);
    this.layerCkaBar.dataset.hi = Math.max(hi, 1e-6);
  }
}
