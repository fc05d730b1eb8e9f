// Axis ticks.
import assert from "node:assert/strict";
import { test } from "node:test";

import { chartMargins, colourBarTicks, formatNumber, integerTicks, legendLayout, niceTicks, textWidth } from "../charts.js";

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

test("the left margin fits the widest tick label and the axis title beside it", () => {
  const narrow = chartMargins({ x: { domain: [0, 1] }, y: { domain: [0, 1] } });
  assert.equal(narrow.l, 52);
  // Ticks like 0.0025 are wider than 52 px leaves room for beside a rotated title.
  const wide = chartMargins({ x: { domain: [0, 1] }, y: { domain: [0, 0.01] } });
  const widest = Math.max(...niceTicks(0, 0.01, 4).map((t) => textWidth(formatNumber(t))));
  assert.ok(wide.l > 52 && wide.l - 6 - widest >= 18, `${wide.l} for ticks ${widest} px wide`);
  assert.equal(chartMargins({ x: { domain: [0, 1] }, y: { domain: [0, 1] }, y2: { domain: [0, 9] } }).r, 52);
});

test("line labels get rows of their own above the plot", () => {
  const base = { x: { domain: [0, 1] }, y: { domain: [0, 1] } };
  assert.equal(chartMargins(base).t, 20);
  assert.equal(chartMargins({ ...base, vlines: [{ x: 1 }] }).t, 20); // unlabelled: no row
  assert.equal(chartMargins({ ...base, vlines: [{ x: 1, label: "a" }] }).t, 34);
  assert.equal(chartMargins({ ...base, vlines: [{ x: 1, label: "a" }, { x: 2, label: "b", row: 1 }] }).t, 48);
});

test("a colour bar is labelled at both ends and at round values between, none overlapping", () => {
  const ticks = colourBarTicks({ lo: 0, hi: 0.42 }, 340);
  assert.equal(ticks[0].text, "0");
  assert.equal(ticks.at(-1).text, "0.42");
  assert.ok(ticks.length >= 4, JSON.stringify(ticks));
  const boxes = ticks.map((t) => {
    const w = textWidth(t.text);
    const left = t.align === "left" ? t.x : t.align === "right" ? t.x - w : t.x - w / 2;
    return [left, left + w];
  });
  for (let i = 1; i < boxes.length; i++) assert.ok(boxes[i][0] > boxes[i - 1][1], JSON.stringify(boxes));
  for (const t of ticks.slice(1, -1)) assert.ok(t.value > 0 && t.value < 0.42 && t.x > 1 && t.x < 339);
  // Positions are where the value is on the bar.
  const mid = ticks.find((t) => t.value === 0.2);
  assert.ok(mid && Math.abs(mid.x - (1 + (0.2 / 0.42) * 338)) < 1e-9);
  assert.deepEqual(colourBarTicks({ lo: 3, hi: 3 }, 200).map((t) => t.text), ["3"]);
  assert.deepEqual(colourBarTicks(null, 200), []);
});

test("a legend wider than the chart wraps onto rows, which the top margin makes room for", () => {
  const series = ["x̂₀", "1 − r² of layer-norm maps (mean over layers)", "a third series"].map((name) => ({ name, color: "#fff", points: [] }));
  const opts = { x: { domain: [0, 1] }, y: { domain: [0, 1] }, series, hlines: [{ y: 0.5, label: "commit threshold 0.05" }] };
  const wide = legendLayout(opts, 56, 1000);
  assert.equal(wide.rows, 1);
  const narrow = legendLayout(opts, 56, 320);
  assert.ok(narrow.rows >= 2);
  for (const item of narrow.items) assert.ok(item.x === 56 || item.x + item.width - 10 <= 320, JSON.stringify(item));
  assert.equal(chartMargins(opts, 320 + 14).t, 20 + (narrow.rows - 1) * 14);
});
