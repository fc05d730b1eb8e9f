// The global position controls: one step slider (with exact entry), one frame slider (with the
// video frames each latent frame covers), play/pause over steps or frames, and the keyboard.

import { h } from "../dom.js";
import { videoFramesLabel } from "../frames.js";

const FPS_CHOICES = [2, 4, 8, 12, 24];
const KEYS_HINT = "←/→ step · ↑/↓ frame · space play · [ ] layer";

/** Controls whose value is set once (a dropdown, a number box): focus leaves them after a change. */
export function releasesFocus(target) {
  if (!(target instanceof HTMLElement)) return false;
  return target.tagName === "SELECT" || (target.tagName === "INPUT" && target.type === "number");
}

/** Keys typed into these inputs belong to the input, not to the scrubber (a radio group's arrows pick in it). */
function typingInto(target) {
  if (!(target instanceof HTMLElement)) return false;
  if (target.isContentEditable || target.tagName === "TEXTAREA" || target.tagName === "SELECT") return true;
  return target.tagName === "INPUT" && target.type !== "range" && target.type !== "checkbox";
}

/** What a focused field is called in the keys hint. */
function fieldName(target) {
  if (target.tagName === "SELECT") return "dropdown (↑/↓)";
  return target.type === "radio" ? "option group" : "field";
}

export class ScrubberBar {
  constructor(explorer) {
    this.explorer = explorer;
    this.scrubber = explorer.scrubber;
    this.fps = 8;
    this.playMode = "steps";
    this.timer = null;
    this.build();
    this.unsubscribe = this.scrubber.subscribe((change) => {
      if (change === "play") this.restartTimer();
    });
    this.onKey = (event) => this.key(event);
    document.addEventListener("keydown", this.onKey);
    // A dropdown or number box keeps focus after it is used, and focused it takes the arrow
    // keys: give focus back to the page once its value is set, so the shortcuts keep working.
    this.onChange = (event) => {
      if (releasesFocus(event.target) && this.explorer.element?.contains(event.target)) event.target.blur();
    };
    this.onFocus = () => this.showKeyOwner();
    document.addEventListener("change", this.onChange);
    document.addEventListener("focusin", this.onFocus);
    document.addEventListener("focusout", this.onFocus);
  }

  /** The keys hint says when a focused field has the keys (and how to give them back). */
  showKeyOwner() {
    queueMicrotask(() => {
      const owner = document.activeElement;
      const typing = typingInto(owner) && this.explorer.element?.contains(owner);
      this.keysHint.textContent = typing
        ? `keys go to the focused ${fieldName(owner)} · Esc or Enter gives them back`
        : KEYS_HINT;
      this.keysHint.classList.toggle("held", Boolean(typing));
    });
  }

  build() {
    const s = this.scrubber;
    this.stepSlider = h("input", {
      type: "range", id: "step-slider", min: 0, max: 0, step: 1, value: 0, "aria-label": "denoising step",
      oninput: () => s.setStep(Number(this.stepSlider.value)),
    });
    this.stepInput = h("input", {
      type: "number", id: "step-input", min: 0, step: 1, value: 0, class: "num", "aria-label": "exact step",
      onchange: () => this.enterStep(), onkeydown: (e) => e.key === "Enter" && (this.enterStep(), e.target.blur()),
    });
    this.stepTotal = h("span", { class: "muted", id: "step-total" });
    this.stepInfo = h("span", { class: "step-info", id: "step-info" });
    this.liveBadge = h("span", { class: "live-badge", id: "live-badge", title: "following the newest step" }, "● live");
    this.frameSlider = h("input", {
      type: "range", id: "frame-slider", min: 0, max: 0, step: 1, value: 0, "aria-label": "latent frame",
      oninput: () => s.setFrame(Number(this.frameSlider.value)),
    });
    this.frameInput = h("input", {
      type: "number", id: "frame-input", min: 0, step: 1, value: 0, class: "num", "aria-label": "exact latent frame",
      onchange: () => s.setFrame(Number(this.frameInput.value)),
      onkeydown: (e) => e.key === "Enter" && e.target.blur(),
    });
    this.frameTotal = h("span", { class: "muted", id: "frame-total" });
    this.frameInfo = h("span", { class: "frame-info", id: "frame-info" });
    this.playSteps = h("button", { class: "play", id: "play-steps", onclick: () => this.togglePlay("steps") }, "▶ steps");
    this.playFrames = h("button", { class: "play", id: "play-frames", onclick: () => this.togglePlay("frames") }, "▶ frames");
    this.fpsSelect = h(
      "select",
      { id: "play-fps", "aria-label": "playback speed", onchange: () => {
        this.fps = Number(this.fpsSelect.value);
        this.restartTimer();
      } },
      FPS_CHOICES.map((f) => h("option", { value: f, selected: f === this.fps }, `${f} fps`)),
    );
    this.keysHint = h("span", { class: "keys-hint muted", id: "keys-hint" }, KEYS_HINT);
    this.element = h(
      "div",
      { class: "scrubber" },
      h("div", { class: "scrub-row" },
        h("label", { class: "scrub-label", for: "step-slider" }, "Step"),
        this.stepSlider, this.stepInput, this.stepTotal, this.stepInfo, this.liveBadge,
        h("span", { class: "play-controls" }, this.playSteps, this.playFrames, this.fpsSelect)),
      h("div", { class: "scrub-row" },
        h("label", { class: "scrub-label", for: "frame-slider" }, "Frame"),
        this.frameSlider, this.frameInput, this.frameTotal, this.frameInfo,
        this.keysHint),
    );
  }

  enterStep() {
    const value = Number(this.stepInput.value);
    if (Number.isFinite(value)) this.scrubber.setStep(value);
    this.render(); // show the snapped step even when it did not change
  }

  togglePlay(mode) {
    if (this.scrubber.playing === mode) this.scrubber.pause();
    else {
      this.playMode = mode;
      this.scrubber.play(mode);
    }
  }

  restartTimer() {
    clearInterval(this.timer);
    this.timer = null;
    if (this.scrubber.playing) this.timer = setInterval(() => this.scrubber.tick(), 1000 / this.fps);
    this.render();
  }

  key(event) {
    if ((event.key === "Escape" || (event.key === "Enter" && event.target.type === "radio")) && typingInto(event.target)
        && this.element.isConnected) {
      event.target.blur();
      return;
    }
    // ←/→ on a focused dropdown would pick another option without opening it (Chromium), e.g. right after Esc
    // closed its list: they step, as everywhere else; ↑/↓ still pick in it.
    if (event.target instanceof HTMLSelectElement && (event.key === "ArrowLeft" || event.key === "ArrowRight")
        && !event.altKey && !event.ctrlKey && !event.metaKey && this.explorer.element?.contains(event.target)) {
      event.target.blur();
      this.scrubber.stepBy(event.key === "ArrowLeft" ? -1 : 1);
      event.preventDefault();
      return;
    }
    if (event.altKey || event.ctrlKey || event.metaKey || typingInto(event.target)) return;
    if (!this.element.isConnected) return;
    const s = this.scrubber;
    switch (event.key) {
      case "ArrowLeft":
        s.stepBy(-1);
        break;
      case "ArrowRight":
        s.stepBy(1);
        break;
      case "ArrowUp":
        s.frameBy(1);
        break;
      case "ArrowDown":
        s.frameBy(-1);
        break;
      case " ":
        this.togglePlay(s.playing ?? this.playMode);
        break;
      case "[":
        this.explorer.layerBy(-1);
        break;
      case "]":
        this.explorer.layerBy(1);
        break;
      default:
        return;
    }
    event.preventDefault(); // also stops a focused range input from moving a second time
  }

  render() {
    const s = this.scrubber;
    const run = this.explorer.run;
    const total = Math.max(s.totalSteps, (s.newest ?? 0) + 1);
    this.stepSlider.max = Math.max(0, total - 1);
    this.stepInput.max = Math.max(0, total - 1);
    if (s.step !== null) {
      this.stepSlider.value = s.step;
      if (document.activeElement !== this.stepInput) this.stepInput.value = s.step;
    }
    // The part of the track with data: steps beyond the newest have not been computed yet.
    const filled = total > 1 ? (((s.newest ?? 0) / (total - 1)) * 100).toFixed(1) : 100;
    this.stepSlider.style.setProperty("--filled", `${filled}%`);
    this.stepTotal.textContent = `of 0–${total - 1}`;
    const record = s.step === null ? null : this.explorer.recordAt(s.step);
    this.stepInfo.replaceChildren(
      ...(record
        ? [
            h("span", { class: "kv" }, "σ ", h("b", {}, record.sigma.toFixed(4))),
            h("span", { class: "kv" }, "t ", h("b", {}, Number(record.t).toFixed(0))),
            h("span", { class: `kv expert expert-${this.explorer.expertIndex(record.expert)}` }, record.expert),
          ]
        : [h("span", { class: "muted" }, s.available.length ? "" : "waiting for the first step…")]),
    );
    this.liveBadge.hidden = !(s.follow && !run.ended && s.available.length > 0);
    this.frameSlider.max = Math.max(0, s.frames - 1);
    this.frameInput.max = Math.max(0, s.frames - 1);
    this.frameSlider.value = s.frame;
    if (document.activeElement !== this.frameInput) this.frameInput.value = s.frame;
    this.frameTotal.textContent = `of 0–${s.frames - 1}`;
    this.frameInfo.textContent = `latent ${s.frame} ↔ ${videoFramesLabel(s.frame, run.temporal, run.videoFrames || Infinity)}`;
    this.playSteps.textContent = s.playing === "steps" ? "❚❚ steps" : "▶ steps";
    this.playFrames.textContent = s.playing === "frames" ? "❚❚ frames" : "▶ frames";
    this.playSteps.classList.toggle("active", s.playing === "steps");
    this.playFrames.classList.toggle("active", s.playing === "frames");
    this.element.dataset.step = s.step ?? "";
    this.element.dataset.frame = s.frame;
    this.element.dataset.playing = s.playing ?? "";
  }

  dispose() {
    clearInterval(this.timer);
    this.unsubscribe();
    document.removeEventListener("keydown", this.onKey);
    document.removeEventListener("change", this.onChange);
    document.removeEventListener("focusin", this.onFocus);
    document.removeEventListener("focusout", this.onFocus);
  }
}
