// x̂₀ differences computed in the browser, against values worked out by hand.
import assert from "node:assert/strict";
import { test } from "node:test";

import { channelMeanAbsDiff } from "../xdiff.js";

function array(shape, fill) {
  const size = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(size);
  for (let i = 0; i < size; i++) data[i] = fill(i);
  return { shape, data };
}

test("mean over channels of |a − b| at one member and frame", () => {
  // (members 2, C 2, F 3, H 1, W 2): element (m, c, f, 0, x) at ((m*2 + c)*3 + f)*2 + x.
  const a = array([2, 2, 3, 1, 2], () => 0);
  const b = array([2, 2, 3, 1, 2], (i) => i);
  const { data, h, w } = channelMeanAbsDiff(a, b, 1, 2);
  // member 1, frame 2: c=0 → indices 16, 17; c=1 → 22, 23.
  assert.deepEqual([h, w], [1, 2]);
  assert.deepEqual(Array.from(data), [(16 + 22) / 2, (17 + 23) / 2]);
  assert.deepEqual(Array.from(channelMeanAbsDiff(b, a, 0, 0).data), [(0 + 6) / 2, (1 + 7) / 2]);
});

test("a one-member array is compared with every member of the other", () => {
  const one = array([1, 1, 1, 1, 2], () => 1);
  const three = array([3, 1, 1, 1, 2], (i) => i);
  assert.deepEqual(Array.from(channelMeanAbsDiff(one, three, 2, 0).data), [3, 4]);
});

test("shapes that differ, or a frame out of range, are refused", () => {
  assert.throws(() => channelMeanAbsDiff(array([1, 2, 1, 1, 2], () => 0), array([1, 1, 1, 1, 2], () => 0), 0, 0), RangeError);
  assert.throws(() => channelMeanAbsDiff(array([1, 1, 1, 1, 2], () => 0), array([1, 1, 1, 1, 2], () => 0), 0, 1), RangeError);
});
