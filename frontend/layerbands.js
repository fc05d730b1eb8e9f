// Where a layer sits in the depth of the model: the roles found in Wan's 40-layer DiT are
// global structure early (0–9), entities and reasoning in the middle (10–29), consolidation late.

/** Early / middle / late band of a layer: first quarter, middle half, last quarter of the depth. */
export function layerBand(layer, numLayers) {
  if (layer < Math.floor(numLayers / 4)) return "early";
  if (layer < numLayers - Math.floor(numLayers / 4)) return "middle";
  return "late";
}

/** The layer ranges of each band, e.g. {early: [0, 9], middle: [10, 29], late: [30, 39]}. */
export function bandRanges(numLayers) {
  const quarter = Math.floor(numLayers / 4);
  return {
    early: [0, quarter - 1],
    middle: [quarter, numLayers - quarter - 1],
    late: [numLayers - quarter, numLayers - 1],
  };
}
