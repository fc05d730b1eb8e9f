// Differences of x̂₀ arrays (members, C, F, H, W) computed in the browser: what one step changed,
// or how two trajectories differ at the same step.

/**
 * Mean over channels of |a − b| for one member and latent frame: {data: Float32Array(H·W), h, w}.
 * Both arrays must have the same shape past the member axis; a member beyond an array's own
 * count uses its last (a one-member baseline against an ensemble member).
 */
export function channelMeanAbsDiff(a, b, member, frame) {
  const [, channels, frames, h, w] = a.shape;
  const tail = JSON.stringify(a.shape.slice(1));
  if (tail !== JSON.stringify(b.shape.slice(1))) throw new RangeError(`x̂₀ shapes differ: ${a.shape} vs ${b.shape}`);
  if (frame < 0 || frame >= frames) throw new RangeError(`frame ${frame} outside 0..${frames - 1}`);
  const plane = h * w;
  const memberSize = channels * frames * plane;
  const offsetA = Math.min(member, a.shape[0] - 1) * memberSize + frame * plane;
  const offsetB = Math.min(member, b.shape[0] - 1) * memberSize + frame * plane;
  const out = new Float32Array(plane);
  for (let c = 0; c < channels; c++) {
    const ca = offsetA + c * frames * plane;
    const cb = offsetB + c * frames * plane;
    for (let i = 0; i < plane; i++) out[i] += Math.abs(a.data[ca + i] - b.data[cb + i]);
  }
  for (let i = 0; i < plane; i++) out[i] /= channels;
  return { data: out, h, w };
}
