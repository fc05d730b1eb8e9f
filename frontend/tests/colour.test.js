// Colour scales: ranges per mode from per-step summaries, and colour-map lookups.
import assert from "node:assert/strict";
import { test } from "node:test";

import { colourMap, colourRange, heatmapPixels, layerStats, lutIndex, summary } from "../colour.js";

// (members=2, layers=3, F'=1, H'=1, W'=2): layer l of member m holds [10l + m, 10l + m + 4]
function norms(offset = 0) {
  const data = new Float32Array(2 * 3 * 2);
  for (let m = 0; m < 2; m++) for (let l = 0; l < 3; l++) {
    data[(m * 3 + l) * 2] = 10 * l + m + offset;
    data[(m * 3 + l) * 2 + 1] = 10 * l + m + 4 + offset;
  }
  return { shape: [2, 3, 1, 1, 2], data };
}

test("layerStats summarises each layer over members and tokens", () => {
  const stats = layerStats(norms());
  assert.deepEqual(stats.map((s) => [s.min, s.max]), [[0, 5], [10, 15], [20, 25]]);
  assert.deepEqual(stats.map((s) => s.mean), [2.5, 12.5, 22.5]);
});

test("global, per-layer and per-step ranges come from the same summaries", () => {
  const byStep = new Map([[0, layerStats(norms(0))], [5, layerStats(norms(100))]]);
  assert.deepEqual(colourRange("global", byStep, 0, 1), { lo: 0, hi: 125 });
  assert.deepEqual(colourRange("layer", byStep, 0, 1), { lo: 10, hi: 115 });
  assert.deepEqual(colourRange("step", byStep, 5, 1), { lo: 110, hi: 115 });
  assert.deepEqual(colourRange("step", byStep, 0, 2), { lo: 20, hi: 25 });
  assert.equal(colourRange("step", byStep, 3, 1), null, "a step without data has no range");
  assert.throws(() => colourRange("log", byStep, 0, 0), /unknown colour scale/);
});

test("values map onto the lookup table, clamped", () => {
  assert.equal(lutIndex(0, 0, 10), 0);
  assert.equal(lutIndex(10, 0, 10), 255);
  assert.equal(lutIndex(5, 0, 10), 128);
  assert.equal(lutIndex(-3, 0, 10), 0);
  assert.equal(lutIndex(99, 0, 10), 255);
  assert.equal(lutIndex(7, 7, 7), 128, "a flat range maps to the middle");
});

test("heatmap pixels use the colour map's ends for lo and hi", () => {
  const lut = colourMap("inferno");
  const px = heatmapPixels(new Float32Array([1, 3]), 1, 3, "inferno", 200);
  assert.deepEqual([...px.slice(0, 4)], [lut[0], lut[1], lut[2], 200]);
  assert.deepEqual([...px.slice(4, 8)], [lut[765], lut[766], lut[767], 200]);
  assert.deepEqual([...colourMap("viridis").slice(0, 3)], [68, 1, 84]);
});

test("summary skips NaN", () => {
  assert.deepEqual(summary(new Float32Array([2, NaN, 4])), { min: 2, max: 4, mean: 3 });
});
