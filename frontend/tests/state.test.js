// The global step/frame position: snapping to steps with data, following live, playback.
import assert from "node:assert/strict";
import { test } from "node:test";

import { nearestIndex, Scrubber } from "../state.js";

test("nearestIndex picks the closest value, ties to the lower", () => {
  assert.equal(nearestIndex([], 3), -1);
  assert.equal(nearestIndex([0, 2, 4, 9], 3), 1);
  assert.equal(nearestIndex([0, 2, 4, 9], 7), 3);
  assert.equal(nearestIndex([0, 2, 4, 9], -5), 0);
  assert.equal(nearestIndex([0, 2, 4, 9], 100), 3);
});

test("follows the newest step while live, stops when the user scrubs back, resumes at the end", () => {
  const s = new Scrubber({ totalSteps: 10, frames: 5 });
  s.addSteps([0]);
  assert.equal(s.step, 0);
  s.addSteps([1, 2]);
  assert.equal(s.step, 2);
  s.setStep(1);
  assert.equal(s.follow, false);
  s.addSteps([3]);
  assert.equal(s.step, 1, "stays where the user put it");
  s.stepBy(5);
  assert.equal(s.step, 3);
  assert.equal(s.follow, true);
  s.addSteps([4]);
  assert.equal(s.step, 4);
});

test("steps snap to captured ones (every k-th step)", () => {
  const s = new Scrubber({ totalSteps: 20, frames: 1 });
  s.addSteps([0, 5, 10, 15, 19]);
  s.setStep(7);
  assert.equal(s.step, 5);
  s.setStep(8);
  assert.equal(s.step, 10);
  s.stepBy(1);
  assert.equal(s.step, 15);
  s.stepBy(-10);
  assert.equal(s.step, 0);
});

test("frames clamp for keys and wrap during playback", () => {
  const s = new Scrubber({ totalSteps: 3, frames: 3 });
  s.addSteps([0, 1, 2]);
  s.frameBy(-1);
  assert.equal(s.frame, 0);
  s.frameBy(10);
  assert.equal(s.frame, 2);
  s.play("frames");
  s.tick();
  assert.equal(s.frame, 0);
  s.tick();
  assert.equal(s.frame, 1);
  s.toggle("frames");
  assert.equal(s.playing, null);
  s.tick();
  assert.equal(s.frame, 1, "no movement while paused");
});

test("playing over steps wraps and takes the position from live-follow", () => {
  const s = new Scrubber({ totalSteps: 3, frames: 1 });
  s.addSteps([0, 1, 2]);
  s.play("steps");
  s.tick();
  assert.equal(s.step, 0);
  assert.equal(s.follow, false);
  s.tick();
  assert.equal(s.step, 1);
  assert.throws(() => s.play("layers"));
});

test("listeners hear what changed; no event when nothing moves", () => {
  const s = new Scrubber({ totalSteps: 5, frames: 2 });
  const heard = [];
  s.subscribe((change) => heard.push(change));
  s.addSteps([0, 1]);
  s.setStep(1);
  s.setStep(0);
  s.setFrame(1);
  s.setFrame(1);
  assert.deepEqual(heard, ["available", "step", "frame"]);
});

test("configure clamps the frame to the new frame count", () => {
  const s = new Scrubber({ totalSteps: 5, frames: 9 });
  s.setFrame(8);
  s.configure({ frames: 5 });
  assert.equal(s.frame, 4);
});

test("a wanted step and frame (a shared URL) are taken as soon as they exist", async () => {
  const { Scrubber } = await import("../state.js");
  const s = new Scrubber({ totalSteps: 20, frames: 1 });
  s.want({ step: 5, frame: 3 });
  assert.equal(s.frame, 0, "one frame known so far: frame 3 waits");
  s.configure({ frames: 6 });
  assert.equal(s.frame, 3);
  s.addSteps([0, 1, 2]);
  assert.equal(s.step, 2, "until step 5 arrives the newest is shown");
  s.addSteps([3, 4, 5, 6]);
  assert.equal(s.step, 5);
  assert.equal(s.follow, false, "a shared position stays where it is as steps arrive");
  s.addSteps([7]);
  assert.equal(s.step, 5);
  // A step that was not captured (every 2nd step): the nearest captured one.
  const every2 = new Scrubber({ totalSteps: 20, frames: 1 });
  every2.want({ step: 5 });
  every2.addSteps([0, 2, 4, 6, 8]);
  assert.equal(every2.step, 4);
  // Steps already there: straight away.
  const done = new Scrubber({ totalSteps: 4, frames: 2 });
  done.addSteps([0, 1, 2, 3]);
  done.want({ step: 1, frame: 1 });
  assert.deepEqual([done.step, done.frame, done.follow], [1, 1, false]);
});
