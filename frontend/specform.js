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

/**
 * @typedef {object} FormField One input of an intervention.
 * @property {string} key dotted path inside the intervention ("strength", "source.seed")
 * @property {string} label
 * @property {"list"|"int"|"number"|"bool"|"text"|"choice"} type
 * @property {boolean} optional left out of the spec when empty (the API's default applies)
 * @property {string|boolean|undefined} initial the input's starting value
 * @property {string} [placeholder]
 * @property {string[]} [options] the choices of a "choice" field
 * @property {string} [step] a number input's step
 * @property {boolean} [requiredParent] the field sits in a required object, sent even when empty
 *
 * @typedef {object} InterventionForm
 * @property {string} label
 * @property {string} help
 * @property {FormField[]} fields
 *
 * @typedef {Object<string, InterventionForm>} InterventionForms keyed by intervention kind
 */

function resolve(schema, node) {
  const ref = node?.$ref;
  return ref ? schema.$defs[ref.split("/").pop()] : node;
}

/** A property's schema without its `null` alternative, and whether null was allowed. */
function nonNull(schema, prop) {
  const options = prop.anyOf?.filter((o) => o.type !== "null");
  if (options && options.length === 1) return { node: resolve(schema, options[0]), nullable: true };
  return { node: resolve(schema, prop), nullable: false };
}

function display(value) {
  return Array.isArray(value) ? value.join(", ") : String(value);
}

/**
 * @typedef {object} FieldBounds What the spec's JSON Schema says of one field.
 * @property {string|undefined} type the JSON type ("integer", "number", "string", "boolean", "array"),
 *   undefined for a field that is one of several types (probes.layers: "all", "none" or a list)
 * @property {number|undefined} min
 * @property {number|undefined} max
 * @property {*} default the API's value when the field is left out (null: none; undefined: computed)
 * @property {number|string|undefined} step a number input's step: `multipleOf`, 1 for integers, "any" for numbers
 * @property {boolean} nullable null is allowed
 * @property {string[]} [options] an enum's choices
 */

/**
 * A field of the spec by dotted path ("steps", "probes.every", "task.seed"): its type, bounds, default
 * and choices, read from the JSON Schema as pydantic v2 writes it (nested models are `$ref`s into
 * `$defs`, optional ones `anyOf` [model, null]). Throws for a path the schema does not have, so a
 * field renamed in spec.py breaks the form loudly instead of sending a name the API refuses.
 * Integer bounds beyond JavaScript's exact integers (the seed's 2⁶³ − 1) become the largest exact one:
 * the form cannot send a larger integer exactly.
 * @param {object} schema the ExperimentSpec's JSON Schema (GET /api/schema/spec)
 * @param {string} path
 * @returns {FieldBounds}
 */
export function fieldBounds(schema, path) {
  let parent = schema;
  let prop;
  const names = path.split(".");
  names.forEach((name, i) => {
    prop = parent.properties?.[name];
    if (!prop) throw new Error(`the spec's schema has no field ${names.slice(0, i + 1).join(".")}`);
    if (i < names.length - 1) parent = nonNull(schema, prop).node;
  });
  const { node, nullable } = nonNull(schema, prop);
  const type = node.type;
  const exact = (n) => (type === "integer" ? Math.max(-Number.MAX_SAFE_INTEGER, Math.min(Number.MAX_SAFE_INTEGER, n)) : n);
  let min = node.minimum;
  let max = node.maximum;
  // An exclusive bound of an integer is the next integer in.
  if (min === undefined && node.exclusiveMinimum !== undefined && type === "integer") min = node.exclusiveMinimum + 1;
  if (max === undefined && node.exclusiveMaximum !== undefined && type === "integer") max = node.exclusiveMaximum - 1;
  /** @type {FieldBounds} */
  const bounds = {
    type,
    min: min === undefined ? undefined : exact(min),
    max: max === undefined ? undefined : exact(max),
    default: prop.default,
    step: node.multipleOf ?? (type === "integer" ? 1 : type === "number" ? "any" : undefined),
    nullable,
  };
  if (node.enum) bounds.options = node.enum;
  return bounds;
}

function formField(key, title, prop, inner, required) {
  const type = inner.enum ? "choice"
    : inner.type === "array" ? "list"
    : inner.type === "integer" ? "int"
    : inner.type === "number" ? "number"
    : inner.type === "boolean" ? "bool"
    : "text";
  const example = prop.examples?.[0];
  const optional = !required;
  /** @type {FormField} */
  const field = { key, label: title ?? key, type, optional, initial: undefined };
  if (prop.default !== undefined && prop.default !== null) {
    field.initial = type === "bool" ? Boolean(prop.default) : display(prop.default);
  } else if (example !== undefined && type !== "list") {
    field.initial = display(example); // a number to start from; index lists depend on the model
  }
  if (example !== undefined) field.placeholder = `e.g. ${display(example)}`;
  if (type === "choice") field.options = inner.enum;
  if (type === "number") field.step = "any";
  return field;
}

/**
 * The submit form's interventions, built from the spec's JSON Schema (GET /api/schema/spec), so
 * the list of interventions and their fields live once, in backend/stepscope/spec.py. Nested
 * objects (a layer swap's run B) become dotted keys; image fields (contentMediaType image/*) are
 * left to uploads.
 * @param {object} schema the ExperimentSpec's JSON Schema
 * @returns {InterventionForms}
 */
export function interventionForms(schema) {
  const union = schema.$defs.Variant.properties.interventions.items;
  /** @type {InterventionForms} */
  const forms = {};
  for (const option of union.oneOf) {
    const model = resolve(schema, option);
    const kind = model.properties.kind.const;
    const fields = [];
    const collect = (node, prefix, parentRequired) => {
      const required = new Set(node.required ?? []);
      for (const [name, prop] of Object.entries(node.properties)) {
        if (name === "kind" && !prefix) continue;
        const { node: inner, nullable } = nonNull(schema, prop);
        if (inner.contentMediaType?.startsWith("image/") || prop.contentMediaType?.startsWith("image/")) continue;
        const key = prefix ? `${prefix}.${name}` : name;
        if (inner.type === "object" && inner.properties) {
          collect(inner, key, required.has(name));
        } else {
          const field = formField(key, prop.title ?? inner.title, prop, inner, required.has(name) && !nullable);
          if (prefix && parentRequired) field.requiredParent = true;
          fields.push(field);
        }
      }
    };
    collect(model, "", true);
    forms[kind] = { label: model.title ?? kind, help: (model.description ?? "").replace(/\.$/, ""), fields };
  }
  return forms;
}

function setPath(target, dotted, value) {
  const keys = dotted.split(".");
  let node = target;
  for (const key of keys.slice(0, -1)) node = node[key] ??= {};
  node[keys[keys.length - 1]] = value;
}

/**
 * One intervention's raw values ({key: text|bool}) → its JSON, fields named from `prefix`.
 * @param {string} kind
 * @param {Object<string, string|boolean>} raw
 * @param {string} prefix
 * @param {InterventionForms} forms
 */
export function buildIntervention(kind, raw, prefix, forms) {
  const schema = forms[kind];
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
    else value = text === "" ? undefined : text;
    if (value === null || value === undefined) {
      if (field.optional) continue; // the API's default (null: all / same as baseline)
      if (field.type === "list") value = [];
      else continue; // a missing required number: let the API name it
    }
    setPath(out, field.key, value);
  }
  for (const field of schema.fields) {
    // A required nested object (a layer swap's run B) is sent even when all its fields are empty.
    const [head, ...rest] = field.key.split(".");
    if (rest.length && field.requiredParent) out[head] ??= {};
  }
  return out;
}

/**
 * The spec from the form's raw values:
 * {model, prompt, negative_prompt, seed, steps, guidance, guidance_2, height, width, frames,
 *  probes: {every, layers, passes, decode_steps, final_decode},
 *  variants: [{name, interventions: [{kind, ...raw}]}]}
 * @param {object} raw
 * @param {InterventionForms} forms from `interventionForms(schema)`
 */
export function buildSpec(raw, forms) {
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
  // A task instance chosen in the form: the run scores each trajectory against it.
  if (raw.task) spec.task = { family: raw.task.family, difficulty: Number(raw.task.difficulty), seed: Number(raw.task.seed) };
  spec.variants = (raw.variants ?? []).map((variant, vi) => ({
    name: String(variant.name ?? "").trim(),
    interventions: variant.interventions.map((iv, ii) =>
      buildIntervention(iv.kind, iv, `variants.${vi}.interventions.${ii}`, forms),
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

// Pydantic's wording of common refusals → what the field wants, in the form's own terms.
const PLAIN_WORDS = [
  [/^List should have at least (\d+) items? after validation, not 0$/, (n) => (n === "1" ? "give at least one value" : `give at least ${n} values`)],
  [/^Input should be greater than or equal to (\S+)$/, (n) => `must be at least ${n}`],
  [/^Input should be greater than (\S+)$/, (n) => `must be more than ${n}`],
  [/^Input should be less than or equal to (\S+)$/, (n) => `must be at most ${n}`],
  [/^Input should be less than (\S+)$/, (n) => `must be less than ${n}`],
  [/^Input should be a valid integer.*$/, () => "must be a whole number"],
  [/^Input should be a valid number.*$/, () => "must be a number"],
  [/^Field required$/, () => "required"],
];

/**
 * What to show beside a refused input: the API's message in plain words, with the valid range
 * of index lists (steps, latent frames, layers) from `context` {steps, latentFrames, layers}.
 */
export function explainFieldError(detail, field, context = {}) {
  let text = messageFor(detail, field);
  for (const [pattern, say] of PLAIN_WORDS) {
    const match = text.match(pattern);
    if (match) {
      text = say(match[1]);
      break;
    }
  }
  const key = field?.split(".").filter((part) => !/^\d+$/.test(part)).pop();
  const counts = { steps: ["step", context.steps], frames: ["latent frame", context.latentFrames], layers: ["layer", context.layers] };
  const [noun, count] = counts[key] ?? [];
  // Only where the message does not already give a range ("… 10 steps (0..9)").
  if (noun && Number.isInteger(count) && count > 0 && /^variants\./.test(field) && !/\d\s*(\.\.|–)\s*\d/.test(text)) {
    text = text.replace(/^give at least one value$/, `give at least one ${noun}`);
    text += ` (valid ${noun}s: 0–${count - 1})`;
  }
  return text;
}

/** Steps the interventions act at, for markers on curves (no step list: every step, no marker). */
export function interventionSteps(interventions = []) {
  const marks = [];
  for (const iv of interventions) {
    if (Array.isArray(iv.steps)) for (const s of iv.steps) marks.push({ step: s, kind: iv.kind });
  }
  return marks;
}
