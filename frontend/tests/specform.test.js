// From form values to an ExperimentSpec, and from an API error's field path to an input.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { describeIntervention } from "../interventions.js";
import {
  buildSpec as buildSpecWith,
  FieldError,
  fieldForError,
  interventionForms,
  interventionSteps,
  messageFor,
  parseIndexList,
} from "../specform.js";

// The API's /api/schema/spec, as committed (tests/unit/test_spec_schema.py checks it is current).
const SCHEMA = JSON.parse(readFileSync(new URL("./fixtures/spec.schema.json", import.meta.url), "utf8"));
const FORMS = interventionForms(SCHEMA);
const buildSpec = (raw) => buildSpecWith(raw, FORMS);

test("the form's interventions are the spec's, with their fields in order", () => {
  assert.deepEqual(Object.keys(FORMS), ["noise_at_step", "noise_at_frame", "layer_swap", "seed_ensemble", "guidance"]);
  assert.equal(FORMS.noise_at_step.label, "Noise at step");
  assert.match(FORMS.noise_at_step.help, /^Add Gaussian noise to every frame/);
  assert.deepEqual(FORMS.noise_at_step.fields.map((f) => [f.key, f.type, f.optional]), [
    ["steps", "list", false],
    ["strength", "number", false],
    ["relative", "bool", true],
    ["units", "choice", true],
    ["seed", "int", true],
  ]);
  assert.deepEqual(FORMS.noise_at_step.fields[3].options, ["latent_std", "absolute", "sigma"]);
  const strength = FORMS.noise_at_step.fields[1];
  assert.equal(strength.initial, "0.5");
  assert.equal(FORMS.noise_at_step.fields[0].placeholder, "e.g. 5");
  assert.equal(FORMS.noise_at_step.fields[0].initial, undefined, "index lists depend on the model: no guess");
  assert.equal(FORMS.noise_at_step.fields[2].initial, true);
  // A layer swap's run B becomes dotted fields; its image is left to uploads.
  const swap = FORMS.layer_swap.fields.map((f) => f.key);
  assert.deepEqual(swap, ["layers", "steps", "frames", "frame_units", "passes", "source.prompt", "source.negative_prompt", "source.seed"]);
  const passes = FORMS.layer_swap.fields[4];
  assert.deepEqual([passes.type, passes.options, passes.initial], ["choice", ["cond", "uncond", "both"], "cond"]);
  assert.equal(FORMS.seed_ensemble.fields.find((f) => f.key === "steps").initial, "0");
  assert.equal(FORMS.guidance.fields.find((f) => f.key === "scale_2").label, "low-noise expert scale");
});

test("a kind added to the schema appears in the form with no other change", () => {
  const schema = structuredClone(SCHEMA);
  schema.$defs.Blur = {
    title: "Blur",
    description: "Blur the latent.",
    type: "object",
    required: ["sigma"],
    properties: { kind: { const: "blur" }, sigma: { type: "number", title: "sigma", examples: [1.5] } },
  };
  schema.$defs.Variant.properties.interventions.items.oneOf.push({ $ref: "#/$defs/Blur" });
  const forms = interventionForms(schema);
  assert.deepEqual(forms.blur, {
    label: "Blur",
    help: "Blur the latent",
    fields: [{ key: "sigma", label: "sigma", type: "number", optional: false, initial: "1.5", placeholder: "e.g. 1.5", step: "any" }],
  });
  const spec = buildSpecWith({ model: "tiny", probes: {}, variants: [{ name: "b", interventions: [{ kind: "blur", sigma: "2" }] }] }, forms);
  assert.deepEqual(spec.variants[0].interventions, [{ kind: "blur", sigma: 2 }]);
});

test("index lists accept indices and ranges", () => {
  assert.deepEqual(parseIndexList("3, 5-7 9"), [3, 5, 6, 7, 9]);
  assert.deepEqual(parseIndexList("20–21"), [20, 21]);
  assert.equal(parseIndexList("  "), null);
  assert.throws(() => parseIndexList("1, x", "variants.0.interventions.0.steps"), (e) => {
    assert.ok(e instanceof FieldError);
    assert.equal(e.field, "variants.0.interventions.0.steps");
    assert.match(e.detail, /'x' is not an index/);
    return true;
  });
  assert.throws(() => parseIndexList("5-3", "f"), /runs backwards/);
});

test("a form with every kind of variant becomes the spec the API documents", () => {
  const spec = buildSpec({
    model: "tiny",
    prompt: "a maze",
    negative_prompt: "",
    seed: "3",
    steps: "12",
    guidance: "5",
    guidance_2: "",
    height: "64",
    width: "64",
    frames: "17",
    probes: { layers: "0-3", every: "2", passes: "cond", decode_steps: "4, 8", final_decode: false },
    variants: [
      { name: "noise10", interventions: [{ kind: "noise_at_step", steps: "10", strength: "0.5", relative: true, seed: "0" }] },
      { name: "frame2", interventions: [{ kind: "noise_at_frame", frames: "2", steps: "", strength: "0.25", relative: false, seed: "1" }] },
      { name: "swap", interventions: [{ kind: "layer_swap", layers: "4", steps: "0-1", frames: "", passes: "cond", "source.prompt": "another", "source.seed": "" }] },
      { name: "ens", interventions: [{ kind: "seed_ensemble", seeds: "0, 1, 2", layers: "", steps: "0", passes: "both" }] },
      { name: "nocfg", interventions: [{ kind: "guidance", scale: "1", scale_2: "" }] },
    ],
  });
  assert.deepEqual(spec, {
    model: "tiny",
    prompt: "a maze",
    negative_prompt: "",
    seed: 3,
    steps: 12,
    guidance: 5,
    height: 64,
    width: 64,
    frames: 17,
    probes: { layers: [0, 1, 2, 3], passes: "cond", final_decode: false, every: 2, decode_steps: [4, 8] },
    variants: [
      { name: "noise10", interventions: [{ kind: "noise_at_step", steps: [10], strength: 0.5, relative: true, seed: 0 }] },
      { name: "frame2", interventions: [{ kind: "noise_at_frame", frames: [2], strength: 0.25, relative: false, seed: 1 }] },
      { name: "swap", interventions: [{ kind: "layer_swap", layers: [4], steps: [0, 1], passes: "cond", source: { prompt: "another" } }] },
      { name: "ens", interventions: [{ kind: "seed_ensemble", seeds: [0, 1, 2], steps: [0], passes: "both" }] },
      { name: "nocfg", interventions: [{ kind: "guidance", scale: 1 }] },
    ],
  });
});

test("empty numbers are left to the API's defaults; an empty required list stays empty for the API to name", () => {
  const spec = buildSpec({
    model: "tiny", prompt: "", seed: "", steps: "", guidance: "", height: "", width: "", frames: "",
    probes: { layers: "all" },
    variants: [{ name: "n", interventions: [{ kind: "noise_at_step", steps: "", strength: "", relative: true, seed: "" }] }],
  });
  assert.deepEqual(spec.probes, { layers: "all", passes: "cond", final_decode: true });
  assert.equal(spec.steps, undefined);
  assert.deepEqual(spec.variants[0].interventions[0], { kind: "noise_at_step", steps: [], relative: true });
});

test("a bad list is reported under the API's dotted path", () => {
  assert.throws(
    () => buildSpec({ model: "tiny", probes: { layers: "0, a" }, variants: [] }),
    (e) => e.field === "probes.layers",
  );
  assert.throws(
    () => buildSpec({
      model: "tiny", probes: {},
      variants: [{ name: "v", interventions: [{ kind: "guidance", scale: "1" }, { kind: "noise_at_frame", frames: "2;3" }] }],
    }),
    (e) => e.field === "variants.0.interventions.1.frames",
  );
});

test("an error's field finds the input, or the nearest container", () => {
  const known = new Set(["steps", "variants.0", "variants.0.name", "variants.0.interventions.0.steps", "probes.layers"]);
  assert.equal(fieldForError("variants.0.interventions.0.steps", known), "variants.0.interventions.0.steps");
  assert.equal(fieldForError("variants.0.interventions", known), "variants.0");
  assert.equal(fieldForError("steps", known), "steps");
  assert.equal(fieldForError("body", known), null);
  assert.equal(fieldForError(null, known), null);
});

test("the message shown next to a field drops the field prefix", () => {
  assert.equal(messageFor("steps: must be at least 1", "steps"), "must be at least 1");
  assert.equal(messageFor("Redis is unreachable", null), "Redis is unreachable");
});

test("intervention markers and summaries", () => {
  const ivs = [
    { kind: "noise_at_step", steps: [3, 7], strength: 0.5 },
    { kind: "noise_at_frame", frames: [2], steps: null, strength: 1 },
  ];
  assert.deepEqual(interventionSteps(ivs), [{ step: 3, kind: "noise_at_step" }, { step: 7, kind: "noise_at_step" }]);
  assert.equal(describeIntervention(ivs[0]), "noise ×0.5 at steps 3, 7");
  assert.equal(describeIntervention(ivs[1]), "noise ×1 in latent frame 2 at every step");
  assert.equal(describeIntervention({ kind: "noise_at_step", steps: [3], strength: 0.5 }), "noise ×0.5 at step 3");
  assert.equal(describeIntervention({ kind: "noise_at_frame", frames: null, frame_units: "video", steps: [1, 2], strength: 2 }),
    "noise ×2 in every video frame at steps 1, 2");
  assert.equal(describeIntervention({ kind: "layer_swap", layers: [20], steps: null }), "swap layer 20 at every step from B");
  assert.equal(describeIntervention({ kind: "seed_ensemble", seeds: [0, 1], layers: null, steps: [0] }),
    "ensemble of seeds 0, 1, layers of the third quarter of the depth, at step 0");
});

test("refusals read as what the field wants, with the run's valid range for index lists", async () => {
  const { explainFieldError } = await import("../specform.js");
  const context = { steps: 20, latentFrames: 5, layers: 30 };
  const empty = "List should have at least 1 item after validation, not 0";
  assert.equal(explainFieldError(`variants.0.interventions.0.steps: ${empty}`, "variants.0.interventions.0.steps", context),
    "give at least one step (valid steps: 0–19)");
  assert.equal(explainFieldError(`variants.1.interventions.0.frames: ${empty}`, "variants.1.interventions.0.frames", context),
    "give at least one latent frame (valid latent frames: 0–4)");
  assert.equal(explainFieldError(`variants.0.interventions.0.layers: ${empty}`, "variants.0.interventions.0.layers", context),
    "give at least one layer (valid layers: 0–29)");
  // A message that already names the range gets no second one.
  assert.equal(explainFieldError("variants.0.interventions.0.steps: step 25 is beyond the run's 20 steps (0..19)",
    "variants.0.interventions.0.steps", context), "step 25 is beyond the run's 20 steps (0..19)");
  assert.equal(explainFieldError("steps: Input should be greater than or equal to 1", "steps", context), "must be at least 1");
  assert.equal(explainFieldError("seed: Input should be a valid integer, got a number with a fractional part", "seed"),
    "must be a whole number");
  // Without a known run size, no range is invented.
  assert.equal(explainFieldError(`variants.0.interventions.0.steps: ${empty}`, "variants.0.interventions.0.steps", {}),
    "give at least one value");
});

test("a task chosen in the form goes into the spec as {family, difficulty, seed}", () => {
  const spec = buildSpec({ model: "tiny", prompt: "p", variants: [], task: { family: "maze", difficulty: "2", seed: "7", height: 64, width: 64, frames: 9 } });
  assert.deepEqual(spec.task, { family: "maze", difficulty: 2, seed: 7 });
  assert.equal("task" in buildSpec({ model: "tiny", prompt: "p", variants: [], task: null }), false);
});

test("an API error at the task (or one of its fields) lands on the task row", () => {
  const known = new Set(["prompt", "height", "task"]);
  assert.equal(fieldForError("task", known), "task");
  assert.equal(fieldForError("task.difficulty", known), "task");
});
