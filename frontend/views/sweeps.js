// Sweep view: for each sweep of the run, its summary curve (final 1 − CKA of x̂₀ and of hidden
// states, final relative L2, task score) against the swept parameter, and a table of members;
// picking a point or a row opens that member in the Compare view against the baseline.

import { formatNumber, lineChart, niceTicks } from "../charts.js";
import { fill, h } from "../dom.js";
import { describeIntervention, sweepAxisLabel } from "../interventions.js";
import { sweepCurves } from "../rundata.js";
import { RunView } from "./runview.js";

const COLOURS = {
  cka_x0_distance_final: "#ffb454",
  hidden_state_cka_distance_final: "#c792ea",
  final_relative_l2: "#5ec8ff",
  score: "#7ee787",
};

export class SweepsView extends RunView {
  constructor(explorer) {
    super(explorer);
    this.status = h("p", { class: "muted", id: "sweeps-status" });
    this.list = h("div", { class: "sweep-list" });
    this.element = h("div", { class: "view sweeps-view" }, this.status, this.list);
    this.key = null;
  }

  /** Open a member in the Compare view against the baseline. */
  openMember(member) {
    this.explorer.views.compare.choose({ left: "baseline", right: member });
    this.explorer.showTab("compare");
  }

  render() {
    const sweeps = Object.entries(this.run.sweeps);
    // Redraw only when a curve or a member's status changed (the position does not move these charts).
    const key = JSON.stringify(sweeps) + [...this.run.trajectories.values()].map((t) => t.status).join();
    if (key === this.key) return;
    this.key = key;
    this.status.textContent = sweeps.length
      ? "Each point is one member compared with the baseline at its last captured step; click a point or a row to compare that member."
      : this.run.spec?.sweeps?.length ? "Waiting for the sweep to start…" : "This run has no sweeps.";
    fill(this.list, sweeps.map(([name, sweep]) => this.renderSweep(name, sweep)));
  }

  renderSweep(name, sweep) {
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.classList.add("chart", "sweep-chart");
    svg.style.height = "240px";
    svg.dataset.sweep = name;
    const box = h("section", { class: "panel-box sweep", "data-sweep": name },
      h("h3", {}, `${name} · ${describeIntervention({ ...sweep.intervention, [sweep.over]: sweep.over === "strength" ? "…" : ["…"] })} · swept over ${sweep.over}`), svg);
    const values = sweep.values ?? [];
    const all = sweepCurves(sweep);
    const l2 = all.find((s) => s.key === "final_relative_l2");
    const left = all.filter((s) => s !== l2);
    const finite = (series) => series.flatMap((s) => s.points.map((p) => p.y)).filter((v) => Number.isFinite(v));
    const leftHi = Math.max(1e-3, ...finite(left)) * 1.1;
    const l2Hi = Math.max(1e-3, ...finite([l2])) * 1.1;
    const lo = Math.min(...values);
    const hi = Math.max(...values);
    const pad = hi > lo ? (hi - lo) * 0.05 : 0.5;
    const whole = sweep.over !== "strength";
    // The chart is drawn once it is in the page (it measures its width).
    requestAnimationFrame(() => {
      lineChart(svg, {
        x: {
          domain: [lo - pad, hi + pad],
          label: sweepAxisLabel(sweep),
          ticks: values.length <= 12 ? values : niceTicks(lo, hi, 8).filter((t) => !whole || Number.isInteger(t)),
        },
        y: { domain: [0, leftHi], label: "1 − CKA" },
        y2: { domain: [0, l2Hi], label: "relative L2" },
        series: [
          ...left.map((s) => ({ name: s.name, color: COLOURS[s.key], points: s.points })),
          { name: l2.name, color: COLOURS[l2.key], axis: 2, dash: "5 3", points: l2.points },
        ],
        empty: values.length ? null : "no members",
        onPick: (x) => {
          let best = 0;
          values.forEach((v, i) => { if (Math.abs(v - x) < Math.abs(values[best] - x)) best = i; });
          if (sweep.members?.[best]) this.openMember(sweep.members[best]);
        },
      });
      for (const g of svg.querySelectorAll("g.points")) g.dataset.key = all.find((s) => s.name === g.dataset.series)?.key ?? "";
    });
    const rows = values.map((v, i) => {
      const member = sweep.members?.[i];
      const traj = member ? this.run.trajectories.get(member) : null;
      const cell = (s) => h("td", { class: "num" }, Number.isFinite(s.points[i].y) ? formatNumber(s.points[i].y) : "–");
      return h("tr", { "data-member": member ?? "" },
        h("td", {}, h("button", { class: "small", onclick: () => member && this.openMember(member), disabled: !member }, member ?? "–")),
        h("td", { class: "num" }, String(v)),
        h("td", { class: "num" }, String(sweep.start_steps?.[i] ?? "–")),
        all.map(cell),
        h("td", { class: "muted" }, traj?.status ?? "queued"));
    });
    box.append(h("table", { class: "sweep-table", style: { borderSpacing: "14px 2px", marginLeft: "-14px" } },
      h("thead", {}, h("tr", {},
        h("th", {}, "member"), h("th", {}, sweepAxisLabel(sweep)), h("th", {}, "starts at step"),
        all.map((s) => h("th", {}, s.name)), h("th", {}, "status"))),
      h("tbody", {}, rows)));
    return box;
  }
}
