// From the submit form's raw values to an ExperimentSpec (backend/stepscope/spec.py).
// The API is the authority on validity; here we only turn text into JSON and say which input
// a list that is not a list came from, with the same dotted field paths the API uses.

export class FieldError extends Error {
  constructor(field, message) {
    super(`${field}: ${message}`);
    this.field = field;
    this.detail = `${field}: ${message}`;
  }
}

/** "3, 5-7" → [3, 5, 6, 7]; empty text → null. Throws FieldError for anything else. */
export function parseIndexList(text, field, { max = 100000 } = {}) {
  const trimmed = String(text ?? "").trim();
  if (trimmed === "") return null;
  const out = [];
  for (const part of trimmed.split(/[\s,]+/).filter(Boolean)) {
    const range = /^(\d+)\s*[-–]\s*(\d+)$/.exec(part);
    if (range) {
      const a = Number(range[1]);
      const b = Number(range[2]);
      if (b < a) throw new FieldError(field, `range ${part} runs backwards`);
      if (b - a > max) throw new FieldError(field, `range ${part} is too long`);
      for (let i = a; i <= b; i++) out.push(i);
    } else if (/^\d+$/.test(part)) {
      out.push(Number(part));
    } else {
      throw new FieldError(field, `'${part}' is not an index or a range like 3-5`);
    }
  }
  return out;
}

/** A number input's text → number, or undefined when empty (the API's default applies). */
function numberOrUndefined(text) {
  const trimmed = String(text ?? "").trim();
  return trimmed === "" ? undefined : Number(trimmed);
}

function numberOrNull(text) {
  const value = numberOrUndefined(text);
  return value === undefined ? null : value;
}

// The fields of each intervention kind, in form order. `type`: list (indices), number, int,
// bool, text, passes; `optional` lists and numbers become null when left empty.
export const INTERVENTIONS = {
  noise_at_step: {
    label: "Noise at step",
    help: "Gaussian noise into every frame of the latent entering these steps",
    fields: [
      { key: "steps", label: "steps", type: "list", placeholder: "e.g. 5 or 3-5" },
      { key: "strength", label: "strength", type: "number", initial: "0.5", step: "0.05" },
      { key: "relative", label: "relative to latent std", type: "bool", initial: true },
      { key: "seed", label: "noise seed", type: "int", initial: "0" },
    ],
  },
  noise_at_frame: {
    label: "Noise at frame",
    help: "Gaussian noise into chosen latent frames at every step (or the given steps)",
    fields: [
      { key: "frames", label: "latent frames", type: "list", placeholder: "e.g. 2" },
      { key: "steps", label: "steps (empty: all)", type: "list", optional: true },
      { key: "strength", label: "strength", type: "number", initial: "0.5", step: "0.05" },
      { key: "relative", label: "relative to latent std", type: "bool", initial: true },
      { key: "seed", label: "noise seed", type: "int", initial: "0" },
    ],
  },
  layer_swap: {
    label: "Layer swap",
    help: "Replace block outputs at these layers with those of a second run (B)",
    fields: [
      { key: "layers", label: "layers", type: "list", placeholder: "e.g. 20-21" },
      { key: "steps", label: "steps (empty: all)", type: "list", optional: true },
      { key: "frames", label: "latent frames (empty: all)", type: "list", optional: true },
      { key: "passes", label: "CFG passes", type: "passes", initial: "cond" },
      { key: "source.prompt", label: "B prompt (empty: same)", type: "text", optional: true },
      { key: "source.seed", label: "B seed (empty: same)", type: "int", optional: true },
    ],
  },
  seed_ensemble: {
    label: "Seed ensemble",
    help: "Run the seeds as one batch, average hidden states at the layers and steps",
    fields: [
      { key: "seeds", label: "seeds", type: "list", initial: "0, 1, 2" },
      { key: "layers", label: "layers (empty: middle half)", type: "list", optional: true },
      { key: "steps", label: "steps", type: "list", initial: "0" },
      { key: "passes", label: "CFG passes", type: "passes", initial: "both" },
    ],
  },
  guidance: {
    label: "Guidance",
    help: "Change classifier-free guidance (1 or less turns CFG off)",
    fields: [
      { key: "scale", label: "scale", type: "number", initial: "1.0", step: "0.5" },
      { key: "scale_2", label: "low-noise expert scale", type: "number", optional: true, step: "0.5" },
    ],
  },
};

function setPath(target, dotted, value) {
  const keys = dotted.split(".");
  let node = target;
  for (const key of keys.slice(0, -1)) node = node[key] ??= {};
  node[keys[keys.length - 1]] = value;
}

/** One intervention's raw values ({key: text|bool}) → its JSON, fields named from `prefix`. */
export function buildIntervention(kind, raw, prefix) {
  const schema = INTERVENTIONS[kind];
  if (!schema) throw new FieldError(`${prefix}.kind`, `unknown intervention ${kind}`);
  const out = { kind };
  for (const field of schema.fields) {
    const text = raw[field.key];
    const path = `${prefix}.${field.key}`;
    let value;
    if (field.type === "list") value = parseIndexList(text, path);
    else if (field.type === "number" || field.type === "int") value = numberOrUndefined(text);
    else if (field.type === "bool") value = Boolean(text);
    else if (field.type === "text") value = String(text ?? "").trim() === "" ? undefined : String(text);
    else value = text;
    if (value === null || value === undefined) {
      if (field.optional) continue; // the API's default (null: all / same as baseline)
      if (field.type === "list") value = [];
      else continue; // a missing required number: let the API name it
    }
    setPath(out, field.key, value);
  }
  if (kind === "layer_swap") out.source ??= {};
  return out;
}

/**
 * The spec from the form's raw values:
 * {model, prompt, negative_prompt, seed, steps, guidance, guidance_2, height, width, frames,
 *  probes: {every, layers, passes, decode_steps, final_decode},
 *  variants: [{name, interventions: [{kind, ...raw}]}]}
 */
export function buildSpec(raw) {
  const spec = { model: raw.model, prompt: raw.prompt ?? "", negative_prompt: raw.negative_prompt ?? "" };
  for (const key of ["seed", "steps", "guidance", "height", "width", "frames"]) {
    const value = numberOrUndefined(raw[key]);
    if (value !== undefined) spec[key] = value;
  }
  const guidance2 = numberOrNull(raw.guidance_2);
  if (guidance2 !== null) spec.guidance_2 = guidance2;
  const probes = raw.probes ?? {};
  const layersText = String(probes.layers ?? "all").trim().toLowerCase();
  spec.probes = {
    layers: layersText === "" || layersText === "all" || layersText === "none"
      ? layersText || "all"
      : parseIndexList(layersText, "probes.layers"),
    passes: probes.passes ?? "cond",
    final_decode: probes.final_decode ?? true,
  };
  const every = numberOrUndefined(probes.every);
  if (every !== undefined) spec.probes.every = every;
  const decodeSteps = parseIndexList(probes.decode_steps, "probes.decode_steps");
  if (decodeSteps) spec.probes.decode_steps = decodeSteps;
  spec.variants = (raw.variants ?? []).map((variant, vi) => ({
    name: String(variant.name ?? "").trim(),
    interventions: variant.interventions.map((iv, ii) =>
      buildIntervention(iv.kind, iv, `variants.${vi}.interventions.${ii}`),
    ),
  }));
  return spec;
}

/**
 * The input an error's dotted `field` belongs to: the longest prefix of it among `known`
 * field names (e.g. "variants.0.interventions.0" when the error is about its whole list).
 */
export function fieldForError(field, known) {
  if (!field) return null;
  const parts = field.split(".");
  for (let n = parts.length; n > 0; n--) {
    const candidate = parts.slice(0, n).join(".");
    if (known.has(candidate)) return candidate;
  }
  return null;
}

/** The message to show next to the input: the API's detail without its leading "field: ". */
export function messageFor(detail, field) {
  const prefix = `${field}: `;
  return field && detail.startsWith(prefix) ? detail.slice(prefix.length) : detail;
}

/** Steps the interventions act at, for markers on curves (no step list: every step, no marker). */
export function interventionSteps(interventions = []) {
  const marks = [];
  for (const iv of interventions) {
    if (Array.isArray(iv.steps)) for (const s of iv.steps) marks.push({ step: s, kind: iv.kind });
  }
  return marks;
}

/** A one-line human summary of one intervention. */
export function describeIntervention(iv) {
  const list = (xs) => (xs ? xs.join(", ") : "all");
  switch (iv.kind) {
    case "noise_at_step":
      return `noise ×${iv.strength} at step ${list(iv.steps)}`;
    case "noise_at_frame":
      return `noise ×${iv.strength} in latent frame ${list(iv.frames)} at steps ${list(iv.steps)}`;
    case "layer_swap":
      return `swap layers ${list(iv.layers)} at steps ${list(iv.steps)} from B`;
    case "seed_ensemble":
      return `ensemble of seeds ${list(iv.seeds)}, layers ${iv.layers ? list(iv.layers) : "middle half"}, steps ${list(iv.steps)}`;
    case "guidance":
      return `guidance ${iv.scale}${iv.scale_2 !== null && iv.scale_2 !== undefined ? ` / ${iv.scale_2}` : ""}`;
    default:
      return iv.kind;
  }
}
