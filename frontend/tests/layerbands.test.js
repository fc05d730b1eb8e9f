// Early / middle / late bands: first quarter, middle half, last quarter of the depth.
import assert from "node:assert/strict";
import { test } from "node:test";

import { bandRanges, layerBand } from "../layerbands.js";

test("40 layers: 0-9 early, 10-29 middle, 30-39 late", () => {
  assert.deepEqual(bandRanges(40), { early: [0, 9], middle: [10, 29], late: [30, 39] });
  const bands = Array.from({ length: 40 }, (_, l) => layerBand(l, 40));
  assert.deepEqual(bands.slice(8, 12), ["early", "early", "middle", "middle"]);
  assert.deepEqual(bands.slice(28, 32), ["middle", "middle", "late", "late"]);
});

test("bands agree with their ranges for other depths", () => {
  for (const depth of [8, 30, 2]) {
    const ranges = bandRanges(depth);
    for (let l = 0; l < depth; l++) {
      const [lo, hi] = ranges[layerBand(l, depth)];
      assert.ok(l >= lo && l <= hi, `layer ${l} of ${depth}`);
    }
  }
});
