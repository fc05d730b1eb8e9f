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

test("a region's outline: the edges no two of its cells share, moved inside by the inset", async () => {
  const { regionOutline } = await import("../taskscore.js");
  const sorted = (segs) => segs.map((s) => s.map((v) => Math.round(v * 1000) / 1000).join(" ")).sort();
  // One cell: its four sides.
  assert.deepEqual(sorted(regionOutline([[2, 3]])), sorted([[3, 2, 4, 2], [3, 3, 4, 3], [3, 2, 3, 3], [4, 2, 4, 3]]));
  // An L of three cells: 8 boundary edges, the shared ones left out.
  const ell = [[0, 0], [1, 0], [1, 1]];
  const edges = regionOutline(ell);
  assert.equal(edges.length, 8);
  assert.ok(!edges.some(([x0, y0, x1, y1]) => x0 === 0 && y0 === 1 && x1 === 1 && y1 === 1), "shared edge drawn");
  // Inset: every end point of the moved outline is another segment's end point (the outline stays closed), and
  // lies inside the cells, `inset` away from the border.
  const moved = regionOutline(ell, 0.1);
  const ends = moved.flatMap(([x0, y0, x1, y1]) => [`${x0.toFixed(3)},${y0.toFixed(3)}`, `${x1.toFixed(3)},${y1.toFixed(3)}`]);
  const counts = ends.reduce((m, k) => m.set(k, (m.get(k) ?? 0) + 1), new Map());
  assert.ok([...counts.values()].every((n) => n === 2), JSON.stringify([...counts]));
  // The concave corner at (x 1, y 1) moves to (0.9, 1.1): into the L (cell [1, 0]), 0.1 from both of its edges.
  assert.ok(counts.has("0.900,1.100"), JSON.stringify([...counts.keys()]));
  assert.ok(counts.has("0.100,0.100") && counts.has("1.900,1.900"));
});

test("the candidates at a step come from the manifest: masses, live flags, winner and where they are", async () => {
  const { candidatesAt, candidatesAtText, settledWinner } = await import("../taskscore.js");
  const candidates = {
    steps: [0, 2, 4],
    labels: ["goal", "dead end"],
    answer: 0,
    masses: [[0.3, 0.35], [0.5, 0.2], [0.9, 0.05]],
    live: [2, 1, 1],
    winner: [1, 0, 0],
    alive: [[true, true], [true, false], [true, false]],
    regions: { grid: 8, cells: [[[1, 1], [1, 2]], [[5, 5]]], anchors: [[1, 2], [5, 5]], area: [], frames: [16], measured_frames: [4] },
  };
  const at = candidatesAt(candidates, 2);
  assert.deepEqual(at.map((c) => [c.label, c.mass, c.alive, c.isWinner, c.isAnswer]),
    [["goal", 0.5, true, true, true], ["dead end", 0.2, false, false, false]]);
  assert.deepEqual(at[0].cells, [[1, 1], [1, 2]]);
  assert.deepEqual(at[1].anchor, [5, 5]);
  assert.equal(candidatesAt(candidates, 3), null); // not a measured step
  assert.equal(candidatesAt({ ...candidates, regions: undefined }, 2), null); // stored before regions were kept
  assert.equal(candidatesAt({ ...candidates, alive: undefined }, 2)[0].alive, null);
  assert.equal(candidatesAtText(candidatesAt(candidates, 0), 0),
    "step 0: 2 live: goal (answer) 0.30, dead end 0.35 · winner dead end");
  assert.equal(candidatesAtText(at, 2), "step 2: 1 live: goal (answer) 0.50 · winner goal (the answer)");
  assert.deepEqual(settledWinner(candidates), { winner: 0, step: 2 });
  assert.equal(settledWinner({ ...candidates, winner: [0, 0, null] }), null);
});

test("masses read with their size: two decimals, one significant digit below 0.01", async () => {
  const { formatMass } = await import("../taskscore.js");
  assert.deepEqual([0.61, 0.003, 0, 0.0149, NaN].map(formatMass), ["0.61", "0.003", "0.00", "0.01", "–"]);
});
