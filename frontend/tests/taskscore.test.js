// The task score's text and the candidate curve's series, from manifest entries.
import assert from "node:assert/strict";
import { test } from "node:test";

import { candidateChanceText, candidateSeries, taskScoreText } from "../taskscore.js";

test("a task score reads pass or fail, the score and the reason", () => {
  assert.equal(taskScoreText({ score: 0.8333, passed: true, reason: "reached the exit" }), "pass · score 0.83 · reached the exit");
  assert.equal(taskScoreText({ score: 0.1, passed: false, reason: "" }), "fail · score 0.10");
});

test("candidate series: masses per candidate, live per step, winners against the answer", () => {
  const candidates = {
    steps: [0, 2, 4],
    labels: ["A", "B", "C"],
    answer: 1,
    masses: [[0.3, 0.3, 0.4], [0.1, 0.6, 0.3], [0, 0.9, 0.1]],
    live: [3, 2, 1],
    winner: [2, 1, null],
  };
  const s = candidateSeries(candidates);
  assert.deepEqual(s.mass.map((m) => m.name), ["A", "B (answer)", "C"]);
  assert.deepEqual(s.mass[1].points, [{ x: 0, y: 0.3 }, { x: 2, y: 0.6 }, { x: 4, y: 0.9 }]);
  assert.deepEqual(s.mass[2].points.map((p) => p.y), [0.4, 0.3, 0.1]);
  assert.deepEqual(s.live.points, [{ x: 0, y: 3 }, { x: 2, y: 2 }, { x: 4, y: 1 }]);
  assert.equal(s.live.axis, 2);
  assert.deepEqual(s.winners.map((w) => [w.winner, w.isAnswer]), [[2, false], [1, true], [null, false]]);
  assert.equal(s.maxMass, 0.9);
  assert.equal(s.maxLive, 3);
});

test("the chance level beside a candidate curve is the manifest's, and absent without one", () => {
  const candidates = { steps: [0, 1, 2], labels: ["A", "B", "C", "D"], answer: 1, winner: [null, 2, 1], chance: 0.25 };
  assert.equal(
    candidateChanceText(candidates),
    "chance 0.250 (1 of 4 candidates): a winner picked at random is the answer this often · "
      + "here the winner is the answer at 1 of the 2 step(s) with a winner",
  );
  // The number is read, not computed here: whatever the manifest says is shown.
  assert.match(candidateChanceText({ ...candidates, chance: 0.3 }), /^chance 0\.300 /);
  assert.match(candidateChanceText({ ...candidates, winner: [null, null, null] }), / · here no step has a live winner$/);
  assert.equal(candidateChanceText({ ...candidates, chance: undefined }), null);
  assert.equal(candidateChanceText({ ...candidates, chance: null }), null);
});
