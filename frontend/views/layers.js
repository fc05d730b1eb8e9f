// Layer view: per-token L2 norm of one block's output over the current frame (alone or over x̂₀),
// with a colour scale that is global, per layer or per step (picked from per-layer summaries of
// the arrays loaded so far, so switching needs no fetch), a layer × step energy chart and a depth
// profile. The summaries outlive the arrays (the cache drops arrays past its byte budget); an
// array dropped and shown again is fetched again, with its neighbouring steps.

import { colourBar, lineChart, matrixChart } from "../charts.js";
import { colourRange, heatmapPixels, SCALE_MODES } from "../colour.js";
import { layerNormsKey } from "../contract/run_format.js";
import { fill, h } from "../dom.js";
import { bandRanges, layerBand } from "../layerbands.js";
import { subarray } from "../npy.js";
import { drawFrame, drawPlaceholder, pixelCanvas } from "../preview.js";
import { RunView } from "./runview.js";

const FRAME_BOX = 340;
const BAND_COLOURS = { early: "#7ee787", middle: "#5ec8ff", late: "#ffb454" };
const EXPERT_COLOURS = ["#5ec8ff", "#ffb454"]; // as on the trajectory timeline

export class LayerView extends RunView {
  constructor(explorer) {
    super(explorer);
    this.layerPos = null; // position on the arrays' L axis (manifest.probes.layers[layerPos] is the block)
    this.mode = "overlay";
    this.opacity = 0.65;
    this.scaleMode = "global";
    this.cmap = "inferno";
    this.tokenCanvas = document.createElement("canvas");
    this.build();
  }

  build() {
    this.picker = h("div", { class: "layer-picker", id: "layer-picker" });
    const radio = (name, value, label, checked, onchange) =>
      h("label", { class: "radio" }, h("input", { type: "radio", name, value, checked, onchange }), label);
    // Radio groups: one tab stop each, ←/→ pick within (while one has the focus the scrubber's keys wait: Esc).
    this.modeControls = h("span", { class: "seg", role: "radiogroup", "aria-label": "display" },
      radio("heat-mode", "overlay", "over x̂₀", true, () => this.set({ mode: "overlay" })),
      radio("heat-mode", "alone", "alone", false, () => this.set({ mode: "alone" })));
    this.opacityInput = h("input", {
      type: "range", id: "heat-opacity", min: 0.1, max: 1, step: 0.05, value: this.opacity, "aria-label": "heatmap opacity over x̂₀",
      oninput: () => this.set({ opacity: Number(this.opacityInput.value) }),
    });
    this.scaleControls = h("span", { class: "seg", id: "scale-modes", role: "radiogroup", "aria-label": "colour scale" },
      Object.entries(SCALE_MODES).map(([mode, title]) =>
        h("label", { class: "radio", title }, h("input", {
          type: "radio", name: "heat-scale", value: mode, checked: mode === this.scaleMode,
          onchange: () => this.set({ scaleMode: mode }),
        }), { global: "global", layer: "per layer", step: "per step" }[mode])));
    this.cmapSelect = h("select", { id: "heat-cmap", onchange: () => this.set({ cmap: this.cmapSelect.value }) },
      h("option", { value: "inferno" }, "inferno"), h("option", { value: "viridis" }, "viridis"));
    this.heatCanvas = h("canvas", { id: "heatmap-canvas", class: "pixelated", role: "img" });
    this.heatCaption = h("figcaption", { class: "caption" });
    this.colourBarCanvas = h("canvas", { id: "heat-colourbar", class: "colourbar" });
    this.expertNote = h("p", { class: "muted small", id: "layer-expert-note" });
    this.energyCanvas = h("canvas", { id: "energy-chart", class: "matrix" });
    this.energyBar = h("canvas", { id: "energy-colourbar", class: "colourbar" });
    this.profile = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    this.profile.id = "layer-profile";
    this.profile.classList.add("chart", "short");
    this.loadNote = h("span", { class: "muted", id: "norms-loaded" });
    this.passSelect = h("select", { id: "norm-pass", onchange: () => this.explorer.select({ pass: this.passSelect.value }) });
    this.passControl = h("label", { class: "tool", title: "the CFG pass whose block outputs were measured" }, "CFG pass ", this.passSelect);
    this.element = h(
      "div",
      { class: "view layer-view" },
      h("div", { class: "toolbar wrap" },
        h("span", { class: "tool" }, "Display ", this.modeControls),
        h("label", { class: "tool" }, "Opacity ", this.opacityInput),
        h("span", { class: "tool" }, "Colour scale ", this.scaleControls),
        h("label", { class: "tool" }, "Map ", this.cmapSelect),
        this.passControl,
        this.loadNote),
      this.picker,
      h("div", { class: "columns" },
        h("div", { class: "col-main" },
          h("figure", { class: "frame-figure" }, this.heatCanvas, this.heatCaption),
          this.colourBarCanvas,
          this.expertNote),
        h("div", { class: "col-side" },
          h("section", { class: "panel-box" },
            h("h3", {}, "Energy · mean token norm per layer and step (click to pick; band: expert)"),
            this.energyCanvas,
            this.energyBar),
          h("section", { class: "panel-box" },
            h("h3", {}, "Depth profile · mean token norm per layer at this step"),
            this.profile))),
    );
  }

  set(changes) {
    Object.assign(this, changes);
    this.syncControls();
    this.explorer.invalidate("view");
  }

  /** The display, colour-scale and colour-map controls show the settings (also those a URL set). */
  syncControls() {
    for (const input of this.modeControls.querySelectorAll("input")) input.checked = input.value === this.mode;
    for (const input of this.scaleControls.querySelectorAll("input")) input.checked = input.value === this.scaleMode;
    this.cmapSelect.value = this.cmap;
  }

  layers() {
    return this.run.probedLayers;
  }

  /** Show block `layer` (a probed layer's index, from the URL) once the run's layers are known. */
  wantLayer(layer) {
    this.wantedLayer = layer;
    this.explorer.invalidate("view");
  }

  /** The block shown (its index in the model), or null before the run's layers are known. */
  currentLayer() {
    const layers = this.layers();
    if (this.wantedLayer !== undefined && this.wantedLayer !== null) return this.wantedLayer; // not shown yet
    return this.layerPos === null ? null : layers[this.layerPos] ?? null;
  }

  layerBy(delta) {
    const count = this.layers().length;
    if (!count) return;
    this.set({ layerPos: Math.max(0, Math.min(count - 1, (this.layerPos ?? 0) + delta)) });
  }

  normsPath(name, step) {
    return this.run.stepRecord(name, step)?.artifacts?.[layerNormsKey(this.explorer.normPass)] ?? null;
  }

  /** step → per-layer summaries, for every step whose norms have been loaded. */
  statsByStep(name) {
    const out = new Map();
    for (const step of this.run.stepIndices(name)) {
      const stats = this.explorer.normStats.get(this.normsPath(name, step));
      if (stats) out.set(step, stats);
    }
    return out;
  }

  /** The norms of `step`, asking for them (and the steps next to it) when not in memory. */
  normsAt(name, step) {
    const path = step === null ? null : this.normsPath(name, step);
    const array = path ? this.explorer.cache.get(path) : null;
    if (path && !array) {
      const steps = this.run.stepIndices(name);
      const at = steps.indexOf(step);
      // urgent requests go to the front of the queue: neighbours first, so `step` leads
      for (const d of [2, -2, 1, -1, 0]) {
        const near = steps[at + d];
        const nearPath = near === undefined ? null : this.normsPath(name, near);
        if (nearPath) this.explorer.cache.want(nearPath, "array", true);
      }
    }
    return { path, array };
  }

  render(reasons) {
    const layers = this.layers();
    const name = this.explorer.selection.trajectory;
    if (!layers.length) {
      fill(this.picker, h("p", { class: "muted" }, this.run.manifest ? "This run recorded no layer norms (probes.layers = none)." : "Waiting for the run to start…"));
      return;
    }
    if (this.wantedLayer !== undefined && this.wantedLayer !== null) {
      const pos = layers.indexOf(this.wantedLayer);
      if (pos >= 0) this.layerPos = pos;
      this.wantedLayer = null;
    }
    if (this.layerPos === null || this.layerPos >= layers.length) this.layerPos = Math.floor(layers.length / 2);
    const structural = reasons.has("data") || reasons.has("asset") || reasons.has("layout") || reasons.has("view");
    const byStep = this.statsByStep(name);
    this.renderPicker(layers);
    this.renderHeatmap(name, byStep);
    if (structural || !this.energy) this.renderEnergy(name, byStep, layers);
    const col = this.energySteps?.indexOf(this.scrubber.step) ?? -1;
    this.energy.setCursor(col);
    this.renderProfile(byStep, layers);
    const total = this.run.stepIndices(name).length;
    this.loadNote.textContent = `norms loaded: ${byStep.size} / ${total} steps`;
    const passes = this.run.manifest?.probes?.passes ?? [];
    this.passControl.hidden = passes.length < 2;
    if (this.passSelect.dataset.passes !== passes.join(",")) {
      this.passSelect.dataset.passes = passes.join(",");
      fill(this.passSelect, passes.map((p) => h("option", { value: p }, p)));
    }
    this.passSelect.value = this.explorer.normPass;
    this.loadNote.dataset.loaded = byStep.size;
  }

  renderPicker(layers) {
    const numLayers = this.run.numLayers || layers.length;
    const key = `${layers.join(",")}|${numLayers}|${this.layerPos}`;
    if (key === this.pickerKey) return;
    this.pickerKey = key;
    const ranges = bandRanges(numLayers);
    const groups = Object.entries(ranges).map(([band, [lo, hi]]) => {
      const chips = layers
        .map((layer, pos) => ({ layer, pos }))
        .filter(({ layer }) => layerBand(layer, numLayers) === band)
        .map(({ layer, pos }) => h("button", {
          class: `chip band-${band}${pos === this.layerPos ? " active" : ""}`,
          dataset: { layer, pos },
          title: `layer ${layer} (${band})`,
          onclick: () => this.set({ layerPos: pos }),
        }, String(layer)));
      if (!chips.length) return null;
      return h("div", { class: `band band-${band}`, dataset: { band } },
        h("span", { class: "band-name" }, `${band} `, h("span", { class: "muted" }, hi >= lo ? `${lo}–${hi}` : "")),
        h("span", { class: "chips" }, chips));
    });
    fill(this.picker, h("span", { class: "picker-label" }, "Layer"), groups);
  }

  renderHeatmap(name, byStep) {
    const step = this.scrubber.step;
    const frame = this.scrubber.frame;
    const member = this.explorer.selection.member;
    const layers = this.layers();
    const layer = layers[this.layerPos];
    const members = this.run.members(name);
    const frames = this.run.latentFrames;
    const record = step === null ? null : this.run.stepRecord(name, step);
    const bitmap = record ? this.explorer.cache.get(record.artifacts.preview) : null;
    const { path, array } = this.normsAt(name, step);
    const latent = this.run.manifest?.shapes?.latent;
    const w = bitmap ? bitmap.width / frames : latent?.[3] ?? 8;
    const hh = bitmap ? bitmap.height / members : latent?.[2] ?? 8;
    const { g, width, height } = pixelCanvas(this.heatCanvas, w, hh, FRAME_BOX);
    g.globalAlpha = 1;
    const range = colourRange(this.scaleMode, byStep, step, this.layerPos);
    if (!array || !range) {
      drawPlaceholder(g, 0, 0, width, height, step === null ? "waiting for steps…" : path ? "loading norms…" : "no norms for this step");
    } else {
      const [, , , th, tw] = array.shape;
      const plane = subarray(array, [Math.min(member, array.shape[0] - 1), this.layerPos, frame]);
      if (this.tokenCanvas.width !== tw || this.tokenCanvas.height !== th) {
        this.tokenCanvas.width = tw;
        this.tokenCanvas.height = th;
      }
      this.tokenCanvas.getContext("2d").putImageData(new ImageData(heatmapPixels(plane.data, range.lo, range.hi, this.cmap), tw, th), 0, 0);
      g.imageSmoothingEnabled = false; // one block per token
      if (this.mode === "overlay" && bitmap) {
        drawFrame(g, bitmap, frames, members, frame, Math.min(member, members - 1), 0, 0, width, height);
        g.globalAlpha = this.opacity;
      } else {
        g.clearRect(0, 0, width, height);
      }
      g.drawImage(this.tokenCanvas, 0, 0, tw, th, 0, 0, width, height);
      g.globalAlpha = 1;
    }
    Object.assign(this.heatCanvas.dataset, {
      trajectory: name,
      layer: layer ?? "",
      step: step ?? "",
      frame,
      mode: this.mode,
      scaleMode: this.scaleMode,
      src: array ? path : "",
      lo: range?.lo ?? "",
      hi: range?.hi ?? "",
    });
    const band = layerBand(layer, this.run.numLayers || layers.length);
    this.heatCanvas.setAttribute("aria-label", `L2 norm of each token at layer ${layer} (${band}), ${name}, step ${step ?? "none"}, `
      + `latent frame ${frame}${this.mode === "overlay" ? ", over the x̂₀ preview" : ""}, ${SCALE_MODES[this.scaleMode].split(":")[0]} colour scale`
      + (range ? ` from ${range.lo.toPrecision(3)} to ${range.hi.toPrecision(3)}` : ""));
    this.heatCaption.replaceChildren(
      h("b", {}, `L2 norm · layer ${layer}`), ` (${band}) · ${name} · step ${step ?? "–"} · latent frame ${frame}`,
      this.mode === "overlay" ? " · over x̂₀" : "",
    );
    colourBar(this.colourBarCanvas, range, this.cmap, `token L2 norm · ${SCALE_MODES[this.scaleMode].split(":")[0]} scale`);
    const expert = record?.expert;
    this.expertNote.textContent = this.run.experts.length > 1 && expert
      ? `Step ${step} ran on ${expert}: layer ${layer} is block ${layer} of that expert.`
      : "";
  }

  renderEnergy(name, byStep, layers) {
    const steps = [...byStep.keys()].sort((a, b) => a - b);
    this.energySteps = steps;
    let lo = Infinity;
    let hi = -Infinity;
    for (const stats of byStep.values()) for (const s of stats) {
      lo = Math.min(lo, s.mean);
      hi = Math.max(hi, s.mean);
    }
    const numLayers = this.run.numLayers || layers.length;
    const every = Math.max(1, Math.ceil(steps.length / 12));
    this.energy = matrixChart(this.energyCanvas, {
      rows: layers.length,
      cols: Math.max(1, steps.length),
      value: (r, c) => (steps.length ? byStep.get(steps[c])[r].mean : NaN),
      range: { lo, hi },
      cmap: this.cmap,
      xLabel: "denoising step",
      yLabel: "layer",
      title: `energy: mean token L2 norm of ${layers.length} layers over ${steps.length} steps; click a cell to pick its layer and step`,
      xTicks: steps.map((s, i) => ({ index: i, label: String(s) })).filter((_, i) => i % every === 0),
      rowLabel: (r) => String(layers[r]),
      rowColour: (r) => BAND_COLOURS[layerBand(layers[r], numLayers)],
      colColour: (c) => EXPERT_COLOURS[this.explorer.expertIndex(this.run.stepRecord(name, steps[c])?.expert) % 2],
      onPick: (r, c) => {
        this.set({ layerPos: r });
        this.scrubber.setStep(steps[c]);
      },
    });
    this.energy.setRow(this.layerPos);
    colourBar(this.energyBar, Number.isFinite(lo) ? { lo, hi } : null, this.cmap, "mean token L2 norm");
    Object.assign(this.energyBar.dataset, Number.isFinite(lo) ? { lo, hi } : {});
    this.energyCanvas.dataset.steps = steps.length;
    this.energyCanvas.dataset.layers = layers.length;
  }

  renderProfile(byStep, layers) {
    const stats = byStep.get(this.scrubber.step);
    const numLayers = this.run.numLayers || layers.length;
    let lo = Infinity;
    let hi = -Infinity;
    for (const all of byStep.values()) for (const s of all) {
      lo = Math.min(lo, s.mean);
      hi = Math.max(hi, s.mean);
    }
    const ranges = bandRanges(numLayers);
    const key = `${this.scrubber.step}|${this.layerPos}|${byStep.size}`;
    if (key === this.profileKey) return;
    this.profileKey = key;
    lineChart(this.profile, {
      x: { domain: [-0.5, numLayers - 0.5], label: "layer" },
      y: { domain: Number.isFinite(lo) ? [lo, hi] : [0, 1], label: "mean norm" },
      series: [{ name: `step ${this.scrubber.step ?? "–"}`, color: "#5ec8ff", points: stats ? layers.map((l, i) => ({ x: l, y: stats[i].mean })) : [] }],
      bands: Object.entries(ranges).filter(([, [a, b]]) => b >= a).map(([band, [a, b]]) => ({ x0: a - 0.5, x1: b + 0.5, color: BAND_COLOURS[band], label: band })),
      vlines: [{ x: layers[this.layerPos], label: `layer ${layers[this.layerPos]}`, color: "#e8ecf1" }],
      empty: stats ? null : "norms of this step not loaded yet",
    });
  }
}
