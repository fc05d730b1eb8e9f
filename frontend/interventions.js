// The explorer's words for each intervention kind: a variant's short name, a one-line summary, a
// sweep's axis. The kinds themselves (their fields, labels and help) come from the spec's JSON Schema
// (specform.js `interventionForms`); this is the one module that names a kind of its own accord, and
// a kind missing here still works, named by its kind (tests/unit/test_spec_schema.py checks that
// every kind here is one of spec.py's and that no other module names one).

const many = (xs, one) => `${one}${xs.length > 1 ? "s" : ""} ${xs.join(", ")}`;
// No list means every step, frame or layer (the spec's null).
const atSteps = (iv) => (iv.steps ? `at ${many(iv.steps, "step")}` : "at every step");
const layers = (xs) => (xs ? many(xs, "layer") : "every layer");

/**
 * kind → {short: a new variant's name before its number, describe(iv): a summary,
 *         swept: {over: what the x axis of a sweep of this kind over `over` is}}
 */
const KINDS = {
  noise_at_step: {
    short: "noise",
    describe: (iv) => `noise ×${iv.strength} ${atSteps(iv)}`,
    swept: { steps: "injection step" },
  },
  noise_at_frame: {
    short: "frame",
    describe: (iv) => {
      const unit = iv.frame_units === "video" ? "video frame" : "latent frame";
      return `noise ×${iv.strength} ${iv.frames ? `in ${many(iv.frames, unit)}` : `in every ${unit}`} ${atSteps(iv)}`;
    },
    swept: { steps: "injection step", frames: "noised latent frame" },
  },
  layer_swap: {
    short: "swap",
    describe: (iv) => `swap ${layers(iv.layers)} ${atSteps(iv)} from B`,
    swept: { steps: "swap step", frames: "swapped latent frame", layers: "swapped layer" },
  },
  seed_ensemble: {
    short: "ensemble",
    describe: (iv) =>
      `ensemble of seeds ${iv.seeds ? iv.seeds.join(", ") : "(default)"}, ${iv.layers ? layers(iv.layers) : "layers of the third quarter of the depth"}, ${atSteps(iv)}`,
  },
  guidance: {
    short: "cfg",
    describe: (iv) => `guidance ${iv.scale}${iv.scale_2 !== null && iv.scale_2 !== undefined ? ` / ${iv.scale_2}` : ""}`,
  },
};

// A table entry only for a key of its own: a stored run's kind or axis may be any string ("constructor").
const own = (table, key) => (typeof key === "string" && Object.hasOwn(table, key) ? table[key] : undefined);

/** The kinds this module has words for (a test checks them against spec.py's). */
export const DESCRIBED_KINDS = Object.keys(KINDS);

/** The start of a new variant's name for `kind` ("noise" → noise1, noise2, …); any other kind: the kind. */
export function variantPrefix(kind) {
  return own(KINDS, kind)?.short ?? kind;
}

/** A one-line human summary of one intervention. */
export function describeIntervention(iv) {
  return own(KINDS, iv.kind)?.describe(iv) ?? iv.kind;
}

// What a sweep's x axis is when the kind has no word of its own for it.
const SWEPT = { steps: "step", frames: "latent frame", layers: "layer", strength: "noise strength" };

/** What the x axis of a sweep's curve is, in words ("injection step", "noise strength", …). */
export function sweepAxisLabel(sweep) {
  const over = sweep?.over;
  const swept = own(KINDS, sweep?.intervention?.kind)?.swept ?? {};
  return own(swept, over) ?? own(SWEPT, over) ?? over ?? "value";
}
