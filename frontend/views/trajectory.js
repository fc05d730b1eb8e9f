// Trajectory view: the x̂₀ of the current step and frame, the steps × frames grid, a filmstrip
// of one frame across steps, σ / t / expert on a timeline, and full-quality decodes on request.

import { ApiError, artifactUrl, jobs } from "../api.js";
import { colourBar, lineChart } from "../charts.js";
import { CANCELLED, DECODE, FAILED, QUEUED, STARTED } from "../contract/events.js";
import { framePath } from "../contract/run_format.js";
import { heatmapPixels, summary } from "../colour.js";
import { fill, fitCanvas, h } from "../dom.js";
import { decodedFramePath, videoFramesLabel, videoFramesOfLatent } from "../frames.js";
import { JobStream } from "../jobstream.js";
import { drawFrame, drawPlaceholder, gridCellSize, pixelCanvas } from "../preview.js";
import { channelMeanAbsDiff } from "../xdiff.js";
import {
  candidateChanceText,
  candidateChart,
  candidatesAt,
  candidatesAtText,
  drawCandidates,
  formatMass,
  settledWinner,
  taskScoreBadge,
} from "../taskscore.js";
import { RunView } from "./runview.js";

const EXPERT_COLOURS = ["#5ec8ff", "#ffb454"];
const FRAME_BOX = 340; // largest side of the main frame, in CSS pixels
const LABEL_W = 40; // step labels left of the grid
const HEADER_H = 18; // frame labels above the grid
const ZOOMS = [1, 1.5, 2, 3];
const LABEL_COLOUR = "#9aa4b2";

export class TrajectoryView extends RunView {
  constructor(explorer) {
    super(explorer);
    this.decodeRequests = new Map(); // "trajectory:step" → {state, job, error, stream}
    this.gridLayout = null;
    this.stripLayout = null;
    this.build();
  }

  build() {
    this.frameCanvas = h("canvas", { id: "frame-canvas", class: "pixelated", role: "img" });
    this.frameCaption = h("figcaption", { class: "caption" });
    // Task runs: each candidate drawn over x̂₀ where the measure reads it, with its mass at this step.
    this.candidateOverlay = h("canvas", { id: "candidate-overlay", class: "overlay candidate-overlay", role: "img" });
    this.showCandidates = true;
    this.candidateToggle = h("input", { type: "checkbox", id: "candidate-toggle", checked: true, onchange: () => {
      this.showCandidates = this.candidateToggle.checked;
      this.explorer.invalidate("view");
    } });
    this.measuredButton = h("button", { id: "measured-frame", class: "small", onclick: () => {
      const frames = this.candidateMeta()?.regions?.measured_frames ?? [];
      if (frames.length) this.scrubber.setFrame(frames[frames.length - 1]);
    } }, "go to the measured frame");
    this.candidateNote = h("span", { id: "candidate-note", class: "muted small" });
    this.candidateList = h("ul", { id: "candidate-list", class: "candidate-list", "aria-label": "candidates at this step" });
    this.candidateTools = h("div", { class: "candidate-tools", hidden: true },
      h("label", { class: "tool" }, this.candidateToggle, "candidates on x̂₀"), this.measuredButton, this.candidateNote);
    this.candidateStrip = h("canvas", { id: "candidate-strip", class: "candidate-strip", role: "img" });
    // The step cursor on a canvas of its own: scrubbing redraws a rectangle, not the strip.
    this.candidateStripCursor = h("canvas", { id: "candidate-strip-cursor", class: "overlay", "aria-hidden": "true" });
    this.candidateStripCaption = h("p", { id: "candidate-strip-caption", class: "small", "aria-live": "polite" });
    this.candidateStripCursor.addEventListener("click", (e) => this.pickCandidateStrip(e));
    this.frameMode = "x0"; // or "change": what this step did, |x̂₀(step) − x̂₀(previous step)|
    this.frameModeSelect = h("select", { id: "frame-mode", "aria-label": "what the main frame shows", onchange: () => {
      this.frameMode = this.frameModeSelect.value;
      this.explorer.invalidate("view");
    } }, h("option", { value: "x0" }, "x̂₀ preview"), h("option", { value: "change" }, "change from the previous step"));
    this.changeBar = h("canvas", { id: "change-colourbar", class: "colourbar", hidden: true });
    this.changeTokens = document.createElement("canvas");
    this.decodeButton = h("button", { id: "decode-button", onclick: () => this.requestDecode() }, "Full-quality decode");
    this.decodeStatus = h("span", { id: "decode-status", class: "muted" });
    this.decodeFrames = h("div", { id: "decode-frames", class: "decode-frames" });
    this.inputImage = h("img", { id: "input-image", alt: "first frame given to the model" });
    this.inputFigure = h("figure", { class: "input-frame", hidden: true }, this.inputImage,
      h("figcaption", { class: "caption" }, "input first frame (image-to-video)"));
    this.gridCanvas = h("canvas", { id: "grid-canvas", role: "img" });
    // Overlays carry the cursor and take clicks; the canvas under them is the image a screen reader names.
    this.gridOverlay = h("canvas", { id: "grid-overlay", class: "overlay", "aria-hidden": "true" });
    // Frame numbers (top) and step labels (left) stay in view while the cells scroll.
    this.gridHeader = h("canvas", { id: "grid-header", "aria-hidden": "true" });
    this.gridLabels = h("canvas", { id: "grid-labels", "aria-hidden": "true" });
    this.gridScroll = h("div", { class: "grid-scroll" },
      h("div", { class: "grid-table" },
        h("div", { class: "grid-corner" }),
        h("div", { class: "grid-head" }, this.gridHeader),
        h("div", { class: "grid-side" }, this.gridLabels),
        h("div", { class: "stack" }, this.gridCanvas, this.gridOverlay)));
    this.gridTitle = h("span", {}, "x̂₀ grid · steps × latent frames");
    this.gridZoom = 1;
    this.zoomSelect = h("select", { id: "grid-zoom", "aria-label": "grid zoom", onchange: () => {
      this.gridZoom = Number(this.zoomSelect.value);
      this.explorer.invalidate("layout");
    } }, ZOOMS.map((z) => h("option", { value: z }, z === 1 ? "fit width" : `${z}×`)));
    this.finalVideo = h("video", { id: "final-video", controls: true, loop: true, muted: true, playsinline: true, preload: "metadata" });
    this.finalCaption = h("figcaption", { class: "caption", id: "final-caption" });
    this.finalFigure = h("figure", { class: "final-figure", hidden: true },
      h("h3", {}, "Final video"), this.finalVideo, this.finalCaption);
    this.stripCanvas = h("canvas", { id: "filmstrip-canvas", role: "img" });
    this.stripOverlay = h("canvas", { id: "filmstrip-overlay", class: "overlay", "aria-hidden": "true" });
    this.stripTitle = h("h3", { id: "filmstrip-title" });
    this.timeline = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    this.timeline.id = "timeline";
    this.timeline.classList.add("chart");
    this.expertNote = h("span", { class: "muted", id: "expert-note" });
    // Task-scored runs only: the scorer's verdict and the candidate curve of the shown trajectory.
    this.taskScore = h("div", { id: "task-score" });
    this.candidateSvg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    this.candidateSvg.id = "candidate-chart";
    this.candidateSvg.classList.add("chart");
    this.candidateChance = h("p", { class: "muted small", id: "candidate-chance" });
    this.taskPanel = h("section", { class: "panel-box", id: "task-panel", hidden: true },
      h("h3", {}, "Task · the scorer's verdict on the final video, and the candidate answers' mass per step (member 0's preview)"),
      this.taskScore, this.candidateSvg, this.candidateChance,
      h("h3", { class: "strip-title" }, "Live candidates across steps · shade: mass · outlined: live · dot: the winner (click: go to the step)"),
      h("div", { class: "candidate-strip-box" }, h("div", { class: "stack" }, this.candidateStrip, this.candidateStripCursor)),
      this.candidateStripCaption);
    this.gridOverlay.addEventListener("click", (e) => this.pickGrid(e));
    this.stripOverlay.addEventListener("click", (e) => this.pickStrip(e));

    this.element = h(
      "div",
      { class: "view trajectory-view" },
      h("div", { class: "columns" },
        h("div", { class: "col-main" },
          h("label", { class: "tool" }, "Show ", this.frameModeSelect),
          h("figure", { class: "frame-figure" },
            h("div", { class: "stack" }, this.frameCanvas, this.candidateOverlay), this.frameCaption, this.changeBar),
          this.candidateTools,
          this.candidateList,
          this.inputFigure,
          this.finalFigure,
          h("section", { class: "decode-panel" },
            h("h3", {}, "Full-quality decode"),
            h("p", { class: "muted small" }, "Previews are a fitted linear map of the latent. Decode this step with the model's VAE (member 0):"),
            h("div", { class: "decode-row" }, this.decodeButton, this.decodeStatus),
            this.decodeFrames)),
        h("div", { class: "col-side" },
          this.taskPanel,
          h("section", { class: "panel-box" },
            h("h3", { class: "with-tools" }, this.gridTitle, h("label", { class: "tool" }, "zoom ", this.zoomSelect)),
            this.gridScroll),
          h("section", { class: "panel-box" }, this.stripTitle,
            h("div", { class: "strip-scroll" }, h("div", { class: "stack" }, this.stripCanvas, this.stripOverlay))),
          h("section", { class: "panel-box" },
            h("h3", {}, "Timeline · σ and expert per step (t of the step is beside the slider) ", this.expertNote),
            this.timeline))),
    );
  }

  /** The main frame's largest side: FRAME_BOX, or less where its column is narrower (a laptop screen). */
  frameBox() {
    const column = this.frameCanvas.closest(".col-main")?.clientWidth;
    return column ? Math.min(FRAME_BOX, column - 2) : FRAME_BOX;
  }

  /** Show the x̂₀ preview ("x0") or the change from the previous step ("change") in the main frame. */
  setFrameMode(mode) {
    this.frameMode = mode;
    this.frameModeSelect.value = mode;
    this.explorer.invalidate("view");
  }

  /** Trajectory shown, its member count, and the frame geometry from the first loaded preview. */
  context() {
    const name = this.explorer.selection.trajectory;
    return {
      name,
      members: this.run.members(name),
      member: this.explorer.selection.member,
      frames: this.run.latentFrames,
    };
  }

  bitmapAt(name, step) {
    const record = this.run.stepRecord(name, step);
    return record ? { record, bitmap: this.explorer.cache.get(record.artifacts.preview) } : { record: null, bitmap: null };
  }

  /** Size of one frame of the previews (latent resolution), from any loaded preview. */
  frameSize(ctx) {
    for (const step of this.scrubber.available) {
      const { bitmap } = this.bitmapAt(ctx.name, step);
      if (bitmap) return { w: bitmap.width / ctx.frames, h: bitmap.height / ctx.members };
    }
    const latent = this.run.manifest?.shapes?.latent;
    return latent ? { w: latent[3], h: latent[2] } : { w: 8, h: 8 };
  }

  render(reasons) {
    const data = reasons.has("data") || reasons.has("asset") || reasons.has("layout");
    const ctx = this.context();
    this.renderFrame(ctx);
    this.renderCandidates(ctx);
    if (data) {
      this.renderInput();
      this.renderFinalVideo(ctx);
    }
    if (data || reasons.has("position")) {
      this.renderGrid(ctx, data);
      this.renderStrip(ctx, data || this.stripFrame !== this.scrubber.frame);
      this.renderDecode(ctx);
    }
    if (data || !this.timelineChart) this.renderTimeline(ctx);
    this.timelineChart?.setCursor(this.scrubber.step);
    if (data || this.taskPanel.dataset.trajectory !== ctx.name) this.renderTask(ctx);
    this.candidateChart?.setCursor(this.scrubber.step);
    this.renderCandidateStrip();
  }

  /** The shown trajectory's manifest `candidates` (task runs), or null. */
  candidateMeta() {
    return this.run.trajectories.get(this.explorer.selection.trajectory)?.meta?.candidates ?? null;
  }

  /** Each candidate over the x̂₀ preview at this step, with its mass, and the same as a list (a legend, and text). */
  renderCandidates(ctx) {
    const candidates = this.candidateMeta();
    const regions = candidates?.regions;
    const step = this.scrubber.step;
    const frame = this.scrubber.frame;
    this.candidateTools.hidden = !regions;
    if (!regions) { // runs without a task (most): nothing to draw on any step
      this.candidateOverlay.hidden = true;
      if (this.candidateList.childElementCount) fill(this.candidateList);
      this.candidateListKey = null;
      return;
    }
    const { width, height } = this.frameCanvas;
    const g = this.candidateOverlay.dataset.size === `${width}x${height}`
      ? this.candidateOverlay.getContext("2d")
      : fitCanvas(this.candidateOverlay, width, height);
    this.candidateOverlay.dataset.size = `${width}x${height}`;
    g.clearRect(0, 0, width, height);
    const at = candidatesAt(candidates, step);
    const shown = Boolean(at) && this.showCandidates && this.frameMode === "x0";
    this.candidateOverlay.hidden = !shown;
    const measuredFrames = regions?.measured_frames ?? [];
    const measured = measuredFrames.includes(frame);
    if (shown) drawCandidates(g, at, regions, width, height, measured);
    this.measuredButton.hidden = measured || !measuredFrames.length;
    const frames = measuredFrames.length ? `latent frame${measuredFrames.length > 1 ? "s" : ""} ${measuredFrames.join(", ")}` : "";
    this.candidateNote.textContent = !at ? `step ${step ?? "–"} was not measured`
      : `${measured ? "measured in this frame" : `masses are measured in ${frames}, not this one`}${ctx.member ? " · masses of member 0" : ""}`;
    const text = candidatesAtText(at, step);
    this.candidateOverlay.setAttribute("aria-label", `candidates over the x̂₀ preview: ${text}`);
    Object.assign(this.candidateOverlay.dataset, { step: step ?? "", frame, measured: String(measured), drawn: String(shown) });
    // The list: built once per trajectory, its entries' text updated in place as the step changes.
    const key = `${ctx.name}|${candidates.labels.length}|${candidates.masses.length}`;
    if (key !== this.candidateListKey) {
      this.candidateListKey = key;
      fill(this.candidateList, candidates.labels.map((_, j) => h("li", { dataset: { index: j } },
        h("span", { class: "swatch", "aria-hidden": "true" }), h("span", { class: "name" }), h("b", {}), h("span", { class: "flag" }))));
    }
    (at ?? []).forEach((c, j) => {
      const li = this.candidateList.children[j];
      li.className = `candidate${c.alive ? " alive" : ""}${c.isWinner ? " winner" : ""}`;
      Object.assign(li.dataset, { mass: c.mass, alive: String(c.alive) });
      const [swatch, name, mass, flag] = li.children;
      swatch.style.background = c.colour;
      name.textContent = `${c.isWinner ? "★ " : ""}${c.label}${c.isAnswer ? " (answer)" : ""} `;
      mass.textContent = formatMass(c.mass);
      flag.textContent = c.alive ? " · live" : "";
    });
    this.candidateList.hidden = !at;
  }

  /** Every candidate (rows) at every measured step (columns): shade = mass, outlined = live, dot = the winner. */
  renderCandidateStrip() {
    const candidates = this.candidateMeta();
    const box = this.candidateStrip.closest(".candidate-strip-box");
    box.hidden = !candidates;
    box.previousElementSibling.hidden = !candidates;
    if (!candidates || this.taskPanel.hidden) {
      this.candidateStripCaption.textContent = "";
      return;
    }
    const { steps, labels, masses, answer } = candidates;
    const width = Math.max(200, box.clientWidth || 400);
    const rowH = 16;
    const labelW = Math.min(230, Math.max(60, ...labels.map((l, j) => (l.length + (j === answer ? 9 : 0)) * 6.8 + 10)));
    const top = 4;
    const height = top + labels.length * rowH + 20;
    const cw = (width - labelW - 4) / Math.max(1, steps.length);
    const maxMass = Math.max(1e-9, ...masses.flat().filter(Number.isFinite));
    const key = `${this.explorer.selection.trajectory}|${steps.join(",")}|${width}|${maxMass}`;
    if (key !== this.stripKeyDrawn) {
      this.stripKeyDrawn = key;
      this.drawCandidateStrip(candidates, { width, height, rowH, labelW, top, cw, maxMass });
    }
    const col = steps.indexOf(this.scrubber.step);
    const size = `${width}x${height}`;
    const o = this.candidateStripCursor.dataset.size === size
      ? this.candidateStripCursor.getContext("2d") : fitCanvas(this.candidateStripCursor, width, height);
    this.candidateStripCursor.dataset.size = size;
    o.clearRect(0, 0, width, height);
    if (col >= 0) {
      o.strokeStyle = "#5ec8ff";
      o.lineWidth = 2;
      o.strokeRect(labelW + col * cw, 1, cw, labels.length * rowH + top - 1);
    }
    this.stripGeometry = { labelW, cw, steps };
    const settled = settledWinner(candidates);
    const settledText = settled
      ? `the winner from step ${settled.step} to the last: ${labels[settled.winner]}${settled.winner === answer ? " (the answer)" : " (not the answer)"}`
      : "no winner at the last step";
    this.candidateStripCaption.textContent = `${candidatesAtText(candidatesAt(candidates, this.scrubber.step) ?? null, this.scrubber.step)} · ${settledText}`;
    this.candidateStrip.setAttribute("aria-label", `live candidates across ${steps.length} steps: ${labels.length} rows, `
      + `shaded by mass (0 to ${maxMass.toFixed(2)}), outlined where live, a dot on each step's winner; ${settledText}`);
    Object.assign(this.candidateStrip.dataset, {
      steps: steps.length, rows: labels.length, cursor: col, maxMass, labelW, cw, rowH, top,
    });
  }

  /** The strip's cells and labels (redrawn when the data or the width change, not when the step does). */
  drawCandidateStrip(candidates, { width, height, rowH, labelW, top, cw, maxMass }) {
    const { steps, labels, masses, winner, alive, answer } = candidates;
    const g = fitCanvas(this.candidateStrip, width, height);
    g.clearRect(0, 0, width, height);
    g.font = "12px system-ui, sans-serif";
    g.textBaseline = "middle";
    labels.forEach((label, j) => {
      const y = top + j * rowH;
      const colour = candidatesAt(candidates, steps[0])?.[j]?.colour ?? "#9aa4b2";
      g.fillStyle = j === answer ? "#7ee787" : LABEL_COLOUR;
      g.textAlign = "right";
      let text = `${label}${j === answer ? " (answer)" : ""}`;
      while (g.measureText(text).width > labelW - 8 && text.length > 4) text = `${text.slice(0, -2)}…`;
      g.fillText(text, labelW - 6, y + rowH / 2);
      steps.forEach((_, i) => {
        const x = labelW + i * cw;
        const mass = masses[i]?.[j];
        g.fillStyle = "#161b23";
        g.fillRect(x + 0.5, y + 1, Math.max(1, cw - 1), rowH - 2);
        if (Number.isFinite(mass)) {
          g.globalAlpha = Math.max(0, Math.min(1, mass / maxMass));
          g.fillStyle = colour;
          g.fillRect(x + 0.5, y + 1, Math.max(1, cw - 1), rowH - 2);
          g.globalAlpha = 1;
        }
        if (alive?.[i]?.[j]) {
          g.strokeStyle = "#e6edf3";
          g.lineWidth = 1;
          g.strokeRect(x + 1, y + 1.5, Math.max(1, cw - 2), rowH - 3);
        }
        if (winner[i] === j) {
          g.fillStyle = "#ffffff";
          g.beginPath();
          g.arc(x + cw / 2, y + rowH / 2, 2.5, 0, 2 * Math.PI);
          g.fill();
        }
      });
    });
    g.fillStyle = LABEL_COLOUR;
    g.textAlign = "center";
    const every = Math.max(1, Math.ceil(24 / cw));
    steps.forEach((step, i) => {
      if (i % every === 0) g.fillText(String(step), labelW + (i + 0.5) * cw, top + labels.length * rowH + 10);
    });
  }

  pickCandidateStrip(event) {
    const geo = this.stripGeometry;
    if (!geo) return;
    const box = this.candidateStrip.getBoundingClientRect();
    const i = Math.floor((event.clientX - box.left - geo.labelW) / geo.cw);
    if (i >= 0 && i < geo.steps.length) this.scrubber.setStep(geo.steps[i]);
  }

  /** The shown trajectory's task score and candidate curve, where the manifest has them. */
  renderTask(ctx) {
    const meta = this.run.trajectories.get(ctx.name)?.meta ?? {};
    this.taskPanel.dataset.trajectory = ctx.name;
    this.taskPanel.hidden = !meta.task_score && !meta.candidates;
    fill(this.taskScore, taskScoreBadge(meta.task_score));
    this.candidateSvg.style.display = meta.candidates ? "" : "none";
    const chance = meta.candidates ? candidateChanceText(meta.candidates) : null;
    this.candidateChance.textContent = chance ?? "";
    this.candidateChance.hidden = chance === null;
    this.candidateChart = meta.candidates && !this.taskPanel.hidden
      ? candidateChart(this.candidateSvg, meta.candidates, this.run.totalSteps, this.scrubber.step)
      : null;
  }

  renderFrame(ctx) {
    this.changeBar.hidden = this.frameMode !== "change";
    if (this.frameMode === "change") {
      this.renderChange(ctx);
      return;
    }
    const step = this.scrubber.step;
    const frame = this.scrubber.frame;
    const size = this.frameSize(ctx);
    const { g, scale, width, height } = pixelCanvas(this.frameCanvas, size.w, size.h, this.frameBox());
    const { record, bitmap } = step === null ? {} : this.bitmapAt(ctx.name, step);
    if (bitmap) {
      drawFrame(g, bitmap, ctx.frames, ctx.members, frame, ctx.member, 0, 0, width, height);
    } else {
      drawPlaceholder(g, 0, 0, width, height, step === null ? "waiting for steps…" : record ? "loading…" : "not computed yet");
    }
    Object.assign(this.frameCanvas.dataset, {
      trajectory: ctx.name,
      member: ctx.member,
      step: step ?? "",
      frame,
      src: bitmap ? record.artifacts.preview : "",
      scale,
    });
    const frames = videoFramesLabel(frame, this.run.temporal, this.run.videoFrames);
    this.frameCanvas.setAttribute("aria-label", `x̂₀ preview of ${ctx.name}${ctx.members > 1 ? ` member ${ctx.member}` : ""}`
      + ` at step ${step ?? "none"}, latent frame ${frame} (${frames})${bitmap ? "" : ": not loaded"}`);
    this.frameCaption.replaceChildren(
      h("b", {}, "x̂₀ preview"),
      ` · ${ctx.name}${ctx.members > 1 ? ` member ${ctx.member}` : ""} · step ${step ?? "–"} · latent frame ${frame} (${frames})`,
    );
  }

  /** What this step did: mean over channels of |x̂₀(step) − x̂₀(previous captured step)|. */
  renderChange(ctx) {
    const step = this.scrubber.step;
    const frame = this.scrubber.frame;
    const steps = this.scrubber.available;
    const previous = steps[steps.indexOf(step) - 1];
    const size = this.frameSize(ctx);
    const { g, scale, width, height } = pixelCanvas(this.frameCanvas, size.w, size.h, this.frameBox());
    const paths = [step, previous].map((s) => (s === undefined || s === null ? null : this.run.stepRecord(ctx.name, s)?.artifacts?.x0 ?? null));
    for (const path of paths) if (path) this.explorer.cache.want(path, "array", true);
    const [now, before] = paths.map((path) => (path ? this.explorer.cache.get(path) : null));
    let range = null;
    if (now && before) {
      const diff = channelMeanAbsDiff(now, before, ctx.member, frame);
      range = { lo: 0, hi: Math.max(summary(diff.data).max, 1e-12) };
      this.changeTokens.width = diff.w;
      this.changeTokens.height = diff.h;
      this.changeTokens.getContext("2d").putImageData(new ImageData(heatmapPixels(diff.data, range.lo, range.hi, "viridis"), diff.w, diff.h), 0, 0);
      g.imageSmoothingEnabled = false;
      g.drawImage(this.changeTokens, 0, 0, diff.w, diff.h, 0, 0, width, height);
    } else {
      const why = previous === undefined ? "the first step has no previous step" : paths.every(Boolean) ? "loading…" : "no x̂₀ arrays recorded";
      drawPlaceholder(g, 0, 0, width, height, step === null ? "waiting for steps…" : why);
    }
    Object.assign(this.frameCanvas.dataset, {
      trajectory: ctx.name, member: ctx.member, step: step ?? "", frame, src: range ? "change" : "", scale, previous: previous ?? "", hi: range?.hi ?? "",
    });
    this.frameCanvas.setAttribute("aria-label", `change of ${ctx.name}'s x̂₀ from step ${previous ?? "none"} to step ${step ?? "none"}, `
      + `latent frame ${frame}: mean over channels of the absolute difference`);
    this.frameCaption.replaceChildren(
      h("b", {}, "change from the previous step"),
      ` · |x̂₀(step ${step ?? "–"}) − x̂₀(step ${previous ?? "–"})|, mean over channels · ${ctx.name} · latent frame ${frame}`,
    );
    colourBar(this.changeBar, range, "viridis", "|Δx̂₀| this step");
  }

  renderInput() {
    const path = this.run.manifest?.inputs?.image;
    this.inputFigure.hidden = !path;
    if (path && this.inputImage.dataset.src !== path) {
      this.inputImage.dataset.src = path;
      this.inputImage.src = artifactUrl(this.explorer.jobId, path);
    }
  }

  /** The decoded output video of the shown trajectory: {dir, video}, or null before it is stored (its `decode` event
   * with step "final" comes after `trajectory_finished`, which names the files: asking earlier gets 404s). */
  finalOutput(ctx) {
    const traj = this.run.trajectories.get(ctx.name);
    const final = traj?.final;
    if (!final?.frames_dir || !(traj.decodes.has("final") || this.run.ended)) return null;
    return { dir: final.frames_dir, video: final.video ?? null };
  }

  /** The decoded final frame standing for latent frame `f` (a bitmap once loaded, else null). */
  finalFrame(final, f) {
    const path = decodedFramePath(final.dir, f, this.run.temporal, this.run.videoFrames);
    this.explorer.cache.want(path, "bitmap");
    return this.explorer.cache.get(path);
  }

  renderFinalVideo(ctx) {
    const final = this.finalOutput(ctx);
    this.finalFigure.hidden = !final?.video;
    if (!final?.video || this.finalVideo.dataset.src === final.video) return;
    this.finalVideo.dataset.src = final.video;
    this.finalVideo.src = artifactUrl(this.explorer.jobId, final.video);
    this.finalCaption.textContent = `${ctx.name}${ctx.members > 1 ? " member 0" : ""} · the decoded output (${this.run.videoFrames} frames)`;
  }

  renderGrid(ctx, redraw) {
    const steps = this.scrubber.available;
    const size = this.frameSize(ctx);
    const final = this.finalOutput(ctx);
    const rows = steps.length + (final ? 1 : 0);
    const box = this.gridScroll.clientWidth || 600;
    // Columns fill the panel's width (less a scrollbar); zoom makes them larger and the grid scrolls.
    const { cw, ch } = gridCellSize(box - 14, LABEL_W, ctx.frames, size.w / size.h, this.gridZoom);
    const width = ctx.frames * cw;
    const height = Math.max(1, rows * (ch + 1));
    const key = `${ctx.name}|${ctx.member}|${cw}|${rows}`;
    if (redraw || key !== this.gridKey) {
      this.gridKey = key;
      const g = fitCanvas(this.gridCanvas, width, height);
      const labels = fitCanvas(this.gridLabels, LABEL_W, height);
      g.clearRect(0, 0, width, height);
      labels.clearRect(0, 0, LABEL_W, height);
      labels.font = "12px system-ui, sans-serif";
      labels.fillStyle = LABEL_COLOUR;
      labels.textAlign = "right";
      const every = Math.max(1, Math.ceil(15 / (ch + 1)));
      steps.forEach((step, row) => {
        const y = row * (ch + 1);
        if (row % every === 0) labels.fillText(String(step), LABEL_W - 6, y + ch / 2 + 4);
        const { bitmap } = this.bitmapAt(ctx.name, step);
        for (let f = 0; f < ctx.frames; f++) {
          if (bitmap) drawFrame(g, bitmap, ctx.frames, ctx.members, f, ctx.member, f * cw, y, cw - 1, ch);
          else drawPlaceholder(g, f * cw, y, cw - 1, ch);
        }
      });
      let finalLoaded = 0;
      if (final) {
        // The decoded output under the last step: where the trajectory ends up, at full quality.
        const y = steps.length * (ch + 1);
        labels.fillStyle = "#7ee787";
        labels.fillText("final", LABEL_W - 6, y + ch / 2 + 4);
        g.imageSmoothingEnabled = true;
        for (let f = 0; f < ctx.frames; f++) {
          const bitmap = this.finalFrame(final, f);
          if (bitmap) {
            g.drawImage(bitmap, f * cw, y, cw - 1, ch);
            finalLoaded++;
          } else drawPlaceholder(g, f * cw, y, cw - 1, ch);
        }
      }
      this.gridLayout = { cw, ch, steps: [...steps], width, height, final: Boolean(final) };
      Object.assign(this.gridCanvas.dataset, { cw, ch, rows, finalRow: final ? "yes" : "", finalLoaded });
      // Redraw once every final frame has arrived (the cache asks for a render per asset).
      if (final && finalLoaded < ctx.frames) this.gridKey = null;
    }
    const head = fitCanvas(this.gridHeader, width, HEADER_H);
    head.clearRect(0, 0, width, HEADER_H);
    head.fillStyle = "rgba(94, 200, 255, 0.25)";
    head.fillRect(this.scrubber.frame * cw, 0, cw - 1, HEADER_H);
    head.font = "12px system-ui, sans-serif";
    head.textAlign = "center";
    head.fillStyle = LABEL_COLOUR;
    const everyFrame = Math.max(1, Math.ceil(22 / cw));
    for (let f = 0; f < ctx.frames; f += everyFrame) head.fillText(String(f), f * cw + cw / 2, 13);
    // The highlight lives on its own canvas: scrubbing redraws two rectangles, not the grid.
    const o = fitCanvas(this.gridOverlay, width, height);
    o.clearRect(0, 0, width, height);
    const row = steps.indexOf(this.scrubber.step);
    if (row >= 0) {
      const y = row * (ch + 1);
      o.strokeStyle = "rgba(94, 200, 255, 0.75)";
      o.lineWidth = 1;
      o.strokeRect(0.5, y - 0.5, width - 1, ch + 1);
      o.strokeStyle = "#ffffff";
      o.lineWidth = 2;
      o.strokeRect(this.scrubber.frame * cw + 1, y, cw - 2, ch);
      this.keepVisible(this.gridScroll, y, ch + HEADER_H);
    }
    this.gridTitle.textContent =
      `x̂₀ grid · ${steps.length} steps × ${ctx.frames} latent frames${final ? " + final video" : ""} · ${ctx.name}`;
    this.gridCanvas.setAttribute("aria-label", `${this.gridTitle.textContent}; the current step and frame are outlined; `
      + "click a cell to go there");
  }

  keepVisible(scroller, y, height) {
    if (y < scroller.scrollTop) scroller.scrollTop = y - 4;
    else if (y + height > scroller.scrollTop + scroller.clientHeight) scroller.scrollTop = y + height - scroller.clientHeight + 4;
  }

  pickGrid(event) {
    const layout = this.gridLayout;
    if (!layout) return;
    const box = this.gridOverlay.getBoundingClientRect();
    const f = Math.floor((event.clientX - box.left) / layout.cw);
    const row = Math.floor((event.clientY - box.top) / (layout.ch + 1));
    if (f < 0 || row < 0) return;
    if (row < layout.steps.length) this.scrubber.setStep(layout.steps[row]);
    if (row <= layout.steps.length) this.scrubber.setFrame(f);
  }

  renderStrip(ctx, redraw) {
    const steps = this.scrubber.available;
    const frame = this.scrubber.frame;
    const size = this.frameSize(ctx);
    const final = this.finalOutput(ctx);
    const cells = steps.length + (final ? 1 : 0);
    const box = this.stripCanvas.parentElement.parentElement.clientWidth || 600;
    const cw = Math.max(14, Math.min(72, Math.floor(box / Math.max(1, cells)) - 1));
    const ch = Math.max(8, Math.round((cw * size.h) / size.w));
    const width = Math.max(1, cells * (cw + 1));
    const height = ch + 16;
    const key = `${ctx.name}|${ctx.member}|${cw}|${cells}|${frame}`;
    if (redraw || key !== this.stripKey) {
      this.stripKey = key;
      this.stripFrame = frame;
      const g = fitCanvas(this.stripCanvas, width, height);
      g.clearRect(0, 0, width, height);
      g.font = "12px system-ui, sans-serif";
      g.textAlign = "center";
      const every = Math.max(1, Math.ceil(24 / (cw + 1)));
      steps.forEach((step, i) => {
        const { bitmap } = this.bitmapAt(ctx.name, step);
        const x = i * (cw + 1);
        if (bitmap) drawFrame(g, bitmap, ctx.frames, ctx.members, frame, ctx.member, x, 0, cw, ch);
        else drawPlaceholder(g, x, 0, cw, ch);
        g.fillStyle = LABEL_COLOUR;
        if (i % every === 0) g.fillText(String(step), x + cw / 2, ch + 13);
      });
      let finalShown = false;
      if (final) {
        const x = steps.length * (cw + 1);
        const bitmap = this.finalFrame(final, frame);
        g.imageSmoothingEnabled = true;
        if (bitmap) g.drawImage(bitmap, x, 0, cw, ch);
        else drawPlaceholder(g, x, 0, cw, ch);
        finalShown = Boolean(bitmap);
        g.fillStyle = "#7ee787";
        g.fillText("final", x + cw / 2, ch + 13);
        if (!bitmap) this.stripKey = null; // draw it again when the frame arrives
      }
      this.stripLayout = { cw, steps: [...steps] };
      Object.assign(this.stripCanvas.dataset, { cells, finalShown: finalShown ? "yes" : "" });
    }
    const o = fitCanvas(this.stripOverlay, width, height);
    o.clearRect(0, 0, width, height);
    const i = steps.indexOf(this.scrubber.step);
    if (i >= 0) {
      o.strokeStyle = "#ffffff";
      o.lineWidth = 2;
      o.strokeRect(i * (cw + 1), 1, cw, ch - 1);
      const scroller = this.stripCanvas.parentElement.parentElement;
      const x = i * (cw + 1);
      if (x < scroller.scrollLeft || x + cw > scroller.scrollLeft + scroller.clientWidth) scroller.scrollLeft = x - scroller.clientWidth / 2;
    }
    this.stripTitle.textContent =
      `Filmstrip · latent frame ${frame} (${videoFramesLabel(frame, this.run.temporal, this.run.videoFrames)}) across steps${final ? ", then the final video" : ""}`;
    this.stripCanvas.setAttribute("aria-label", `${this.stripTitle.textContent}; click a step to go there`);
  }

  pickStrip(event) {
    const layout = this.stripLayout;
    if (!layout) return;
    const box = this.stripOverlay.getBoundingClientRect();
    const i = Math.floor((event.clientX - box.left) / (layout.cw + 1));
    if (i >= 0 && i < layout.steps.length) this.scrubber.setStep(layout.steps[i]);
  }

  renderTimeline(ctx) {
    const name = this.run.trajectories.has(ctx.name) ? ctx.name : "baseline";
    const records = this.run.stepIndices(name).map((s) => this.run.stepRecord(name, s));
    const total = Math.max(this.run.totalSteps, (this.scrubber.newest ?? 0) + 1, 2);
    const experts = this.run.experts;
    const bands = [];
    const vlines = [];
    for (const r of records) {
      const last = bands[bands.length - 1];
      const colour = EXPERT_COLOURS[this.explorer.expertIndex(r.expert) % 2];
      if (last && last.expert === r.expert) last.x1 = r.index + 0.5;
      else {
        if (last) vlines.push({ x: r.index - 0.5, label: `→ ${r.expert}`, color: colour, cls: "expert-switch" });
        bands.push({ x0: r.index - 0.5, x1: r.index + 0.5, color: colour, label: r.expert, expert: r.expert });
      }
    }
    for (const [step] of this.run.trajectories.get(name)?.decodes ?? []) {
      if (Number.isInteger(step)) vlines.push({ x: step, label: "decoded", color: "#7ee787", dash: "1 3", row: 1 });
    }
    this.expertNote.textContent = experts.length > 1
      ? `· experts: ${experts.map((e, i) => `${e} (${i ? "orange" : "blue"})`).join(", ")}`
      : `· expert: ${experts[0] ?? "transformer"}`;
    this.timelineChart = lineChart(this.timeline, {
      title: `timeline: σ of every step and the expert that ran it (${experts.join(", ") || "transformer"})`,
      x: { domain: [-0.5, total - 0.5], label: "denoising step" },
      y: { domain: [0, 1], label: "σ" },
      // t is the scheduler's timestep, σ × 1000 on these models: a second curve would lie exactly on σ.
      series: [{ name: "σ", color: "#5ec8ff", points: records.map((r) => ({ x: r.index, y: r.sigma })) }],
      bands,
      vlines,
      cursor: this.scrubber.step,
      empty: records.length ? null : "no steps yet",
      onPick: (x) => this.scrubber.setStep(Math.round(x)),
    });
  }

  // -- full-quality decode -------------------------------------------------------------------

  decodeKey(name, step) {
    return `${name}:${step}`;
  }

  async requestDecode() {
    const name = this.explorer.selection.trajectory;
    const step = this.scrubber.step;
    if (step === null) return;
    const key = this.decodeKey(name, step);
    const request = { state: "requesting", step, name };
    this.decodeRequests.set(key, request);
    this.explorer.invalidate("data");
    try {
      const { status, body } = await jobs.decode(this.explorer.jobId, name, step);
      if (status === 200) {
        this.run.trajectory(name).decodes.set(step, body.decode);
        request.state = "done";
      } else {
        request.state = body.status === QUEUED && body.position ? `queued (#${body.position + 1})` : body.status;
        request.job = body.id;
        request.stream = new JobStream(jobs.eventsUrl(body.id), {
          onEvent: (event) => this.onDecodeEvent(request, event),
        }).open();
      }
    } catch (error) {
      request.state = "failed";
      request.error = error instanceof ApiError ? error.detail : String(error);
    }
    this.explorer.invalidate("data");
  }

  onDecodeEvent(request, event) {
    if (event.type === STARTED) request.state = "decoding…";
    else if (event.type === DECODE) {
      this.run.trajectory(request.name).decodes.set(request.step, {
        dir: event.dir, frames: event.frames, video: event.video, seconds: event.seconds, dtype: event.dtype,
      });
      request.state = "done";
      request.seconds = event.seconds;
    } else if (event.type === FAILED || event.type === CANCELLED) {
      request.state = event.type;
      request.error = event.error;
    }
    this.explorer.invalidate("data");
  }

  renderDecode(ctx) {
    const step = this.scrubber.step;
    const decode = step === null ? null : this.run.trajectories.get(ctx.name)?.decodes.get(step);
    const request = this.decodeRequests.get(this.decodeKey(ctx.name, step));
    this.decodeButton.textContent = step === null ? "Full-quality decode" : `Decode step ${step} of ${ctx.name}`;
    const busy = request && !["done", "failed", "cancelled"].includes(request.state);
    this.decodeButton.disabled = step === null || Boolean(decode) || Boolean(busy);
    const key = `${ctx.name}|${step}|${this.scrubber.frame}|${decode?.dir ?? ""}|${request?.state ?? ""}`;
    if (key === this.decodeShown) return;
    this.decodeShown = key;
    if (!decode) {
      this.decodeStatus.textContent = request ? `${request.state}${request.error ? `: ${request.error}` : ""}` : "";
      this.decodeStatus.dataset.state = request?.state ?? "";
      fill(this.decodeFrames);
      return;
    }
    this.decodeStatus.dataset.state = "done";
    const vae = decode.dtype ? ` · ${decode.dtype} VAE` : "";
    this.decodeStatus.textContent = `decoded${decode.seconds ? ` in ${decode.seconds} s` : ""} · ${decode.frames} frames${vae}`;
    const { first, last } = videoFramesOfLatent(this.scrubber.frame, this.run.temporal, decode.frames);
    const images = [];
    for (let v = first; v <= last; v++) {
      const path = framePath(decode.dir, v);
      images.push(h("figure", { class: "decoded" },
        h("img", { src: artifactUrl(this.explorer.jobId, path), class: "decoded-frame", dataset: { src: path, videoFrame: v }, alt: `video frame ${v}` }),
        h("figcaption", {}, `video frame ${v}`)));
    }
    fill(this.decodeFrames,
      h("div", { class: "decoded-row" }, images),
      decode.video ? h("a", { href: artifactUrl(this.explorer.jobId, decode.video), target: "_blank", class: "small" }, "video.mp4 of this step") : null);
  }

  dispose() {
    for (const request of this.decodeRequests.values()) request.stream?.close();
  }
}
