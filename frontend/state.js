// The global position every panel shows: one denoising step and one latent frame.
// Steps are limited to those that have data (captured, and arrived so far); while a job runs
// the position follows the newest step until the user scrubs away from it.

/** Index in sorted `values` of the element nearest to `x` (ties go to the lower one); -1 if empty. */
export function nearestIndex(values, x) {
  if (values.length === 0) return -1;
  let lo = 0;
  let hi = values.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (values[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  if (lo > 0 && x - values[lo - 1] <= values[lo] - x) return lo - 1;
  return lo;
}

export class Scrubber {
  constructor({ totalSteps = 0, frames = 1 } = {}) {
    this.totalSteps = totalSteps; // steps of the run (0..totalSteps-1), captured or not
    this.frames = frames; // latent frames
    this.available = []; // sorted step indices with data
    this.step = null;
    this.frame = 0;
    this.playing = null; // null | "steps" | "frames"
    this.follow = true; // jump to each new step as it arrives
    this.pendingStep = null; // a step asked for (a shared URL) that has no data yet
    this.pendingFrame = null;
    this.listeners = new Set();
  }

  subscribe(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  emit(change) {
    for (const listener of this.listeners) listener(change, this);
  }

  configure({ totalSteps, frames }) {
    if (totalSteps !== undefined) this.totalSteps = totalSteps;
    if (frames !== undefined) {
      this.frames = Math.max(1, frames);
      if (this.pendingFrame !== null && this.pendingFrame < this.frames) {
        this.frame = this.pendingFrame;
        this.pendingFrame = null;
      }
      this.frame = Math.min(this.frame, this.frames - 1);
    }
    this.emit("config");
  }

  /** Add steps that now have data; follows the newest when following. */
  addSteps(steps) {
    const merged = new Set(this.available);
    let grew = false;
    for (const s of steps) {
      if (!merged.has(s)) {
        merged.add(s);
        grew = true;
      }
    }
    if (!grew) return;
    this.available = [...merged].sort((a, b) => a - b);
    const newest = this.available[this.available.length - 1];
    if (this.pendingStep !== null && newest >= this.pendingStep) {
      // Steps arrive in order: the asked-for step is here now, or was not captured (the nearest is).
      this.step = this.available[nearestIndex(this.available, this.pendingStep)];
      this.pendingStep = null;
      this.follow = false;
    } else if (this.step === null || this.follow) this.step = newest;
    this.emit("available");
  }

  /** Go to `step` and `frame` as soon as they exist (a shared URL's position); stops following. */
  want({ step, frame } = {}) {
    if (Number.isInteger(frame) && frame >= 0) {
      if (frame < this.frames) this.setFrame(frame);
      else this.pendingFrame = frame;
    }
    if (Number.isInteger(step) && step >= 0) {
      this.follow = false;
      if (this.newest !== null && this.newest >= step) this.setStep(step);
      else this.pendingStep = step;
    }
  }

  get newest() {
    return this.available.length ? this.available[this.available.length - 1] : null;
  }

  /** Go to the available step nearest to `n`; scrubbing to the newest step resumes following. */
  setStep(n) {
    const i = nearestIndex(this.available, n);
    if (i < 0) return false;
    const step = this.available[i];
    this.follow = step === this.newest;
    if (step === this.step) return false;
    this.step = step;
    this.emit("step");
    return true;
  }

  /** Move `delta` available steps from the current one (clamped at both ends). */
  stepBy(delta) {
    if (!this.available.length) return false;
    const here = Math.max(0, nearestIndex(this.available, this.step ?? 0));
    const i = Math.max(0, Math.min(this.available.length - 1, here + delta));
    return this.setStep(this.available[i]);
  }

  setFrame(n) {
    const frame = Math.max(0, Math.min(this.frames - 1, Math.round(n)));
    if (frame === this.frame) return false;
    this.frame = frame;
    this.emit("frame");
    return true;
  }

  frameBy(delta) {
    return this.setFrame(this.frame + delta);
  }

  play(mode) {
    if (mode !== "steps" && mode !== "frames") throw new Error(`play over steps or frames, not ${mode}`);
    this.playing = mode;
    this.emit("play");
  }

  pause() {
    if (this.playing === null) return;
    this.playing = null;
    this.emit("play");
  }

  toggle(mode) {
    if (this.playing) this.pause();
    else this.play(mode);
  }

  /** One tick of playback: the next step or frame, wrapping around at the end. */
  tick() {
    if (this.playing === "steps" && this.available.length) {
      const i = nearestIndex(this.available, this.step ?? 0);
      const next = this.available[(i + 1) % this.available.length];
      this.step = next;
      this.follow = false; // playback owns the position until paused
      this.emit("step");
    } else if (this.playing === "frames") {
      this.frame = (this.frame + 1) % this.frames;
      this.emit("frame");
    }
  }
}
