// Axis ticks.
import assert from "node:assert/strict";
import { test } from "node:test";

import { formatNumber, integerTicks, niceTicks } from "../charts.js";

test("round ticks covering the range", () => {
  assert.deepEqual(niceTicks(0, 1, 4), [0, 0.25, 0.5, 0.75, 1]);
  assert.deepEqual(niceTicks(0, 1000, 4), [0, 250, 500, 750, 1000]);
  assert.deepEqual(niceTicks(2.11, 5.78, 4), [3, 4, 5]);
  assert.deepEqual(niceTicks(0, 0.3, 4), [0, 0.1, 0.2, 0.3]);
  assert.deepEqual(niceTicks(3, 3), [3]);
});

test("step axes get whole steps only", () => {
  assert.deepEqual(integerTicks(-0.5, 11.5, 8), [0, 2, 4, 6, 8, 10]);
  assert.deepEqual(integerTicks(-0.5, 3.5, 8), [0, 1, 2, 3]);
});

test("numbers on axes", () => {
  assert.equal(formatNumber(0), "0");
  assert.equal(formatNumber(0.123456), "0.123");
  assert.equal(formatNumber(1000), "1000");
  assert.equal(formatNumber(2e-5), "2.0e-5");
});
