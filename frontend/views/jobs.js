// The jobs list: status, progress and queue position of each experiment, newest first. Polled
// (quickly while something is queued or running); a click opens the job in the explorer.

import { ApiError, jobs } from "../api.js";
import { ago, fill, h } from "../dom.js";

const ACTIVE = new Set(["queued", "running"]);

export class JobsList {
  constructor(element, { onOpen }) {
    this.element = element;
    this.onOpen = onOpen;
    this.current = null;
    this.timer = null;
    this.list = [];
    this.error = null;
  }

  start() {
    this.refresh();
  }

  setCurrent(jobId) {
    this.current = jobId;
    this.render();
  }

  async refresh() {
    clearTimeout(this.timer);
    try {
      const answer = await jobs.list("?limit=100");
      this.list = answer.jobs;
      this.total = answer.total;
      this.error = null;
    } catch (error) {
      this.error = error instanceof ApiError ? error.detail : String(error);
    }
    this.render();
    const busy = this.list.some((j) => ACTIVE.has(j.status));
    this.timer = setTimeout(() => this.refresh(), busy ? 1000 : 5000);
  }

  async act(event, action, job) {
    event.stopPropagation();
    try {
      if (action === "cancel") await jobs.cancel(job.id);
      else if (window.confirm(`Delete job ${job.id.slice(0, 8)} and its run directory?`)) await jobs.remove(job.id);
    } catch (error) {
      this.error = error.detail ?? String(error);
    }
    this.refresh();
  }

  render() {
    const items = this.list.map((job) => {
      const { done, total } = job.progress ?? { done: 0, total: 0 };
      const pct = total ? Math.round((100 * done) / total) : 0;
      const spec = job.spec ?? {};
      const variants = spec.variants?.length ?? 0;
      return h(
        "li",
        {
          class: `job${job.id === this.current ? " current" : ""}`,
          dataset: { job: job.id, status: job.status },
          tabIndex: 0,
          onclick: () => this.onOpen(job.id),
          onkeydown: (e) => e.key === "Enter" && this.onOpen(job.id),
        },
        h("div", { class: "job-line" },
          h("span", { class: `badge status-${job.status}` }, job.status),
          h("span", { class: "job-model" }, job.model),
          job.position !== null && job.position !== undefined
            ? h("span", { class: "queue-pos", title: "place in the model's queue" }, `queue #${job.position + 1}`)
            : null,
          h("span", { class: "job-time muted" }, ago(job.created))),
        h("div", { class: "job-prompt", title: spec.prompt ?? "" }, spec.prompt || "(no prompt)"),
        h("div", { class: "job-line" },
          h("div", { class: "progress small", title: total ? `${done} of ${total} steps done over all trajectories` : "" },
            h("div", { class: "bar", style: { width: `${pct}%` } })),
          h("span", { class: "muted job-size" }, `${spec.steps ?? "?"} steps${variants ? ` · ${variants} variant${variants > 1 ? "s" : ""}` : ""}`),
          ACTIVE.has(job.status)
            ? h("button", { class: "icon", title: "cancel the job", onclick: (e) => this.act(e, "cancel", job) }, "cancel")
            : h("button", { class: "icon", title: "delete the job and its run", onclick: (e) => this.act(e, "delete", job) }, "delete")),
        job.error && job.status !== "cancelled" ? h("div", { class: "job-error" }, job.error) : null,
      );
    });
    fill(
      this.element,
      this.error ? h("li", { class: "error" }, this.error) : null,
      items.length ? items : h("li", { class: "muted empty" }, "No jobs yet: submit an experiment."),
    );
  }

  dispose() {
    clearTimeout(this.timer);
  }
}
