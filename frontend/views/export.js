// Export menu: the run bundle (zip of the run directory) and the trajectory as an animated grid
// (GIF or MP4, one animation frame per captured step; rows = chosen trajectories). The files
// are made by the API (backend/stepscope/api/routes/exports.py); these are plain download links.

import { jobs } from "../api.js";
import { fill, h } from "../dom.js";

export class ExportMenu {
  constructor(explorer) {
    this.explorer = explorer;
    this.chosen = new Set(["baseline"]);
    this.scale = "0";
    this.fps = "4";
    this.bundle = h("a", { id: "export-bundle", class: "button", download: "" }, "Run bundle (.zip)");
    this.gif = h("a", { id: "export-gif", class: "button", download: "" }, "GIF");
    this.mp4 = h("a", { id: "export-mp4", class: "button", download: "" }, "MP4");
    this.trajectoryBoxes = h("div", { class: "checks", id: "export-trajectories" });
    this.scaleSelect = h("select", { id: "export-scale", onchange: () => {
      this.scale = this.scaleSelect.value;
      this.update();
    } },
      [["0", "auto"], ["1", "1×"], ["2", "2×"], ["4", "4×"], ["8", "8×"], ["16", "16×"]].map(([v, l]) => h("option", { value: v }, l)));
    this.fpsSelect = h("select", { id: "export-fps", onchange: () => {
      this.fps = this.fpsSelect.value;
      this.update();
    } },
      ["1", "2", "4", "8", "12"].map((v) => h("option", { value: v, selected: v === this.fps }, `${v} fps`)));
    this.element = h(
      "details",
      { class: "export-menu", id: "export-menu", ontoggle: () => this.update() },
      h("summary", { class: "button" }, "Export ▾"),
      h("div", { class: "menu" },
        h("p", { class: "menu-title" }, "Run directory"),
        this.bundle,
        h("p", { class: "menu-title" }, "Trajectory grid animation (one frame per step)"),
        this.trajectoryBoxes,
        h("div", { class: "menu-row" }, h("label", {}, "Scale ", this.scaleSelect), h("label", {}, "Speed ", this.fpsSelect)),
        h("div", { class: "menu-row" }, this.gif, this.mp4)),
    );
  }

  update() {
    const id = this.explorer.jobId;
    const names = this.explorer.run.viewable().filter((t) => t.kind !== "swap_source").map((t) => t.name);
    if (names.join(",") !== this.namesKey) {
      this.namesKey = names.join(",");
      fill(this.trajectoryBoxes, names.map((name) => h("label", { class: "check" },
        h("input", { type: "checkbox", value: name, checked: this.chosen.has(name), onchange: (e) => {
          if (e.target.checked) this.chosen.add(name);
          else this.chosen.delete(name);
          this.update();
        } }), name)));
    }
    const trajectories = names.filter((n) => this.chosen.has(n));
    const params = { trajectories: (trajectories.length ? trajectories : ["baseline"]).join(","), fps: this.fps };
    if (this.scale !== "0") params.scale = this.scale;
    this.bundle.href = jobs.exportUrl(id, "bundle.zip");
    this.gif.href = jobs.exportUrl(id, "grid.gif", params);
    this.mp4.href = jobs.exportUrl(id, "grid.mp4", params);
  }
}
