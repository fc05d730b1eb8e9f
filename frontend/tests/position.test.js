// URL positions: parse and write back, bad values dropped.
import assert from "node:assert/strict";
import { test } from "node:test";

import { jobHash, parsePosition, parseRoute, positionQuery } from "../position.js";

test("a position survives a round trip through the URL", () => {
  const position = { step: 7, frame: 2, layer: 20, member: 1, trajectory: "noise3", left: "ens", right: "swap_1" };
  assert.deepEqual(parsePosition(positionQuery(position)), position);
  assert.equal(positionQuery({ step: 0, frame: 0 }), "step=0&frame=0");
  assert.equal(positionQuery({ step: null, trajectory: undefined }), "");
});

test("how the views show a position survives the URL too; unknown choices are dropped", () => {
  const shown = { step: 3, show: "change", display: "alone", scale: "layer", cmap: "viridis", diff: "step" };
  assert.deepEqual(parsePosition(positionQuery(shown)), shown);
  assert.equal(positionQuery({ step: 1, scale: "step", display: null }), "step=1&scale=step");
  assert.deepEqual(parsePosition("scale=everything&display=alone&show=x1&cmap=jet"), { display: "alone" });
});

test("values that are not indices or run names are dropped", () => {
  assert.deepEqual(parsePosition("step=-1&frame=1.5&layer=x&trajectory=../etc&left=%3Cb%3E&right=ok"), { right: "ok" });
  assert.deepEqual(parsePosition(""), {});
});

test("routes carry run, tab and position", () => {
  assert.deepEqual(parseRoute("#/jobs/abc/layers?step=3&layer=5"), { page: "job", id: "abc", tab: "layers", position: { step: 3, layer: 5 } });
  assert.deepEqual(parseRoute("#/jobs/abc"), { page: "job", id: "abc", tab: "trajectory", position: {} });
  assert.deepEqual(parseRoute("#/new"), { page: "new" });
  assert.deepEqual(parseRoute(""), { page: "new" });
  assert.equal(jobHash("abc", "compare", { step: 4, right: "noise3" }), "#/jobs/abc/compare?step=4&right=noise3");
  assert.equal(jobHash("abc", "trajectory"), "#/jobs/abc/trajectory");
});
