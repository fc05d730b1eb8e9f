// The explorer's entry point: routes (#/new, #/jobs/<id>/<tab>), the jobs sidebar, service
// health and the token dialog.

import { getJSON, setTokenPrompt } from "./api.js";
import { fill, h } from "./dom.js";
import { jobHash, parseRoute } from "./position.js";
import { Explorer } from "./views/explorer.js";
import { JobsList } from "./views/jobs.js";
import { SubmitView } from "./views/submit.js";

const main = document.getElementById("main");
const jobsList = new JobsList(document.getElementById("jobs"), { onOpen: (id) => navigate(`#/jobs/${id}`) });
let current = null; // the mounted view: an Explorer or a SubmitView

function navigate(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

/** `?array_budget_mb=N` in the page URL: megabytes of arrays an open run keeps in memory. */
function arrayBudgetFromUrl() {
  const mb = Number(new URLSearchParams(location.search).get("array_budget_mb"));
  return Number.isFinite(mb) && mb > 0 ? mb * 1024 * 1024 : undefined;
}

function route() {
  const where = parseRoute(location.hash);
  if (where.page === "job" && current instanceof Explorer && current.jobId === where.id) {
    if (current.tab !== where.tab) current.showTab(where.tab, false);
    current.goTo(where.position); // a position typed or pasted into the URL
    return;
  }
  current?.dispose?.();
  current = null;
  main.scrollTop = 0; // another job or the form starts at its top
  if (where.page === "job") {
    const explorer = new Explorer(where.id, {
      tab: where.tab,
      position: where.position,
      arrayBudget: arrayBudgetFromUrl(),
      // The URL holds run, tab and position, so the address bar can be shared (no history entry per step).
      onLocation: (tab, position) => history.replaceState(null, "", `${location.search}${jobHash(where.id, tab, position)}`),
      onJobChange: () => jobsList.refresh(),
    });
    current = explorer;
    fill(main, explorer.element);
    jobsList.setCurrent(where.id);
    explorer.start();
  } else {
    const view = new SubmitView({
      onSubmitted: (job) => {
        jobsList.refresh();
        navigate(`#/jobs/${job.id}`);
      },
    });
    current = view;
    fill(main, view.element);
    jobsList.setCurrent(null);
    view.start();
  }
  document.body.dataset.page = where.page;
}

async function pollHealth() {
  const badge = document.getElementById("health");
  try {
    const health = await getJSON("/api/health");
    const queues = Object.entries(health.queues ?? {});
    const waiting = health.waiting_for ?? [];
    badge.className = queues.length && health.ready !== false ? "health ok" : "health warn";
    const served = queues.map(([, q]) => `${q.model}: ${q.workers} worker${q.workers > 1 ? "s" : ""}${q.queued ? `, ${q.queued} queued` : ""}`);
    // A worker is listed once it has loaded its model; until then its model waits.
    const starting = waiting.length ? [`waiting for a ${waiting.join(", ")} worker to load its model`] : [];
    badge.textContent = [...served, ...starting].join(" · ") || "no workers running";
    badge.dataset.ready = String(health.ready !== false);
  } catch (error) {
    badge.className = "health bad";
    badge.textContent = error.detail ?? "service unreachable";
  }
  setTimeout(pollHealth, badge.dataset.ready === "false" ? 1000 : 10000);
}

function tokenDialog() {
  const dialog = document.getElementById("token-dialog");
  const field = document.getElementById("token-input");
  return new Promise((resolve) => {
    field.value = "";
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok" ? field.value : null), { once: true });
    dialog.showModal();
  });
}

setTokenPrompt(tokenDialog);
document.getElementById("new-job").addEventListener("click", () => navigate("#/new"));
// The skip link moves the focus past the header and the jobs list (its #main would be read as a route).
document.getElementById("skip-link").addEventListener("click", (event) => {
  event.preventDefault();
  main.focus();
});
window.addEventListener("hashchange", route);
route();
jobsList.start();
pollHealth();
// Exposed for debugging from the console and for the browser tests.
window.stepscope = { get view() { return current; }, h };
