// From form values to an ExperimentSpec, and from an API error's field path to an input.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  buildSpec,
  describeIntervention,
  FieldError,
  fieldForError,
  interventionSteps,
  messageFor,
  parseIndexList,
} from "../specform.js";

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
  assert.equal(describeIntervention(ivs[0]), "noise ×0.5 at step 3, 7");
  assert.equal(describeIntervention(ivs[1]), "noise ×1 in latent frame 2 at steps all");
});
