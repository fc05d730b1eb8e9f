// In-memory caches of a run's previews (decoded ImageBitmaps) and arrays (parsed .npy), filled
// in the background as steps arrive, so scrubbing draws from memory with no network round trip.
// Artifacts never change once written (the API marks them immutable), so nothing is refetched.

import { artifactUrl, fetchArray, fetchBitmap } from "./api.js";

export class AssetCache {
  constructor(jobId, { concurrency = 6, fetchers = { bitmap: fetchBitmap, array: fetchArray } } = {}) {
    this.jobId = jobId;
    this.concurrency = concurrency;
    this.fetchers = fetchers;
    this.ready = new Map(); // path → ImageBitmap | parsed array
    this.failed = new Map(); // path → Error
    this.queued = []; // {path, kind} waiting, newest requests first for priority ones
    this.inFlight = new Set();
    this.onLoad = new Set(); // listeners (path, value)
    this.aborter = new AbortController();
  }

  get(path) {
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
          for (const listener of this.onLoad) listener(path, value);
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
    this.onLoad.clear();
  }
}
