// Latent frames ↔ video frames. The Wan VAE is causal and 4× temporal: latent frame 0 decodes
// to video frame 0 alone, latent frame k ≥ 1 to video frames 4k−3 … 4k.

import { framePath } from "./contract/run_format.js";

/** The video frames {first, last} that latent frame `k` covers (clamped to the video's length). */
export function videoFramesOfLatent(k, temporal = 4, videoFrames = Infinity) {
  if (!Number.isInteger(k) || k < 0) throw new RangeError(`latent frame must be a non-negative integer, got ${k}`);
  if (k === 0) return { first: 0, last: 0 };
  const first = temporal * k - (temporal - 1);
  const last = Math.min(temporal * k, videoFrames - 1);
  return { first, last };
}

/** The latent frame that holds video frame `v`. */
export function latentOfVideoFrame(v, temporal = 4) {
  if (!Number.isInteger(v) || v < 0) throw new RangeError(`video frame must be a non-negative integer, got ${v}`);
  return v === 0 ? 0 : Math.ceil(v / temporal);
}

/** Latent frames of a video of `videoFrames` frames (4k+1 → k+1). */
export function latentFrameCount(videoFrames, temporal = 4) {
  return Math.floor((videoFrames - 1) / temporal) + 1;
}

/** A label such as "video frame 0" or "video frames 5–8". */
export function videoFramesLabel(k, temporal = 4, videoFrames = Infinity) {
  const { first, last } = videoFramesOfLatent(k, temporal, videoFrames);
  return first === last ? `video frame ${first}` : `video frames ${first}–${last}`;
}

/** The decoded video frame that stands for latent frame `k` (its last), as `<dir>/frame_NNN.jpg`. */
export function decodedFramePath(dir, k, temporal = 4, videoFrames = Infinity) {
  const { last } = videoFramesOfLatent(k, temporal, videoFrames);
  return framePath(dir, last);
}
