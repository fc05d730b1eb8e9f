// Job titles: task runs by their task, others by their prompt; what each compares; ids kept whole when named.
import assert from "node:assert/strict";
import { test } from "node:test";

import { jobTitle, shortId } from "../jobtitle.js";

const maze = { family: "maze", difficulty: 2, seed: 3 };

test("the runs of one reproduced instance are told apart by what they compare and their whole ids", () => {
  const prompt = "Maze: the red square walks along the white corridors";
  const runs = [
    { id: "maze-3-noise", spec: { prompt, task: maze, sweeps: [{ name: "noise_step" }, { name: "noise_frame" }] } },
    { id: "maze-3-steps", spec: { prompt, task: maze, sweeps: [{ name: "inject" }] } },
    { id: "maze-3-trajectory", spec: { prompt, task: maze, variants: [{ name: "ensemble" }] } },
  ];
  const titles = runs.map(jobTitle);
  assert.deepEqual(titles.map((t) => t.title), Array(3).fill("maze · difficulty 2 · seed 3"));
  assert.deepEqual(titles.map((t) => t.subtitle), [
    "maze-3-noise · sweeps noise_step, noise_frame",
    "maze-3-steps · sweep inject",
    "maze-3-trajectory · variant ensemble",
  ]);
});

test("a run without a task by its prompt; service ids shortened", () => {
  const id = "25431302c0ffee00112233445566778a".slice(0, 32);
  const t = jobTitle({ id, spec: { prompt: "a ball rolls", variants: [{ name: "noise3" }, { name: "ens" }] } });
  assert.equal(t.title, "a ball rolls");
  assert.equal(t.subtitle, "25431302 · variants noise3, ens");
  assert.equal(jobTitle({ id: "x", spec: {} }).subtitle, "x · baseline only");
  assert.equal(jobTitle({ id: "x" }).title, "(no prompt)");
  assert.equal(shortId("maze-100-noise"), "maze-100-noise");
});
