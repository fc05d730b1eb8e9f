// A sweep's summary curve as chart series, its axis label, and sweep members grouped per sweep.
import assert from "node:assert/strict";
import { test } from "node:test";

import { parsePosition, positionQuery } from "../position.js";
import { sweepAxisLabel } from "../interventions.js";
import { RunData, sweepCurves } from "../rundata.js";

const SWEEP = {
  intervention: { kind: "noise_at_step", strength: 1.0, steps: [1] },
  over: "steps",
  values: [1, 2, 3],
  members: ["inject.000", "inject.001", "inject.002"],
  start_steps: [1, 2, 3],
  curve: {
    cka_x0_distance_final: [0.3, 0.2, 0.1],
    hidden_state_cka_distance_final: [[0.4, 0.2], [0.1, null], []],
    hidden_state_layers: [0, 1],
    final_relative_l2: [0.9, 0.5, 0.25],
    score: [null, null, null],
  },
};

test("sweep curves: one point per value, hidden states averaged over the layers that have a value", () => {
  const series = sweepCurves(SWEEP);
  assert.deepEqual(series.map((s) => s.key), ["cka_x0_distance_final", "hidden_state_cka_distance_final", "final_relative_l2"]);
  assert.deepEqual(series[0].points.map((p) => [p.x, p.y, p.member]), [[1, 0.3, "inject.000"], [2, 0.2, "inject.001"], [3, 0.1, "inject.002"]]);
  const hidden = series[1].points.map((p) => p.y);
  assert.ok(Math.abs(hidden[0] - 0.3) < 1e-12);
  assert.equal(hidden[1], 0.1); // the null layer is left out of the mean
  assert.equal(hidden[2], null); // no layer: no point
  assert.deepEqual(series[2].points.map((p) => p.y), [0.9, 0.5, 0.25]);
});

test("the task score is a series only once some member has one", () => {
  assert.ok(!sweepCurves(SWEEP).some((s) => s.key === "score"));
  const scored = { ...SWEEP, curve: { ...SWEEP.curve, score: [null, 0.5, 0.7] } };
  assert.deepEqual(sweepCurves(scored).find((s) => s.key === "score").points.map((p) => p.y), [null, 0.5, 0.7]);
  assert.deepEqual(sweepCurves({}), sweepCurves({}).filter((s) => s.key !== "score"));
});

test("the swept parameter names the x axis", () => {
  assert.equal(sweepAxisLabel(SWEEP), "injection step");
  assert.equal(sweepAxisLabel({ intervention: { kind: "layer_swap" }, over: "layers" }), "swapped layer");
  assert.equal(sweepAxisLabel({ intervention: { kind: "noise_at_frame" }, over: "frames" }), "noised latent frame");
  assert.equal(sweepAxisLabel({ intervention: { kind: "noise_at_step" }, over: "strength" }), "noise strength");
});

test("sweep members are grouped per sweep and listed after variants and swap sources", () => {
  const run = new RunData("job");
  for (const [name, kind] of [["inject.001", "sweep_member"], ["baseline", "baseline"], ["inject.000", "sweep_member"], ["noise3", "variant"], ["swap.source0", "swap_source"]]) {
    run.apply({ type: "trajectory_started", trajectory: name, kind });
  }
  assert.deepEqual(run.viewable().map((t) => t.name), ["baseline", "noise3", "swap.source0", "inject.000", "inject.001"]);
  // Before the manifest: from the member names; after: the manifest's order, members not started included.
  assert.deepEqual(run.sweepGroups(), [{ sweep: "inject", members: ["inject.001", "inject.000"] }]);
  run.mergeManifest({ sweeps: { inject: SWEEP }, warnings: ["w"], trajectories: {} });
  assert.deepEqual(run.sweepGroups(), [{ sweep: "inject", members: ["inject.000", "inject.001", "inject.002"] }]);
  assert.deepEqual(run.warnings, ["w"]);
  assert.deepEqual(run.variants(), ["noise3"]); // members do not clutter the variant list
});

test("a sweep member's name survives the URL", () => {
  const query = positionQuery({ right: "inject.003", trajectory: "inject.003" });
  assert.deepEqual(parsePosition(query), { trajectory: "inject.003", right: "inject.003" });
  assert.deepEqual(parsePosition("right=.hidden"), {});
});
