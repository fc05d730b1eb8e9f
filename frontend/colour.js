// Colour maps and colour scales for heatmaps (layer norms, difference maps, energy charts).

// Stops sampled from matplotlib's perceptually uniform maps, interpolated linearly.
const STOPS = {
  inferno: [
    [0, 0, 4], [22, 11, 57], [66, 10, 104], [106, 23, 110], [147, 38, 103], [188, 55, 84],
    [221, 81, 58], [243, 120, 25], [252, 165, 10], [246, 215, 70], [252, 255, 164],
  ],
  viridis: [
    [68, 1, 84], [72, 40, 120], [62, 74, 137], [49, 104, 142], [38, 130, 142], [31, 158, 137],
    [53, 183, 121], [109, 205, 89], [180, 222, 44], [216, 226, 25], [253, 231, 37],
  ],
};

const luts = new Map();

/** A 256-entry RGB lookup table (Uint8Array of 768) for a named colour map. */
export function colourMap(name = "inferno") {
  if (luts.has(name)) return luts.get(name);
  const stops = STOPS[name];
  if (!stops) throw new Error(`unknown colour map ${name}`);
  const lut = new Uint8Array(256 * 3);
  for (let i = 0; i < 256; i++) {
    const x = (i / 255) * (stops.length - 1);
    const a = Math.min(Math.floor(x), stops.length - 2);
    const t = x - a;
    for (let c = 0; c < 3; c++) lut[i * 3 + c] = Math.round(stops[a][c] * (1 - t) + stops[a + 1][c] * t);
  }
  luts.set(name, lut);
  return lut;
}

/** CSS colour of value v on [lo, hi]. */
export function cssColour(v, lo, hi, name = "inferno") {
  const lut = colourMap(name);
  const i = lutIndex(v, lo, hi);
  return `rgb(${lut[i * 3]},${lut[i * 3 + 1]},${lut[i * 3 + 2]})`;
}

/** Position 0..255 of v on [lo, hi] (clamped; a flat range maps to the middle). */
export function lutIndex(v, lo, hi) {
  if (!(hi > lo)) return 128;
  const t = (v - lo) / (hi - lo);
  return Math.max(0, Math.min(255, Math.round(t * 255)));
}

/** RGBA pixels of a row-major (h, w) plane on [lo, hi]; alpha 0..255 for every pixel. */
export function heatmapPixels(plane, lo, hi, name = "inferno", alpha = 255) {
  const lut = colourMap(name);
  const out = new Uint8ClampedArray(plane.length * 4);
  for (let p = 0; p < plane.length; p++) {
    const i = lutIndex(plane[p], lo, hi) * 3;
    out[p * 4] = lut[i];
    out[p * 4 + 1] = lut[i + 1];
    out[p * 4 + 2] = lut[i + 2];
    out[p * 4 + 3] = alpha;
  }
  return out;
}

/** {min, max, mean} of a typed array (NaNs skipped). */
export function summary(values) {
  let min = Infinity;
  let max = -Infinity;
  let sum = 0;
  let n = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (Number.isNaN(v)) continue;
    if (v < min) min = v;
    if (v > max) max = v;
    sum += v;
    n++;
  }
  return { min, max, mean: n ? sum / n : NaN };
}

/**
 * Per-layer summaries of one step's layer norms, shape (members, layers, F', H', W'):
 * an array over the L axis of {min, max, mean} across members, frames and tokens.
 */
export function layerStats(array) {
  const [members, layers] = array.shape;
  const block = array.shape.slice(2).reduce((a, b) => a * b, 1);
  const out = [];
  for (let l = 0; l < layers; l++) {
    let min = Infinity;
    let max = -Infinity;
    let sum = 0;
    for (let m = 0; m < members; m++) {
      const s = summary(array.data.subarray((m * layers + l) * block, (m * layers + l + 1) * block));
      min = Math.min(min, s.min);
      max = Math.max(max, s.max);
      sum += s.mean;
    }
    out.push({ min, max, mean: sum / members });
  }
  return out;
}

export const SCALE_MODES = {
  global: "global: every step and layer share one range",
  layer: "per layer: the chosen layer's range over all steps",
  step: "per step: the chosen layer's range at this step",
};

/**
 * The colour range for the chosen layer (its position on the L axis) at `step`, from the
 * per-step layer summaries already computed (a Map step → layerStats output). No refetch: the
 * three modes only pick different summaries.
 */
export function colourRange(mode, statsByStep, step, layerPos) {
  let lo = Infinity;
  let hi = -Infinity;
  const take = (s) => {
    if (!s) return;
    lo = Math.min(lo, s.min);
    hi = Math.max(hi, s.max);
  };
  if (mode === "step") {
    take(statsByStep.get(step)?.[layerPos]);
  } else if (mode === "layer") {
    for (const stats of statsByStep.values()) take(stats[layerPos]);
  } else if (mode === "global") {
    for (const stats of statsByStep.values()) stats.forEach(take);
  } else {
    throw new Error(`unknown colour scale ${mode}`);
  }
  return lo <= hi ? { lo, hi } : null;
}
