// Latent frame ↔ video frame mapping of the causal 4× temporal Wan VAE.
import assert from "node:assert/strict";
import { test } from "node:test";

import { latentFrameCount, latentOfVideoFrame, videoFramesLabel, videoFramesOfLatent } from "../frames.js";

test("latent 0 is video frame 0, latent k covers 4k-3..4k", () => {
  assert.deepEqual(videoFramesOfLatent(0), { first: 0, last: 0 });
  assert.deepEqual(videoFramesOfLatent(1), { first: 1, last: 4 });
  assert.deepEqual(videoFramesOfLatent(5), { first: 17, last: 20 });
  assert.deepEqual(videoFramesOfLatent(20, 4, 81), { first: 77, last: 80 });
});

test("every video frame belongs to exactly one latent frame, and back", () => {
  const videoFrames = 81;
  const latents = latentFrameCount(videoFrames);
  assert.equal(latents, 21);
  const covered = [];
  for (let k = 0; k < latents; k++) {
    const { first, last } = videoFramesOfLatent(k, 4, videoFrames);
    for (let v = first; v <= last; v++) {
      covered.push(v);
      assert.equal(latentOfVideoFrame(v), k);
    }
  }
  assert.deepEqual(covered, Array.from({ length: videoFrames }, (_, i) => i));
});

test("labels", () => {
  assert.equal(videoFramesLabel(0), "video frame 0");
  assert.equal(videoFramesLabel(3), "video frames 9–12");
  assert.equal(latentFrameCount(17), 5);
  assert.equal(latentFrameCount(1), 1);
  assert.throws(() => videoFramesOfLatent(-1), RangeError);
});

test("a latent frame's decoded stand-in is its last video frame, clamped to the video", async () => {
  const { decodedFramePath } = await import("../frames.js");
  assert.equal(decodedFramePath("trajectories/baseline/final", 0), "trajectories/baseline/final/frame_000.jpg");
  assert.equal(decodedFramePath("d", 2), "d/frame_008.jpg");
  assert.equal(decodedFramePath("d", 20, 4, 81), "d/frame_080.jpg");
  assert.equal(decodedFramePath("d", 5, 4, 19), "d/frame_018.jpg");
  assert.throws(() => decodedFramePath("d", -1), RangeError);
});
