// What tells one job from another in the jobs list and the explorer's header: a task-scored run by its task
// (family, difficulty, seed), any other by its prompt; then what it compares (its variants and sweeps) and its id.

const SERVICE_ID = /^[0-9a-f]{32}$/; // ids the service makes (uuid4 hex); named ids (reproduce's) are kept whole

/**
 * The id as shown: the first 8 characters of an id the service made, a named id (e.g. "maze-3-noise") whole.
 * @param {string} id
 */
export function shortId(id) {
  return SERVICE_ID.test(id) ? id.slice(0, 8) : id;
}

/**
 * The title and subtitle of a job from its spec: {title, subtitle, id, what}.
 * @param {{id: string, spec?: object}} job
 */
export function jobTitle(job) {
  const spec = job.spec ?? {};
  const task = spec.task;
  const title = task
    ? `${task.family} · difficulty ${task.difficulty} · seed ${task.seed}`
    : spec.prompt || "(no prompt)";
  const variants = (spec.variants ?? []).map((v) => v.name);
  const sweeps = (spec.sweeps ?? []).map((s) => s.name);
  const what = [
    variants.length ? `variant${variants.length > 1 ? "s" : ""} ${variants.join(", ")}` : null,
    sweeps.length ? `sweep${sweeps.length > 1 ? "s" : ""} ${sweeps.join(", ")}` : null,
  ].filter(Boolean).join(" · ") || "baseline only";
  const id = shortId(job.id);
  return { title, what, id, subtitle: `${id} · ${what}` };
}
