// In-memory caches of a run's previews (decoded ImageBitmaps) and arrays (parsed .npy), filled
// in the background as steps arrive, so scrubbing draws from memory with no network round trip.
// Artifacts never change once written (the API marks them immutable), so nothing is refetched
// while it is held. Arrays are held within a byte budget: past it the least recently used ones
// are dropped (a 14B run's layer norms are ~5 MB a step; 50 steps of two trajectories would
// not fit a browser tab comfortably) and fetched again if asked for again.

import { artifactUrl, fetchArray, fetchBitmap } from "./api.js";

/** Default bytes of arrays kept in memory per open run. */
export const ARRAY_BUDGET_BYTES = 512 * 1024 * 1024;

export class AssetCache {
  constructor(
    jobId,
    { concurrency = 6, arrayBudget = ARRAY_BUDGET_BYTES, fetchers = { bitmap: fetchBitmap, array: fetchArray } } = {},
  ) {
    this.jobId = jobId;
    this.concurrency = concurrency;
    this.arrayBudget = arrayBudget;
    this.arrayBytes = 0; // bytes of the arrays in `ready`
    this.evictions = 0;
    this.fetchers = fetchers;
    this.ready = new Map(); // path → ImageBitmap | parsed array
    this.arrays = new Map(); // path → bytes, for the arrays in `ready`, least recently used first
    this.failed = new Map(); // path → Error
    this.queued = []; // {path, kind} waiting, newest requests first for priority ones
    this.inFlight = new Set();
    this.onLoad = new Set(); // listeners (path, value)
    this.aborter = new AbortController();
  }

  get(path) {
    const bytes = this.arrays.get(path);
    if (bytes !== undefined) {
      this.arrays.delete(path); // now the most recently used
      this.arrays.set(path, bytes);
    }
    return this.ready.get(path) ?? null;
  }

  has(path) {
    return this.ready.has(path);
  }

  /** Ask for `path` ("bitmap" or "array"); `urgent` ones jump the queue (what is on screen). */
  want(path, kind, urgent = false) {
    if (!path || this.ready.has(path) || this.inFlight.has(path) || this.failed.has(path)) return;
    const existing = this.queued.findIndex((item) => item.path === path);
    if (existing >= 0) {
      if (!urgent) return;
      this.queued.splice(existing, 1);
    }
    if (urgent) this.queued.unshift({ path, kind });
    else this.queued.push({ path, kind });
    this.pump();
  }

  pump() {
    while (this.inFlight.size < this.concurrency && this.queued.length) {
      const { path, kind } = this.queued.shift();
      this.inFlight.add(path);
      this.fetchers[kind](artifactUrl(this.jobId, path), this.aborter.signal)
        .then((value) => {
          this.ready.set(path, value);
          if (kind === "array") this.holdArray(path, value);
          for (const listener of this.onLoad) listener(path, value, kind);
        })
        .catch((error) => {
          if (error.name !== "AbortError") this.failed.set(path, error);
        })
        .finally(() => {
          this.inFlight.delete(path);
          this.pump();
        });
    }
  }

  /** Count a loaded array against the budget; drop the least recently used others past it. */
  holdArray(path, value) {
    const bytes = value?.data?.byteLength ?? 0;
    this.arrays.set(path, bytes);
    this.arrayBytes += bytes;
    for (const [old, oldBytes] of this.arrays) {
      if (this.arrayBytes <= this.arrayBudget) break;
      if (old === path) continue; // the one just loaded stays, even alone over the budget
      this.arrays.delete(old);
      this.ready.delete(old);
      this.arrayBytes -= oldBytes;
      this.evictions += 1;
    }
  }

  /** Everything asked for so far is loaded (or failed). */
  get idle() {
    return this.queued.length === 0 && this.inFlight.size === 0;
  }

  subscribe(listener) {
    this.onLoad.add(listener);
    return () => this.onLoad.delete(listener);
  }

  dispose() {
    this.aborter.abort();
    this.queued = [];
    for (const value of this.ready.values()) value?.close?.(); // ImageBitmaps hold decoded pixels
    this.ready.clear();
    this.arrays.clear();
    this.arrayBytes = 0;
    this.onLoad.clear();
  }
}
