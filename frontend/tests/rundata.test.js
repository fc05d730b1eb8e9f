// Building a run's view from its event stream and manifest (replayed, live, or both).
import assert from "node:assert/strict";
import { test } from "node:test";

import { compareStreamIds, RunData } from "../rundata.js";

const step = (trajectory, index, extra = {}) => ({
  type: "step",
  trajectory,
  index,
  t: 1000 - index * 100,
  sigma: 1 - index / 10,
  expert: index < 2 ? "transformer" : "transformer_2",
  artifacts: { preview: `trajectories/${trajectory}/preview/step_00${index}.png` },
  progress: { done: index + 1, total: 6 },
  ...extra,
});

test("events build trajectories, steps, metrics and the terminal status", () => {
  const run = new RunData("job");
  const events = [
    { type: "queued" },
    { type: "started", worker: "w1" },
    { type: "trajectory_started", trajectory: "baseline", kind: "baseline" },
    step("baseline", 0),
    step("baseline", 1),
    { type: "trajectory_finished", trajectory: "baseline", kind: "baseline", commitment_step: 1, convergence: "c.npy" },
    { type: "trajectory_started", trajectory: "noise1", kind: "variant" },
    step("noise1", 0),
    { type: "metric", variant: "noise1", file: "metrics/noise1.json", difference: "metrics/noise1/difference.npy" },
    { type: "decode", trajectory: "baseline", step: 1, dir: "d", frames: 5, video: "d/video.mp4", dtype: "bfloat16" },
    { type: "finished" },
  ];
  const statuses = events.map((e) => {
    run.apply(e);
    return run.status;
  });
  assert.deepEqual(statuses.slice(0, 3), ["queued", "running", "running"]);
  assert.equal(run.status, "finished");
  assert.ok(run.ended);
  assert.deepEqual(run.stepIndices("baseline"), [0, 1]);
  assert.equal(run.trajectories.get("baseline").commitmentStep, 1);
  assert.deepEqual(run.variants(), ["noise1"]);
  assert.equal(run.metrics.get("noise1").difference, "metrics/noise1/difference.npy");
  assert.equal(run.trajectories.get("baseline").decodes.get(1).dir, "d");
  assert.equal(run.trajectories.get("baseline").decodes.get(1).dtype, "bfloat16");
  assert.deepEqual(run.allSteps(), [0, 1]);
  assert.equal(run.stepRecord("baseline", 1).expert, "transformer");
});

test("a manifest and a replayed stream merge without duplicates", () => {
  const run = new RunData("job");
  run.mergeManifest({
    spec: { steps: 6, frames: 17 },
    shapes: { latent: [16, 5, 8, 8], video: [17, 64, 64] },
    model: { vae_temporal: 4, num_layers: 8, experts: ["transformer"] },
    probes: { layers: [0, 1, 2], passes: ["cond"] },
    status: "running",
    trajectories: {
      baseline: { kind: "baseline", seeds: [0], steps: [step("baseline", 0), step("baseline", 1)], decodes: [] },
      ens: { kind: "variant", seeds: [0, 1, 2], steps: [], decodes: [] },
    },
    metrics: {},
  });
  run.apply(step("baseline", 1));
  run.apply(step("baseline", 2));
  assert.deepEqual(run.stepIndices("baseline"), [0, 1, 2]);
  assert.equal(run.members("ens"), 3);
  assert.equal(run.members("baseline"), 1);
  assert.equal(run.latentFrames, 5);
  assert.deepEqual(run.probedLayers, [0, 1, 2]);
  assert.equal(run.totalSteps, 6);
});

test("before the manifest exists, sizes come from the job's spec", () => {
  const run = new RunData("job");
  run.spec = { steps: 30, frames: 33 };
  assert.equal(run.totalSteps, 30);
  assert.equal(run.videoFrames, 33);
  assert.equal(run.latentFrames, 9);
});

test("stream ids order by time then sequence, as numbers", () => {
  assert.equal(compareStreamIds("1718000000000-0", "1718000000000-0"), 0);
  assert.ok(compareStreamIds("1718000000000-2", "1718000000000-10") < 0);
  assert.ok(compareStreamIds("1718000000001-0", "1718000000000-99") > 0);
  assert.ok(compareStreamIds("999-0", "1000-0") < 0);
});

test("decodes listed by the API join those seen in events and the manifest", () => {
  const run = new RunData();
  run.mergeDecodes([
    { trajectory: "baseline", step: 4, dir: "trajectories/baseline/decode/step_004", frames: 17 },
    { trajectory: "noise2", step: "final", dir: "trajectories/noise2/final", frames: 17 },
  ]);
  assert.equal(run.trajectories.get("baseline").decodes.get(4).frames, 17);
  assert.equal(run.trajectories.get("noise2").decodes.get("final").dir, "trajectories/noise2/final");
  run.mergeDecodes(undefined); // an empty answer changes nothing
  assert.equal(run.trajectories.get("baseline").decodes.size, 1);
});
