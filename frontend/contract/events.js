// Generated from backend/stepscope/events.py by `python -m stepscope.events`: do not edit.
// tests/hardening/test_event_vocabulary.py fails when this file and events.py disagree.

export const QUEUED = "queued";
export const STARTED = "started";
export const EXPERIMENT_STARTED = "experiment_started";
export const TRAJECTORY_STARTED = "trajectory_started";
export const STEP = "step";
export const DECODE = "decode";
export const TRAJECTORY_FINISHED = "trajectory_finished";
export const METRIC = "metric";
export const BENCH_INSTANCE = "bench_instance";
export const FINISHED = "finished";
export const FAILED = "failed";
export const CANCELLED = "cancelled";
export const STREAM_CLOSING = "stream_closing";

/** @typedef {"queued"|"started"|"experiment_started"|"trajectory_started"|"step"|"decode"|"trajectory_finished"|"metric"|"bench_instance"|"finished"|"failed"|"cancelled"|"stream_closing"} EventType */
/** @typedef {{done: number, total: number}} Progress */
/**
 * One event of a job's stream (the SSE `data`): `type` names it; which other fields it has depends on
 * the type (see the constructors in events.py).
 * @typedef {{type: EventType, progress?: Progress, trajectory?: string, kind?: string,
 *   step?: number|string, variant?: string, job?: string, error?: string|null,
 *   reason?: string}} JobEvent
 */

/** Every event type a job's stream carries, in the order a job emits them. */
export const EVENT_TYPES = Object.freeze(["queued", "started", "experiment_started", "trajectory_started", "step", "decode", "trajectory_finished", "metric", "bench_instance", "finished", "failed", "cancelled"]);
/** The final statuses of a job: its stream ends after one of these. */
export const FINAL_STATUSES = Object.freeze(["finished", "failed", "cancelled"]);
/** @type {Set<string>} */
export const TERMINAL = new Set(FINAL_STATUSES);
