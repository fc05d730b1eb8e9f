// Preview geometry: frame rectangles in a strip and integer-scaled pixel canvases.
import assert from "node:assert/strict";
import { test } from "node:test";

import { frameRect, integerScale, pixelCanvas } from "../preview.js";

function fakeCanvas() {
  const ctx = { kind: "2d" };
  return { width: 300, height: 150, style: {}, getContext: () => ctx, ctx };
}

test("frames of a strip are side by side, members stacked", () => {
  assert.deepEqual(frameRect(40, 16, 5, 2, 3, 1), { sx: 24, sy: 8, sw: 8, sh: 8 });
  assert.throws(() => frameRect(40, 16, 5, 2, 5, 0), RangeError);
});

test("a frame is scaled by the largest integer that fits the box, never below 1", () => {
  assert.equal(integerScale(8, 6, 340, 340), 42);
  assert.equal(integerScale(104, 60, 340, 340), 3);
  assert.equal(integerScale(500, 500, 340, 340), 1);
});

test("pixelCanvas sizes the backing store and the CSS box to the scaled frame", () => {
  const canvas = fakeCanvas();
  const { g, scale, width, height } = pixelCanvas(canvas, 13, 8, 250);
  assert.equal(scale, 19);
  assert.deepEqual([width, height], [247, 152]);
  assert.deepEqual([canvas.width, canvas.height], [247, 152]);
  assert.deepEqual(canvas.style, { width: "247px", height: "152px" });
  assert.equal(g, canvas.ctx);
});

test("pixelCanvas leaves a canvas of the right size alone (no clearing reallocation)", () => {
  const canvas = fakeCanvas();
  pixelCanvas(canvas, 13, 8, 250);
  let writes = 0;
  const sized = { ...canvas, style: {} };
  Object.defineProperty(sized, "width", { get: () => 247, set: () => { writes++; } });
  Object.defineProperty(sized, "height", { get: () => 152, set: () => { writes++; } });
  pixelCanvas(sized, 13, 8, 250);
  assert.equal(writes, 0);
});

test("grid cells fill the box's width, keep the frame's aspect and grow with zoom", async () => {
  const { gridCellSize } = await import("../preview.js");
  // 700 px box, 40 px labels, 5 frames: 132 px columns (131 px image + 1 px gap), square frames.
  assert.deepEqual(gridCellSize(700, 40, 5, 1), { cw: 132, ch: 131 });
  // 832×480 frames are wider than tall.
  assert.deepEqual(gridCellSize(700, 40, 5, 832 / 480), { cw: 132, ch: 76 });
  assert.deepEqual(gridCellSize(700, 40, 5, 1, 2), { cw: 264, ch: 263 });
  // 21 latent frames in a narrow box: never below 8 px.
  assert.equal(gridCellSize(100, 40, 21, 1).cw, 8);
});
