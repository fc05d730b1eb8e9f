// A position in the explorer as the query of its URL (#/jobs/<id>/<tab>?step=7&frame=2&layer=20),
// so that a view can be shared: run and tab in the path, the rest in the query, with how the views show it.

const INTEGER_KEYS = ["step", "frame", "layer", "member"];
const NAME_KEYS = ["trajectory", "left", "right"];
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,59}$/; // sweep members are "<sweep>.NNN"
// How the views show the position: the trajectory view's main frame, the heatmap's display, colour scale and
// colour map, the comparison's difference scale (each key's allowed values).
export const CHOICE_KEYS = {
  show: ["x0", "change"],
  display: ["overlay", "alone"],
  scale: ["global", "layer", "step"],
  cmap: ["inferno", "viridis"],
  diff: ["global", "step"],
};

/** "step=7&frame=2&trajectory=noise3" → {step: 7, frame: 2, trajectory: "noise3"}; bad values are left out. */
export function parsePosition(query) {
  const params = new URLSearchParams(query ?? "");
  const out = {};
  for (const key of INTEGER_KEYS) {
    const text = params.get(key);
    if (text !== null && /^\d+$/.test(text)) out[key] = Number(text);
  }
  for (const key of NAME_KEYS) {
    const text = params.get(key);
    if (text !== null && NAME.test(text)) out[key] = text;
  }
  for (const [key, values] of Object.entries(CHOICE_KEYS)) {
    const text = params.get(key);
    if (values.includes(text)) out[key] = text;
  }
  return out;
}

/** The query for a position (keys with null/undefined values left out), in a fixed key order. */
export function positionQuery(position) {
  const params = new URLSearchParams();
  for (const key of [...INTEGER_KEYS, ...NAME_KEYS, ...Object.keys(CHOICE_KEYS)]) {
    const value = position[key];
    if (value !== null && value !== undefined && value !== "") params.set(key, String(value));
  }
  return params.toString();
}

/** "#/jobs/<id>/<tab>?query" → {page: "job", id, tab, position}; "#/new" or nothing → {page: "new"}. */
export function parseRoute(hash) {
  const [path, query] = String(hash ?? "").replace(/^#\/?/, "").split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  if (parts[0] === "jobs" && parts[1]) return { page: "job", id: parts[1], tab: parts[2] ?? "trajectory", position: parsePosition(query) };
  return { page: "new" };
}

/** The hash of a job's tab at a position. */
export function jobHash(id, tab, position = {}) {
  const query = positionQuery(position);
  return `#/jobs/${encodeURIComponent(id)}/${tab}${query ? `?${query}` : ""}`;
}
