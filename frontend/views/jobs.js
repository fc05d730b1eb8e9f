// The jobs list: status, progress and queue position of each experiment, newest first. Polled
// (quickly while something is queued or running); a click opens the job in the explorer.
// From the keyboard the list is one tab stop: ↑/↓ (Home/End) move between jobs, Enter opens one, Delete
// cancels it while it runs, or deletes it once it has ended.

import { ApiError, jobs } from "../api.js";
import { QUEUED } from "../contract/events.js";
import { CANCELLED, RUNNING } from "../contract/run_format.js";
import { ago, fill, h } from "../dom.js";
import { jobTitle } from "../jobtitle.js";

const ACTIVE = new Set([QUEUED, RUNNING]);
const MOVES = { ArrowDown: 1, ArrowUp: -1, Home: -Infinity, End: Infinity };

export class JobsList {
  constructor(element, { onOpen }) {
    this.element = element;
    this.onOpen = onOpen;
    this.current = null;
    this.timer = null;
    this.list = [];
    this.error = null;
    this.focusJob = null; // the job whose link takes the list's one tab stop
    element.addEventListener("keydown", (event) => this.key(event));
    element.addEventListener("focusin", (event) => {
      const id = event.target.closest?.("li.job")?.dataset.job;
      if (id) this.setFocusJob(id);
    });
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

  async act(event, job) {
    event.stopPropagation();
    event.preventDefault();
    try {
      if (ACTIVE.has(job.status)) await jobs.cancel(job.id);
      else if (window.confirm(`Delete job ${job.id.slice(0, 8)} and its run directory?`)) await jobs.remove(job.id);
    } catch (error) {
      this.error = error.detail ?? String(error);
    }
    this.refresh();
  }

  links() {
    return [...this.element.querySelectorAll("a.job-link")];
  }

  setFocusJob(id) {
    this.focusJob = id;
    for (const link of this.links()) link.tabIndex = link.dataset.job === id ? 0 : -1;
  }

  key(event) {
    const links = this.links();
    const at = links.indexOf(document.activeElement);
    if (at < 0 || event.altKey || event.ctrlKey || event.metaKey) return;
    if (event.key in MOVES) {
      const to = Math.max(0, Math.min(links.length - 1, at + MOVES[event.key]));
      this.setFocusJob(links[to].dataset.job);
      links[to].focus();
    } else if (event.key === "Delete") {
      const job = this.list.find((j) => j.id === links[at].dataset.job);
      if (job) this.act(event, job);
    } else {
      return;
    }
    // The list's keys, not the explorer's (↑/↓ would also move its frame).
    event.preventDefault();
    event.stopPropagation();
  }

  render() {
    const focused = this.element.contains(document.activeElement) ? document.activeElement.closest("li.job")?.dataset.job : null;
    const ids = this.list.map((j) => j.id);
    if (!ids.includes(this.focusJob)) this.focusJob = ids.includes(this.current) ? this.current : ids[0] ?? null;
    const items = this.list.map((job) => {
      const { done, total } = job.progress ?? { done: 0, total: 0 };
      const pct = total ? Math.round((100 * done) / total) : 0;
      const spec = job.spec ?? {};
      const named = jobTitle(job);
      const active = ACTIVE.has(job.status);
      return h(
        "li",
        {
          class: `job${job.id === this.current ? " current" : ""}`,
          dataset: { job: job.id, status: job.status },
          // The whole card opens the job; its link and button do their own thing.
          onclick: (e) => !e.target.closest("a, button") && this.onOpen(job.id),
        },
        h("a", {
          class: "job-link",
          href: `#/jobs/${encodeURIComponent(job.id)}`,
          tabIndex: job.id === this.focusJob ? 0 : -1,
          dataset: { job: job.id },
          "aria-current": job.id === this.current ? "page" : null,
          "aria-keyshortcuts": "Delete",
        },
        h("span", { class: "job-line" },
          h("span", { class: `badge status-${job.status}` }, job.status),
          h("span", { class: "job-model" }, job.model),
          job.position !== null && job.position !== undefined
            ? h("span", { class: "queue-pos", title: "place in the model's queue" }, `queue #${job.position + 1}`)
            : null,
          h("span", { class: "job-time muted" }, ago(job.created))),
        h("span", { class: "job-prompt", title: spec.prompt ?? "" }, named.title),
        h("span", { class: "job-subtitle muted", title: job.id }, named.subtitle)),
        h("div", { class: "job-line" },
          h("div", { class: "progress small", title: total ? `${done} of ${total} steps done over all trajectories` : "" },
            h("div", { class: "bar", style: { width: `${pct}%` } })),
          h("span", { class: "muted job-size" }, `${spec.steps ?? "?"} steps`),
          // Reached from the keyboard with Delete on the job (one tab stop per list, not two per job).
          h("button", {
            class: "icon",
            tabIndex: -1,
            title: active ? "cancel the job" : "delete the job and its run",
            onclick: (e) => this.act(e, job),
          }, active ? "cancel" : "delete")),
        job.error && job.status !== CANCELLED ? h("div", { class: "job-error" }, job.error) : null,
      );
    });
    fill(
      this.element,
      this.error ? h("li", { class: "error" }, this.error) : null,
      items.length ? items : h("li", { class: "muted empty" }, "No jobs yet: submit an experiment."),
    );
    // A refresh replaces the items: the focused job keeps the focus.
    if (focused) this.element.querySelector(`a.job-link[data-job="${CSS.escape(focused)}"]`)?.focus({ preventScroll: true });
  }

  dispose() {
    clearTimeout(this.timer);
  }
}
