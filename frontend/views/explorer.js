// One job in the explorer: its header, the global scrubber and the three views. Owns the run's
// data (built from the event stream), the asset caches and the render loop: every change asks
// for one render on the next animation frame, which redraws only what the change touched.

import { ApiError, jobs } from "../api.js";
import { AssetCache } from "../assets.js";
import { layerStats } from "../colour.js";
import { EXPERIMENT_STARTED, METRIC, QUEUED, TERMINAL, TRAJECTORY_FINISHED } from "../contract/events.js";
import { isLayerNormsPath, layerNormsKey } from "../contract/run_format.js";
import { ago, fill, h } from "../dom.js";
import { latentFrameCount } from "../frames.js";
import { JobStream } from "../jobstream.js";
import { jobTitle } from "../jobtitle.js";
import { RunData } from "../rundata.js";
import { Scrubber } from "../state.js";
import { CompareView } from "./compare.js";
import { ExportMenu } from "./export.js";
import { LayerView } from "./layers.js";
import { ScrubberBar } from "./scrubber.js";
import { SweepsView } from "./sweeps.js";
import { TrajectoryView } from "./trajectory.js";

export const TABS = { trajectory: "Trajectory", layers: "Layers", compare: "Compare", sweeps: "Sweeps" };
const REFRESH_MANIFEST_ON = new Set([EXPERIMENT_STARTED, TRAJECTORY_FINISHED, METRIC, ...TERMINAL]);

export class Explorer {
  constructor(jobId, { tab = "trajectory", position = {}, onLocation = () => {}, onJobChange = () => {}, arrayBudget } = {}) {
    this.jobId = jobId;
    this.tab = TABS[tab] ? tab : "trajectory";
    this.onLocation = onLocation;
    this.locationTimer = null;
    this.onJobChange = onJobChange;
    this.run = new RunData(jobId);
    this.scrubber = new Scrubber();
    this.cache = new AssetCache(jobId, { arrayBudget });
    this.selection = { trajectory: position.trajectory ?? "baseline", member: position.member ?? 0, pass: null }; // pass: null = the run's first
    this.reasons = new Set();
    this.frameRequest = null;
    this.manifestTimer = null;
    this.eventCount = 0;
    this.disposed = false;
    this.prefetched = new Set(); // step artifacts already handed to the cache
    // Per-layer summaries of every layer-norm array ever loaded, kept when the cache drops the
    // array itself (its byte budget), so the energy chart and colour scales stay complete.
    this.normStats = new Map(); // norms path → layerStats(array)
    this.build();
    this.goTo(position);
    this.scrubber.subscribe((change) => this.invalidate(change === "step" || change === "frame" ? "position" : "data"));
    this.cache.subscribe((path, value, kind) => {
      if (kind === "array" && isLayerNormsPath(path) && !this.normStats.has(path)) {
        this.normStats.set(path, layerStats(value));
      }
      this.invalidate("asset");
    });
  }

  build() {
    this.title = h("h1", { class: "job-title" }, "…");
    this.meta = h("div", { class: "job-meta muted" });
    this.statusBadge = h("span", { class: "badge", id: "job-status" }, "loading");
    this.progressBar = h("div", { class: "bar" });
    this.stepCount = h("span", { id: "step-count", class: "step-count" }, "");
    this.streamState = h("span", { id: "stream-state", class: "stream-state muted" });
    this.reconnectButton = h(
      "button",
      { id: "reconnect", class: "small", title: "drop the event stream and resume after the last event", onclick: () => this.stream?.reconnect() },
      "reconnect",
    );
    // style.css belongs to the page shell; the notice's few rules stay here.
    this.warnings = h("ul", {
      id: "run-warnings",
      class: "run-warnings",
      hidden: true,
      style: { color: "#e3b341", fontSize: "12px", margin: "6px 0 0", paddingLeft: "0", listStyle: "none" },
    });
    this.cancelButton = h("button", { id: "cancel-job", class: "small danger", onclick: () => this.cancel() }, "cancel");
    this.exportMenu = new ExportMenu(this);
    this.tabButtons = Object.entries(TABS).map(([key, label]) =>
      h("button", {
        class: "tab", role: "tab", "data-tab": key, id: `tab-${key}`, "aria-controls": `panel-${key}`,
        "aria-selected": "false", onclick: () => this.showTab(key),
      }, label),
    );
    this.trajectorySelect = h("select", {
      id: "trajectory-select",
      "aria-label": "trajectory",
      onchange: () => this.select({ trajectory: this.trajectorySelect.value }),
    });
    this.memberSelect = h("select", {
      id: "member-select",
      "aria-label": "ensemble member",
      onchange: () => this.select({ member: Number(this.memberSelect.value) }),
    });
    this.selectors = h("span", { class: "selectors" },
      h("label", {}, "Trajectory ", this.trajectorySelect),
      h("label", { class: "member-label" }, "Member ", this.memberSelect));
    this.scrubberBar = new ScrubberBar(this);
    this.views = {
      trajectory: new TrajectoryView(this),
      layers: new LayerView(this),
      compare: new CompareView(this),
      sweeps: new SweepsView(this),
    };
    this.panels = h("div", { class: "panels" }, Object.entries(this.views).map(([key, view]) => {
      view.element.dataset.panel = key;
      Object.assign(view.element, { id: `panel-${key}` });
      view.element.setAttribute("role", "tabpanel");
      view.element.setAttribute("aria-labelledby", `tab-${key}`);
      return view.element;
    }));
    this.element = h(
      "section",
      { class: "explorer", "data-job": this.jobId },
      h("div", { class: "job-header" },
        h("div", { class: "job-heading" }, this.title, this.meta),
        h("div", { class: "job-state" },
          this.statusBadge,
          h("div", { class: "progress", title: "steps done over all trajectories" }, this.progressBar),
          this.stepCount,
          this.streamState,
          this.reconnectButton),
        h("div", { class: "job-actions" }, this.exportMenu.element, this.cancelButton)),
      this.warnings,
      this.scrubberBar.element,
      h("div", { class: "tabs" }, h("nav", { class: "tab-list", role: "tablist", "aria-label": "views" }, this.tabButtons), this.selectors),
      this.panels,
    );
    this.showTab(this.tab, false);
    this.renderSelectors();
  }

  async start() {
    let job;
    try {
      job = await jobs.get(this.jobId);
    } catch (error) {
      this.title.textContent = error instanceof ApiError && error.status === 404 ? "No such job" : "Could not load the job";
      this.meta.textContent = error.detail ?? String(error);
      return;
    }
    if (this.disposed) return;
    this.showJob(job);
    this.run.spec = job.spec;
    this.run.status = job.status;
    this.scrubber.configure({ totalSteps: job.spec?.steps ?? 0, frames: latentFrameCount(job.spec?.frames ?? 1) });
    if (job.status !== QUEUED) await this.refreshManifest();
    this.stream = new JobStream(jobs.eventsUrl(this.jobId), {
      onEvent: (event) => this.onEvent(event),
      onState: (state) => this.showStreamState(state),
    }).open();
  }

  showJob(job) {
    const spec = job.spec ?? {};
    const named = jobTitle(job);
    this.title.textContent = named.title;
    this.title.title = spec.prompt ?? "";
    const variants = (spec.variants ?? []).map((v) => v.name);
    this.meta.textContent = [
      named.id,
      job.model,
      `${spec.steps} steps`,
      `${spec.width}×${spec.height}`,
      `${spec.frames} frames`,
      `seed ${spec.seed}`,
      `guidance ${spec.guidance}`,
      variants.length ? `variants: ${variants.join(", ")}` : "no variants",
      ...(spec.sweeps?.length ? [`sweeps: ${spec.sweeps.map((s) => s.name).join(", ")}`] : []),
      ago(job.created),
    ].join(" · ");
    this.job = job;
    this.renderHeader();
  }

  onEvent(event) {
    this.eventCount++;
    const type = this.run.apply(event);
    if (type === "step") {
      this.prefetchStep(event.trajectory, event.artifacts);
      this.scrubber.addSteps([event.index]);
    }
    if (REFRESH_MANIFEST_ON.has(type)) this.scheduleManifest();
    if (TERMINAL.has(type)) this.onJobChange(); // the jobs list shows the new status now
    this.invalidate("data");
  }

  scheduleManifest() {
    clearTimeout(this.manifestTimer);
    this.manifestTimer = setTimeout(() => this.refreshManifest(), 150);
  }

  async refreshManifest() {
    let manifest;
    try {
      manifest = await jobs.manifest(this.jobId);
    } catch (error) {
      // 404: not started yet; anything else: the next event asks again.
      if (!(error instanceof ApiError && error.status === 404)) console.warn("manifest:", error);
      return;
    }
    if (this.disposed) return;
    this.run.mergeManifest(manifest);
    // Decodes asked for after the run live beside their frames, not in the manifest.
    jobs.decodes(this.jobId).then((body) => {
      if (this.disposed) return;
      this.run.mergeDecodes(body.decodes);
      this.invalidate("data");
    }, (error) => console.warn("decodes:", error));
    for (const traj of this.run.trajectories.values()) {
      for (const record of traj.steps.values()) this.prefetchStep(traj.name, record.artifacts);
    }
    this.scrubber.configure({ totalSteps: this.run.totalSteps, frames: this.run.latentFrames });
    this.scrubber.addSteps(this.run.allSteps());
    this.invalidate("data");
  }

  /** Queue a step's preview (every trajectory) and norms (the shown trajectory and the baseline). */
  prefetchStep(name, artifacts, urgent = false) {
    if (!artifacts) return;
    const preview = artifacts.preview;
    if (preview && !this.prefetched.has(preview)) {
      this.prefetched.add(preview);
      this.cache.want(preview, "bitmap", urgent);
    }
    if (name === this.selection.trajectory || name === "baseline") {
      const norms = artifacts[layerNormsKey(this.normPass)];
      if (norms && !this.prefetched.has(norms)) {
        this.prefetched.add(norms);
        this.cache.want(norms, "array", urgent);
      }
    }
  }

  /** The CFG pass whose layer norms are shown ("cond" unless the run recorded only "uncond"). */
  get normPass() {
    return this.selection.pass ?? this.run.normPass;
  }

  select({ trajectory, member, pass }) {
    if (pass !== undefined && pass !== this.selection.pass) {
      this.selection.pass = pass;
      for (const traj of [this.run.trajectories.get("baseline"), this.run.trajectories.get(this.selection.trajectory)]) {
        for (const record of traj?.steps.values() ?? []) this.prefetchStep(traj.name, record.artifacts);
      }
    }
    if (trajectory !== undefined && trajectory !== this.selection.trajectory) {
      this.selection.trajectory = trajectory;
      this.selection.member = 0;
      const traj = this.run.trajectories.get(trajectory);
      for (const record of traj?.steps.values() ?? []) this.prefetchStep(trajectory, record.artifacts);
    }
    if (member !== undefined) this.selection.member = member;
    this.invalidate("data");
  }

  /** The step record shown for `step`: the selected trajectory's, else the baseline's. */
  recordAt(step) {
    return this.run.stepRecord(this.selection.trajectory, step) ?? this.run.stepRecord("baseline", step);
  }

  expertIndex(expert) {
    return Math.max(0, this.run.experts.indexOf(expert));
  }

  layerBy(delta) {
    this.views.layers.layerBy(delta);
  }

  showTab(key, notify = true) {
    this.tab = key;
    for (const button of this.tabButtons) {
      button.classList.toggle("active", button.dataset.tab === key);
      button.setAttribute("aria-selected", String(button.dataset.tab === key));
    }
    for (const [name, view] of Object.entries(this.views)) view.element.hidden = name !== key;
    this.selectors.hidden = key === "compare" || key === "sweeps"; // these pick their own trajectories
    if (notify) this.scheduleLocation();
    this.invalidate("layout");
  }

  showStreamState(state) {
    this.streamState.dataset.state = state;
    this.invalidate("header");
  }

  async cancel() {
    try {
      await jobs.cancel(this.jobId);
    } catch (error) {
      this.streamState.textContent = error.detail ?? String(error);
    }
    this.onJobChange();
  }

  invalidate(reason) {
    this.reasons.add(reason);
    if (this.frameRequest === null && !this.disposed) {
      this.frameRequest = requestAnimationFrame(() => this.render());
    }
  }

  render() {
    this.frameRequest = null;
    const reasons = this.reasons;
    this.reasons = new Set();
    this.renderHeader();
    if (reasons.has("data")) this.renderSelectors();
    this.scrubberBar.render();
    this.views[this.tab].render(reasons);
    this.scheduleLocation();
  }

  /** Go to a position (from the URL): step and frame once they exist, layer, trajectory, compared pair, and how
   * the views show them (what the main frame shows, the heatmap's display, colour scale and map, the difference's scale). */
  goTo({ step, frame, layer, trajectory, member, left, right, show, display, scale, cmap, diff } = {}) {
    this.scrubber.want({ step, frame });
    if (layer !== undefined) this.views.layers.wantLayer(layer);
    if (trajectory !== undefined || member !== undefined) this.select({ trajectory, member });
    if (left !== undefined || right !== undefined) this.views.compare.choose({ left, right });
    if (show !== undefined) this.views.trajectory.setFrameMode(show);
    const heat = { mode: display, scaleMode: scale, cmap };
    for (const key of Object.keys(heat)) if (heat[key] === undefined) delete heat[key];
    if (Object.keys(heat).length) this.views.layers.set(heat);
    if (diff !== undefined) this.views.compare.setDiffScale(diff);
  }

  /** Where the explorer is and how its views show it, for the URL (defaults left out). */
  position() {
    const { trajectory, member } = this.selection;
    const { layers, compare } = this.views;
    const unless = (value, byDefault) => (value !== byDefault ? value : null);
    return {
      step: this.scrubber.step,
      frame: this.scrubber.frame,
      layer: layers.currentLayer(),
      member: member || null,
      trajectory: trajectory !== "baseline" ? trajectory : null,
      ...(this.tab === "compare" ? compare.pair() : {}),
      show: this.tab === "trajectory" ? unless(this.views.trajectory.frameMode, "x0") : null,
      ...(this.tab === "layers"
        ? { display: unless(layers.mode, "overlay"), scale: unless(layers.scaleMode, "global"), cmap: unless(layers.cmap, "inferno") }
        : {}),
      diff: this.tab === "compare" ? unless(compare.diffScale, "global") : null,
    };
  }

  /** Write the position into the URL, at most a few times a second (browsers throttle history calls). */
  scheduleLocation() {
    if (this.locationTimer !== null || this.disposed) return;
    this.locationTimer = setTimeout(() => {
      this.locationTimer = null;
      if (!this.disposed) this.onLocation(this.tab, this.position());
    }, 200);
  }

  /** The trajectory (baseline, variants, swap sources) and ensemble member shown. */
  renderSelectors() {
    const { trajectory, member } = this.selection;
    const viewable = this.run.viewable();
    const options = viewable.map((t) => `${t.name}|${t.kind}`).join(",");
    if (options !== this.selectOptions) {
      this.selectOptions = options;
      const option = (t) => h("option", { value: t.name }, t.kind === "baseline" || !t.kind ? t.name : `${t.name} (${t.kind.replace("_", " ")})`);
      // Sweep members (possibly hundreds) go under one group per sweep, after the variants.
      fill(this.trajectorySelect, viewable.filter((t) => t.kind !== "sweep_member").map(option),
        this.run.sweepGroups().map(({ sweep, members }) => h("optgroup", { label: `sweep ${sweep}` },
          members.filter((m) => this.run.trajectories.has(m)).map((m) => h("option", { value: m }, m)))));
      this.exportMenu.update(); // its trajectory boxes follow trajectories that arrive after it was opened
    }
    this.trajectorySelect.value = trajectory;
    const members = this.run.members(trajectory);
    const key = `${trajectory}|${members}`;
    if (this.memberSelect.dataset.key !== key) {
      this.memberSelect.dataset.key = key;
      const seeds = this.run.trajectories.get(trajectory)?.seeds ?? [];
      fill(this.memberSelect, Array.from({ length: members }, (_, i) =>
        h("option", { value: i }, seeds[i] !== undefined ? `${i} (seed ${seeds[i]})` : String(i))));
    }
    this.memberSelect.value = String(member);
    this.memberSelect.parentElement.hidden = members < 2;
  }

  renderHeader() {
    const run = this.run;
    const status = this.job ? run.status : "loading";
    this.statusBadge.textContent = status;
    this.statusBadge.className = `badge status-${status}`;
    const { done, total } = run.progress.total ? run.progress : this.job?.progress ?? { done: 0, total: 0 };
    this.progressBar.style.width = total ? `${(100 * done) / total}%` : "0%";
    this.stepCount.textContent = total ? `${done} / ${total} steps` : "";
    this.stepCount.dataset.done = done;
    this.stepCount.dataset.total = total;
    const state = this.stream?.state ?? "closed";
    const labels = { connecting: "connecting…", open: "live", reconnecting: "reconnecting…", ended: "complete", closed: "closed" };
    // A run the service found in its store (reproduce, bench) has no live events: it is read from its directory.
    this.streamState.textContent = this.job?.adopted && state === "ended"
      ? "stored run · read from its run directory"
      : `${labels[state] ?? state} · ${this.eventCount} event${this.eventCount === 1 ? "" : "s"}`;
    this.streamState.dataset.events = this.eventCount;
    this.reconnectButton.hidden = state === "ended";
    this.cancelButton.hidden = run.ended || !this.job;
    this.element.dataset.status = status;
    // The Sweeps tab exists only for runs with sweeps (in the manifest, or in the spec before it).
    const hasSweeps = Object.keys(run.sweeps).length > 0 || (run.spec?.sweeps?.length ?? 0) > 0;
    this.tabButtons.find((b) => b.dataset.tab === "sweeps").hidden = !hasSweeps;
    const warnings = run.warnings;
    if (this.warnings.dataset.key !== warnings.join("\n")) {
      this.warnings.dataset.key = warnings.join("\n");
      fill(this.warnings, warnings.map((w) => h("li", {}, `⚠ ${w}`)));
      this.warnings.hidden = !warnings.length;
    }
  }

  dispose() {
    this.disposed = true;
    cancelAnimationFrame(this.frameRequest);
    clearTimeout(this.manifestTimer);
    clearTimeout(this.locationTimer);
    this.stream?.close();
    this.scrubber.pause();
    this.scrubberBar.dispose();
    for (const view of Object.values(this.views)) view.dispose?.();
    this.cache.dispose();
  }
}
