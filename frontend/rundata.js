// What the explorer knows about one run: built from the job's event stream (replayed from the
// start, then live) and the manifest. Both name the same steps, so merging is idempotent.

import {
  DECODE,
  EXPERIMENT_STARTED,
  METRIC,
  QUEUED,
  STARTED,
  STEP,
  TERMINAL,
  TRAJECTORY_FINISHED,
  TRAJECTORY_STARTED,
} from "./contract/events.js";
import { FINISHED, RUNNING } from "./contract/run_format.js";

// The shared models, as the explorer reads them. The manifest's full types live in
// backend/stepscope/run_format.py (JSON Schema: GET /api/schema/manifest, docs/schema/manifest.schema.json);
// these typedefs name the parts read here.

/** @typedef {import("./contract/events.js").JobEvent} JobEvent */
/** @typedef {import("./contract/events.js").Progress} Progress */

/**
 * One captured step of a trajectory, as `step` events and the manifest name it.
 * @typedef {{index: number, t: number, sigma: number, expert: string, artifacts: Object<string, string>}} StepRecord
 */

/**
 * A full decode of a step (or of the final latents): run-relative directory, frame count, video file, VAE dtype.
 * @typedef {{dir: string, frames: number, video?: string, dtype?: string}} DecodeRecord
 */

/**
 * A trajectory as the explorer holds it (baseline, variant, sweep member or swap source).
 * @typedef {{name: string, kind: string|null, status: string, seeds: number[]|null,
 *   steps: Map<number, StepRecord>, commitmentStep: number|null, convergence: string|null,
 *   final: Object|null, decodes: Map<number|string, DecodeRecord>, meta: Object}} TrajectoryView
 */

/**
 * The run manifest (format 3; older formats are read by the API and load_run): the fields the explorer uses.
 * @typedef {{format_version: number, status: string, spec: Object, model: Object, shapes: Object,
 *   trajectories: Object<string, Object>, sweeps?: Object<string, Object>, warnings?: string[]}} Manifest
 */

/**
 * @param {string} name
 * @param {string|null} [kind]
 * @returns {TrajectoryView}
 */
function newTrajectory(name, kind = null) {
  return {
    name,
    kind,
    status: RUNNING,
    seeds: null,
    steps: new Map(), // step index → {index, t, sigma, expert, artifacts}
    commitmentStep: null,
    convergence: null, // run-relative path of convergence.npy
    final: null,
    decodes: new Map(), // step (number or "final") → {dir, frames, video, dtype}
    meta: {},
  };
}

/** What the explorer knows about one run, merged from its events and its manifest. */
export class RunData {
  /** @param {string} jobId */
  constructor(jobId) {
    this.jobId = jobId;
    this.manifest = null;
    this.spec = null; // from the job record, known before the manifest exists
    this.trajectories = new Map();
    this.metrics = new Map(); // variant → {file, difference, max_cka_x0_distance, final_relative_l2}
    this.status = QUEUED;
    this.error = null;
    this.progress = { done: 0, total: 0 };
    this.worker = null;
  }

  /**
   * The named trajectory, created on first mention.
   * @param {string} name
   * @param {string|null} [kind]
   * @returns {TrajectoryView}
   */
  trajectory(name, kind = null) {
    let traj = this.trajectories.get(name);
    if (!traj) {
      traj = newTrajectory(name, kind);
      this.trajectories.set(name, traj);
    } else if (kind && !traj.kind) {
      traj.kind = kind;
    }
    return traj;
  }

  /**
   * Apply one event; returns its type (what changed) for the views.
   * @param {JobEvent} event
   * @returns {string}
   */
  apply(event) {
    if (event.progress) this.progress = event.progress;
    switch (event.type) {
      case QUEUED:
        this.status = QUEUED;
        break;
      case STARTED:
        this.status = RUNNING;
        this.worker = event.worker ?? null;
        break;
      case EXPERIMENT_STARTED:
        this.status = RUNNING;
        break;
      case TRAJECTORY_STARTED:
        this.trajectory(event.trajectory, event.kind).status = RUNNING;
        break;
      case STEP: {
        const traj = this.trajectory(event.trajectory);
        traj.steps.set(event.index, {
          index: event.index,
          t: event.t,
          sigma: event.sigma,
          expert: event.expert,
          artifacts: event.artifacts,
        });
        break;
      }
      case DECODE:
        this.trajectory(event.trajectory).decodes.set(event.step, {
          dir: event.dir,
          frames: event.frames,
          video: event.video,
          dtype: event.dtype,
        });
        break;
      case TRAJECTORY_FINISHED: {
        const traj = this.trajectory(event.trajectory, event.kind);
        traj.status = FINISHED;
        traj.commitmentStep = event.commitment_step ?? null;
        traj.convergence = event.convergence ?? null;
        traj.final = event.final ?? null;
        break;
      }
      case METRIC:
        this.metrics.set(event.variant, {
          file: event.file,
          difference: event.difference,
          max_cka_x0_distance: event.max_cka_x0_distance,
          final_relative_l2: event.final_relative_l2,
        });
        break;
      default:
        if (TERMINAL.has(event.type)) {
          this.status = event.type;
          this.error = event.error ?? null;
        }
    }
    return event.type;
  }

  /** Merge the run's decode list (GET /decodes): decodes made during the run and requested after. */
  mergeDecodes(list) {
    for (const d of list ?? []) this.trajectory(d.trajectory).decodes.set(d.step, d);
  }

  /**
   * Merge a (possibly partial) manifest: shapes, probes, and whatever steps it already lists.
   * @param {Manifest} manifest
   */
  mergeManifest(manifest) {
    this.manifest = manifest;
    for (const [name, entry] of Object.entries(manifest.trajectories ?? {})) {
      const traj = this.trajectory(name, entry.kind);
      traj.seeds = entry.seeds ?? traj.seeds;
      traj.meta = entry;
      if (entry.status) traj.status = entry.status;
      for (const record of entry.steps ?? []) {
        if (!traj.steps.has(record.index)) traj.steps.set(record.index, record);
      }
      for (const d of entry.decodes ?? []) traj.decodes.set(d.step, d);
      if (entry.convergence) {
        traj.commitmentStep = entry.convergence.commitment_step ?? null;
        traj.convergence = entry.convergence.file ?? traj.convergence;
      }
      if (entry.final) traj.final = entry.final;
    }
    for (const [variant, summary] of Object.entries(manifest.metrics ?? {})) {
      if (!this.metrics.has(variant)) this.metrics.set(variant, summary);
    }
    if (manifest.status && TERMINAL.has(manifest.status)) this.status = manifest.status;
  }

  get ended() {
    return TERMINAL.has(this.status);
  }

  stepIndices(name) {
    const traj = this.trajectories.get(name);
    return traj ? [...traj.steps.keys()].sort((a, b) => a - b) : [];
  }

  stepRecord(name, step) {
    return this.trajectories.get(name)?.steps.get(step) ?? null;
  }

  /** Every step index that some trajectory has data for. */
  allSteps() {
    const steps = new Set();
    for (const traj of this.trajectories.values()) for (const s of traj.steps.keys()) steps.add(s);
    return [...steps].sort((a, b) => a - b);
  }

  /** Trajectories worth viewing: baseline, variants, swap sources, then sweep members (by sweep, in order). */
  viewable() {
    const order = { baseline: 0, variant: 1, swap_source: 2, sweep_member: 3 };
    const rank = (t) => order[t.kind] ?? 4;
    return [...this.trajectories.values()].sort((a, b) => rank(a) - rank(b) || (rank(a) === 3 ? a.name.localeCompare(b.name) : 0));
  }

  /** Sweep members, grouped: [{sweep, members: [name, …]}] in the manifest's order (members in order of values). */
  sweepGroups() {
    const groups = new Map();
    for (const [name, sweep] of Object.entries(this.manifest?.sweeps ?? {})) groups.set(name, [...(sweep.members ?? [])]);
    for (const t of this.trajectories.values()) {
      if (t.kind !== "sweep_member") continue;
      const sweep = t.meta?.sweep ?? t.name.slice(0, t.name.lastIndexOf("."));
      if (!groups.has(sweep)) groups.set(sweep, []);
      if (!groups.get(sweep).includes(t.name)) groups.get(sweep).push(t.name);
    }
    return [...groups].map(([sweep, members]) => ({ sweep, members }));
  }

  /** The manifest's sweeps: name → {intervention, over, values, members, start_steps, curve}. */
  get sweeps() {
    return this.manifest?.sweeps ?? {};
  }

  /** The manifest's warnings (e.g. a layer swap that equals a smaller one). */
  get warnings() {
    return this.manifest?.warnings ?? [];
  }

  variants() {
    return [...this.trajectories.values()].filter((t) => t.kind === "variant").map((t) => t.name);
  }

  members(name) {
    const traj = this.trajectories.get(name);
    return traj?.seeds?.length ?? traj?.meta?.seeds?.length ?? 1;
  }

  get totalSteps() {
    return (this.manifest?.spec ?? this.spec)?.steps ?? 0;
  }

  get videoFrames() {
    return this.manifest?.shapes?.video?.[0] ?? (this.manifest?.spec ?? this.spec)?.frames ?? 1;
  }

  get latentFrames() {
    return this.manifest?.shapes?.latent?.[1] ?? Math.floor((this.videoFrames - 1) / this.temporal) + 1;
  }

  get temporal() {
    return this.manifest?.model?.vae_temporal ?? 4;
  }

  get numLayers() {
    return this.manifest?.model?.num_layers ?? 0;
  }

  /** Layer indices the L axis of the norm arrays holds. */
  get probedLayers() {
    return this.manifest?.probes?.layers ?? [];
  }

  get normPass() {
    return this.manifest?.probes?.passes?.[0] ?? "cond";
  }

  get experts() {
    return this.manifest?.model?.experts ?? [];
  }
}

/**
 * A sweep's summary curve as chart series over its swept values: final 1 − CKA of x̂₀, of the
 * hidden states (mean over the recorded layers; null where a member has none), final relative
 * L2, and the task score when any member has one. Points keep the member's index and name.
 */
export function sweepCurves(sweep) {
  const values = sweep?.values ?? [];
  const curve = sweep?.curve ?? {};
  const members = sweep?.members ?? [];
  const mean = (row) => {
    const finite = (row ?? []).filter((v) => Number.isFinite(v));
    return finite.length ? finite.reduce((a, b) => a + b, 0) / finite.length : null;
  };
  const series = (key, name, pick = (v) => v) => ({
    key,
    name,
    points: values.map((x, i) => ({ x, y: pick(curve[key]?.[i]) ?? null, index: i, member: members[i] ?? null })),
  });
  const out = [
    series("cka_x0_distance_final", "1 − CKA of x̂₀ (final)"),
    series("hidden_state_cka_distance_final", "1 − CKA of hidden states (final, mean over layers)", mean),
    series("final_relative_l2", "relative L2 (final)"),
  ];
  if ((curve.score ?? []).some((v) => v !== null && v !== undefined)) out.push(series("score", "task score"));
  return out;
}

/** Compare two Redis stream ids ("ms-seq"): negative, zero or positive. */
export function compareStreamIds(a, b) {
  const [am, as] = a.split("-").map(BigInt);
  const [bm, bs] = b.split("-").map(BigInt);
  if (am !== bm) return am < bm ? -1 : 1;
  if (as !== bs) return as < bs ? -1 : 1;
  return 0;
}
