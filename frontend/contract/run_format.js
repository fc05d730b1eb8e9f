// Generated from backend/stepscope/run_format.py by `python -m stepscope.run_format`: do not edit.
// tests/unit/test_run_format.py fails when this file and run_format.py disagree.

export const FORMAT = "stepscope-run/3";
export const MANIFEST = "manifest.json";
export const BASELINE = "baseline";
export const LAYER_NORMS = "layer_norms";
/** A run's statuses; it ends with one of FINAL_STATUSES. */
export const RUN_STATUSES = Object.freeze(["running", "finished", "failed", "cancelled"]);
export const FINAL_STATUSES = Object.freeze(["finished", "failed", "cancelled"]);
export const RUNNING = "running";
export const FINISHED = "finished";
export const FAILED = "failed";
export const CANCELLED = "cancelled";

/** step_007: a step's name in paths (3 digits). */
export const stepName = (index) => `step_${String(index).padStart(3, "0")}`;
/** A decoded video frame of a decode or final dir: <dir>/frame_016.jpg (3 digits). */
export const framePath = (framesDir, index) =>
  `${framesDir}/frame_${String(index).padStart(3, "0")}.jpg`;
/** The key of a CFG pass's layer norms in a step record's `artifacts`: layer_norms.cond */
export const layerNormsKey = (pass) => `${LAYER_NORMS}.${pass}`;
/** Whether a run path is a layer-norm array (trajectories/<name>/layer_norms/<pass>/step_NNN.npy). */
export const isLayerNormsPath = (path) => path.includes(`/${LAYER_NORMS}/`);
