// The submit form: model, prompts, first frame (image-to-video models), sampling, probes and
// experiment variants. Errors from the API ({detail, field}) appear next to the input the
// dotted field path names; the spec that is sent can be inspected before submitting.

import { ApiError, dataUrlToFile, models as fetchModels, request, specSchema, tasks } from "../api.js";
import { fill, h } from "../dom.js";
import { latentFrameCount } from "../frames.js";
import { variantPrefix } from "../interventions.js";
import { buildSpec, explainFieldError, FieldError, fieldBounds, fieldForError, interventionForms } from "../specform.js";

let nextId = 0;

function field(path, label, input, hint = null) {
  return h("div", { class: "field", dataset: { field: path } },
    h("label", { for: input.id }, label),
    input,
    hint ? h("span", { class: "hint" }, hint) : null,
    h("span", { class: "field-error", role: "alert" }));
}

function input(id, attrs = {}) {
  return h("input", { id, name: id, ...attrs });
}

// How the spinners move, where not by 1 (integers) or freely (numbers): multiples of 16 and 4k+1 frames
// (spec.py's validators; its JSON Schema does not carry them), guidance in halves. Steps only: every
// bound and default of these inputs comes from the spec's JSON Schema (applySchema).
const SPIN = { height: 16, width: 16, frames: 4, guidance: 0.5, guidance_2: 0.5 };

const EXAMPLE_PROMPT = "a red ball rolls through a green hedge maze, turns at two corners and stops at the exit";

export class SubmitView {
  constructor({ onSubmitted }) {
    this.onSubmitted = onSubmitted;
    this.models = [];
    this.variants = []; // [{name, interventions: [{kind, ...raw values}]}]
    this.build();
  }

  build() {
    this.model = h("select", { id: "model", name: "model", onchange: () => this.modelChanged(true) });
    // A real example, so that submitting the defaults makes a meaningful run.
    this.prompt = h("textarea", { id: "prompt", rows: 3, placeholder: "describe the video" });
    this.prompt.value = EXAMPLE_PROMPT;
    this.negative = h("textarea", { id: "negative-prompt", rows: 1, placeholder: "optional" });
    this.image = input("image", { type: "file", accept: "image/png,image/jpeg,image/webp,image/bmp,image/gif", onchange: () => this.showImage() });
    this.imageThumb = h("img", { class: "thumb", alt: "", hidden: true });
    // A reasoning-task instance (stepscope.tasks) fills the prompt, canvas and first frame.
    this.taskFamily = h("select", { id: "task-family", "aria-label": "task family" });
    this.taskDifficulty = h("select", { id: "task-difficulty", "aria-label": "task difficulty" }); // from GET /api/tasks
    this.taskSeed = input("task-seed", { type: "number", "aria-label": "task seed" });
    this.taskButton = h("button", { type: "button", id: "use-task", onclick: () => this.useTask() }, "Use this task");
    this.taskError = h("span", { class: "field-error", role: "alert" });
    this.task = null; // the task instance the run is scored against: {family, difficulty, seed, height, width, frames}
    this.taskNote = h("span", { id: "task-note", class: "muted" });
    this.taskClear = h("button", { type: "button", id: "clear-task", class: "small", hidden: true, onclick: () => this.setTask(null) }, "clear");
    // Bounds and defaults of the spec's own inputs arrive with its JSON Schema (start → applySchema).
    this.seed = input("seed", { type: "number" });
    this.steps = input("steps", { type: "number" });
    this.guidance = input("guidance", { type: "number" });
    this.guidance2 = input("guidance-2", { type: "number", placeholder: "same" });
    this.height = input("height", { type: "number" });
    this.width = input("width", { type: "number" });
    this.frames = input("frames", { type: "number", oninput: () => this.showLatentFrames() });
    this.framesHint = h("span", { class: "hint" });
    // A task is scored on its own square canvas and frame count: moving away from it drops the task.
    for (const el of [this.height, this.width, this.frames]) el.addEventListener("input", () => this.checkTaskCanvas());
    this.layers = input("probe-layers", { type: "text", placeholder: "all, none or 0-9, 20" });
    this.every = input("probe-every", { type: "number" });
    this.passes = h("select", { id: "probe-passes" }); // the choices are the schema's
    this.decodeSteps = input("probe-decode-steps", { type: "text", placeholder: "e.g. 5, 10" });
    this.finalDecode = input("probe-final-decode", { type: "checkbox" });
    // The inputs that are fields of the spec, by the spec's dotted name.
    this.specInputs = [
      ["task.seed", this.taskSeed], ["seed", this.seed], ["steps", this.steps], ["guidance", this.guidance],
      ["guidance_2", this.guidance2], ["height", this.height], ["width", this.width], ["frames", this.frames],
      ["probes.layers", this.layers], ["probes.every", this.every], ["probes.passes", this.passes],
      ["probes.decode_steps", this.decodeSteps], ["probes.final_decode", this.finalDecode],
    ];
    this.forms = {}; // intervention kind → form, from the spec's JSON Schema (see start())
    this.variantKind = h("select", { id: "add-variant-kind", "aria-label": "intervention kind", onchange: () => {
      for (const button of this.variantList.querySelectorAll(".add-to-variant")) button.textContent = `+ add ${this.kindLabel()} to this variant`;
    } });
    this.variantList = h("div", { class: "variants", dataset: { field: "variants" } });
    this.formError = h("div", { class: "form-error", id: "form-error", role: "alert", hidden: true });
    this.specPreview = h("pre", { class: "spec-json", id: "spec-json" });
    this.submitButton = h("button", { type: "submit", id: "submit", class: "primary" }, "Submit experiment");
    this.modelInfo = h("span", { class: "hint", id: "model-info" });
    this.imageField = field("image", "First frame (image-to-video)", this.image, "PNG/JPEG/WebP, stored with the run");
    this.imageField.appendChild(this.imageThumb);
    this.guidance2Field = field("guidance_2", "Guidance, low-noise expert", this.guidance2);

    this.form = h(
      "form",
      { class: "submit-form", id: "submit-form", novalidate: true, onsubmit: (e) => this.submit(e), oninput: (e) => this.clearFieldError(e.target) },
      h("div", { class: "form-head" },
        h("h1", {}, "New experiment"),
        h("p", { class: "muted" }, "A baseline trajectory plus optional variants with interventions. Every step's x̂₀ preview and per-layer token norms are recorded.")),
      this.formError,
      h("fieldset", {}, h("legend", {}, "Model and prompt"),
        h("div", { class: "grid-2" }, field("model", "Model", this.model), this.modelInfo),
        h("div", { class: "field", id: "task-row", dataset: { field: "task" } },
          h("label", { for: "task-family" }, "Task instance"),
          h("div", { class: "task-pick" }, this.taskFamily, this.taskDifficulty, this.taskSeed, this.taskButton),
          h("span", { class: "hint" }, "a maze, trajectory or pattern task: its prompt, size and first frame"),
          h("div", { class: "task-state" }, this.taskNote, this.taskClear),
          this.taskError),
        field("prompt", "Prompt", this.prompt),
        field("negative_prompt", "Negative prompt", this.negative),
        this.imageField),
      h("fieldset", {}, h("legend", {}, "Sampling"),
        h("div", { class: "grid-4" },
          field("seed", "Seed", this.seed),
          field("steps", "Steps", this.steps),
          field("guidance", "Guidance", this.guidance),
          this.guidance2Field,
          field("height", "Height", this.height),
          field("width", "Width", this.width),
          field("frames", "Frames (4k+1)", this.frames, this.framesHint))),
      h("fieldset", {}, h("legend", {}, "Probes"),
        h("div", { class: "grid-4" },
          field("probes.layers", "Layers", this.layers, "norms of these blocks"),
          field("probes.every", "Every k-th step", this.every),
          field("probes.passes", "CFG pass", this.passes),
          field("probes.decode_steps", "Full decodes at steps", this.decodeSteps)),
        h("div", { class: "field inline", dataset: { field: "probes.final_decode" } },
          this.finalDecode, h("label", { for: "probe-final-decode" }, "decode the final video"), h("span", { class: "field-error" }))),
      h("fieldset", {}, h("legend", {}, "Variants"),
        h("p", { class: "muted small" }, "Each variant reruns the baseline's inputs with its interventions and is compared with the baseline (difference, 1 − CKA, convergence)."),
        this.variantList,
        h("div", { class: "add-variant" }, h("label", { for: "add-variant-kind" }, "Intervention"), this.variantKind,
          h("button", { type: "button", id: "add-variant", onclick: () => this.addVariant(this.variantKind.value) }, "+ new variant with it"),
          h("span", { class: "hint" }, "or add it to a variant above"))),
      h("div", { class: "form-actions" },
        this.submitButton,
        h("details", { ontoggle: () => this.previewSpec() }, h("summary", {}, "Spec JSON"), this.specPreview)),
    );
    this.element = h("section", { class: "submit-view" }, this.form);
    this.showLatentFrames();
  }

  async start() {
    try {
      const [models, schema] = await Promise.all([fetchModels(), specSchema()]);
      this.models = models.models;
      this.defaultModel = models.default;
      this.forms = interventionForms(schema);
      this.applySchema(schema);
    } catch (error) {
      this.showFormError(error.detail ?? String(error));
      return;
    }
    fill(this.variantKind, this.kindOptions());
    fill(this.model, this.models.map((m) => h("option", { value: m.name },
      `${m.name}${m.workers ? "" : " (no worker)"}`)));
    // A served model first, else the default (what a spec without `model` runs on).
    const served = this.models.find((m) => m.workers > 0) ?? this.models.find((m) => m.name === this.defaultModel) ?? this.models[0];
    if (served) this.model.value = served.name;
    this.modelChanged(true);
    await this.startTasks();
  }

  /**
   * Give the spec's own inputs their bounds, defaults and choices from its JSON Schema, so that they
   * are spec.py's (a field the schema lacks throws: the form then says so instead of sending it).
   * A default becomes the input's `value` attribute; the model's suggestions (modelChanged) change
   * only what it shows.
   * @param {object} schema the ExperimentSpec's JSON Schema
   */
  applySchema(schema) {
    for (const [path, el] of this.specInputs) {
      const bounds = fieldBounds(schema, path);
      const initial = bounds.default === null || bounds.default === undefined ? "" : bounds.default;
      if (el.type === "checkbox") {
        el.defaultChecked = el.checked = Boolean(initial);
      } else if (el.tagName === "SELECT") {
        fill(el, bounds.options.map((option) => h("option", { value: option, defaultSelected: option === initial }, option)));
        el.value = String(initial);
      } else {
        if (el.type === "number") {
          for (const key of ["min", "max"]) if (bounds[key] !== undefined) el[key] = String(bounds[key]);
          el.step = String(SPIN[path] ?? bounds.step ?? "any");
        }
        el.defaultValue = Array.isArray(initial) ? initial.join(", ") : String(initial);
      }
    }
    this.showLatentFrames();
  }

  /** Offer the task families; with an image-to-video model, start from a real task (maze, seed 0). */
  async startTasks() {
    try {
      const { families } = await tasks.list();
      fill(this.taskFamily, families.map((f) => h("option", { value: f.name, title: f.description }, f.name)));
      const difficulties = [...new Set(families.flatMap((f) => f.difficulties))].sort((a, b) => a - b);
      fill(this.taskDifficulty, difficulties.map((d) => h("option", { value: d }, `difficulty ${d}`)));
    } catch (error) {
      this.taskError.textContent = error.detail ?? String(error);
      return;
    }
    // The task row's own difficulty and seed: the lowest difficulty and the spec's default seed.
    if (this.selectedModel()?.task === "i2v") await this.useTask("maze");
  }

  /**
   * Fill the prompt, height/width/frames and the first-frame upload from a task instance (by default
   * the one the task row names). The image goes into the file input, so it is submitted as any upload.
   * @param {string} family
   * @param {number|string} difficulty
   * @param {number|string} seed
   */
  async useTask(family = this.taskFamily.value, difficulty = this.taskDifficulty.value, seed = this.taskSeed.value) {
    this.taskError.textContent = "";
    this.taskButton.disabled = true;
    try {
      const task = await tasks.instance(family, difficulty, seed);
      this.taskFamily.value = task.family;
      this.taskDifficulty.value = String(task.difficulty);
      this.taskSeed.value = String(task.seed);
      this.prompt.value = task.prompt;
      this.height.value = task.height;
      this.width.value = task.width;
      this.frames.value = task.frames;
      const files = new DataTransfer();
      files.items.add(dataUrlToFile(task.image, `${task.family}-${task.difficulty}-${task.seed}.png`));
      this.image.files = files.files;
      this.showImage();
      this.showLatentFrames();
      this.setTask(task);
    } catch (error) {
      this.taskError.textContent = error.detail ?? String(error);
    } finally {
      this.taskButton.disabled = false;
    }
  }

  /** Score the run against `task` (an instance from GET /api/tasks/{family}), or not (null). */
  setTask(task, note = "") {
    this.task = task
      ? { family: task.family, difficulty: Number(task.difficulty), seed: Number(task.seed), height: Number(task.height), width: Number(task.width), frames: Number(task.frames) }
      : null;
    this.taskClear.hidden = !this.task;
    this.taskNote.dataset.scored = String(Boolean(this.task));
    this.taskNote.textContent = this.task
      ? `the run will be scored on ${this.task.family}, difficulty ${this.task.difficulty}, seed ${this.task.seed}`
      : note;
  }

  /** Drop the task if the canvas no longer is the task's (a task is scored only on its own canvas). */
  checkTaskCanvas() {
    const task = this.task;
    if (!task) return;
    if (Number(this.height.value) === task.height && Number(this.width.value) === task.width && Number(this.frames.value) === task.frames) return;
    this.setTask(null, `not scored: the canvas is no longer the task's ${task.width}×${task.height}×${task.frames} (use the task again to score it)`);
  }

    selectedModel() {
    return this.models.find((m) => m.name === this.model.value) ?? null;
  }

  modelChanged(applyDefaults) {
    const model = this.selectedModel();
    if (!model) return;
    if (applyDefaults) {
      for (const [key, el] of [["height", this.height], ["width", this.width], ["frames", this.frames], ["steps", this.steps]]) {
        if (model.defaults?.[key] !== undefined) el.value = model.defaults[key];
      }
    }
    this.imageField.hidden = model.task !== "i2v";
    this.guidance2Field.hidden = (model.experts?.length ?? 1) < 2;
    const experts = model.experts?.length > 1 ? ` · ${model.experts.length} experts (boundary ${model.boundary_ratio})` : "";
    this.modelInfo.textContent = `${model.description ?? ""} · ${model.task} · ${model.num_layers} layers${experts} · ${model.workers} worker(s), ${model.queued} queued`;
    this.showLatentFrames();
  }

  showLatentFrames() {
    const frames = Number(this.frames.value);
    this.framesHint.textContent = Number.isInteger(frames) && frames >= 1 ? `${latentFrameCount(frames)} latent frames` : "";
  }

  showImage() {
    const file = this.image.files?.[0];
    this.imageThumb.hidden = !file;
    if (file) this.imageThumb.src = URL.createObjectURL(file);
  }

  // -- variants ------------------------------------------------------------------------------

  /** The intervention kind chosen in the one kind picker, as its label. */
  kindLabel() {
    return (this.forms[this.variantKind.value]?.label ?? "intervention").toLowerCase();
  }

  kindOptions() {
    return Object.entries(this.forms).map(([kind, form]) => h("option", { value: kind }, form.label));
  }

  addVariant(kind) {
    const used = new Set(this.variants.map((v) => v.name));
    const base = variantPrefix(kind);
    let n = 1;
    while (used.has(`${base}${n}`)) n++;
    this.variants.push({ name: `${base}${n}`, interventions: [this.newIntervention(kind)] });
    this.renderVariants();
  }

  newIntervention(kind) {
    const values = { kind, uid: nextId++ };
    for (const f of this.forms[kind].fields) values[f.key] = f.initial ?? (f.type === "bool" ? false : "");
    return values;
  }

  renderVariants() {
    fill(this.variantList, this.variants.map((variant, vi) => {
      const name = input(`variant-${vi}-name`, { type: "text", value: variant.name, oninput: (e) => { variant.name = e.target.value; } });
      return h("div", { class: "variant-card", dataset: { field: `variants.${vi}` } },
        h("div", { class: "variant-head" },
          field(`variants.${vi}.name`, "Variant name", name),
          h("button", { type: "button", class: "icon", title: "remove variant", onclick: () => {
            this.variants.splice(vi, 1);
            this.renderVariants();
          } }, "✕")),
        h("div", { class: "interventions", dataset: { field: `variants.${vi}.interventions` } },
          variant.interventions.map((iv, ii) => this.renderIntervention(variant, vi, iv, ii))),
        h("span", { class: "field-error" }),
        h("div", { class: "add-intervention" },
          h("button", { type: "button", class: "small add-to-variant", onclick: () => {
            variant.interventions.push(this.newIntervention(this.variantKind.value));
            this.renderVariants();
          } }, `+ add ${this.kindLabel()} to this variant`)));
    }));
  }

  renderIntervention(variant, vi, iv, ii) {
    const schema = this.forms[iv.kind];
    const prefix = `variants.${vi}.interventions.${ii}`;
    const fields = schema.fields.map((f) => {
      const id = `v${vi}-i${ii}-${f.key.replace(".", "-")}`;
      let el;
      if (f.type === "bool") {
        el = input(id, { type: "checkbox", checked: Boolean(iv[f.key]), onchange: (e) => { iv[f.key] = e.target.checked; } });
        return h("div", { class: "field inline checkbox", dataset: { field: `${prefix}.${f.key}` } },
          el, h("label", { for: id }, f.label), h("span", { class: "field-error" }));
      } else if (f.type === "choice") {
        // An optional choice with no default offers "default" (left out: the API decides), not its first option.
        const unset = f.optional && (f.initial === null || f.initial === undefined);
        el = h("select", { id, onchange: (e) => { iv[f.key] = e.target.value; } },
          unset ? h("option", { value: "", selected: !iv[f.key] }, "(default)") : null,
          f.options.map((p) => h("option", { value: p, selected: iv[f.key] === p }, p)));
      } else {
        const numeric = f.type === "number" || f.type === "int";
        el = input(id, {
          type: numeric ? "number" : "text",
          step: numeric ? (f.step ?? "1") : undefined,
          value: iv[f.key],
          placeholder: f.placeholder ?? (f.optional ? "optional" : ""),
          oninput: (e) => { iv[f.key] = e.target.value; },
        });
      }
      return field(`${prefix}.${f.key}`, f.label, el);
    });
    return h("div", { class: "intervention", dataset: { field: prefix, kind: iv.kind } },
      h("div", { class: "intervention-head" },
        h("b", {}, schema.label), h("span", { class: "muted small" }, ` · ${schema.help}`),
        variant.interventions.length > 1
          ? h("button", { type: "button", class: "icon", title: "remove intervention", onclick: () => {
            variant.interventions.splice(ii, 1);
            this.renderVariants();
          } }, "✕")
          : null),
      h("div", { class: "grid-4" }, fields));
  }

  // -- submitting ----------------------------------------------------------------------------

  rawValues() {
    return {
      model: this.model.value,
      prompt: this.prompt.value,
      negative_prompt: this.negative.value,
      seed: this.seed.value,
      steps: this.steps.value,
      guidance: this.guidance.value,
      guidance_2: this.guidance2Field.hidden ? "" : this.guidance2.value,
      height: this.height.value,
      width: this.width.value,
      frames: this.frames.value,
      probes: {
        layers: this.layers.value,
        every: this.every.value,
        passes: this.passes.value,
        decode_steps: this.decodeSteps.value,
        final_decode: this.finalDecode.checked,
      },
      variants: this.variants,
      task: this.task,
    };
  }

  previewSpec() {
    try {
      this.specPreview.textContent = JSON.stringify(buildSpec(this.rawValues(), this.forms), null, 2);
    } catch (error) {
      this.specPreview.textContent = error.message;
    }
  }

  async submit(event) {
    event.preventDefault();
    this.clearErrors();
    let spec;
    try {
      spec = buildSpec(this.rawValues(), this.forms);
    } catch (error) {
      if (error instanceof FieldError) return this.showError(error.detail, error.field);
      throw error;
    }
    const file = this.imageField.hidden ? null : this.image.files?.[0];
    this.submitButton.disabled = true;
    this.submitButton.textContent = "Submitting…";
    try {
      let response;
      if (file) {
        const form = new FormData();
        form.append("spec", JSON.stringify(spec));
        form.append("image", file, file.name);
        response = await request("/api/jobs", { method: "POST", form });
      } else {
        response = await request("/api/jobs", { method: "POST", json: spec });
      }
      const job = await response.json();
      this.onSubmitted(job);
    } catch (error) {
      if (error instanceof ApiError) this.showError(error.detail, error.field);
      else this.showFormError(String(error));
    } finally {
      this.submitButton.disabled = false;
      this.submitButton.textContent = "Submit experiment";
    }
  }

  knownFields() {
    return new Set([...this.form.querySelectorAll("[data-field]")].filter((el) => !el.closest("[hidden]")).map((el) => el.dataset.field));
  }

  /** Show an API (or parsing) error next to the input its field path names. */
  showError(detail, fieldPath) {
    const target = fieldForError(fieldPath, this.knownFields());
    let wrapper = target ? this.form.querySelector(`[data-field="${CSS.escape(target)}"]`) : null;
    // A path naming a container without its own message slot (e.g. a variant's intervention list).
    while (wrapper && !wrapper.querySelector(":scope > .field-error")) wrapper = wrapper.parentElement.closest("[data-field]");
    if (!wrapper) {
      this.showFormError(detail);
      return;
    }
    const slot = wrapper.querySelector(":scope > .field-error");
    wrapper.classList.add("invalid");
    slot.textContent = wrapper.dataset.field === fieldPath ? explainFieldError(detail, fieldPath, this.indexRanges()) : detail;
    slot.title = detail;
    const control = wrapper.querySelector("input, select, textarea");
    control?.setAttribute("aria-invalid", "true");
    wrapper.scrollIntoView({ block: "center", behavior: "instant" });
    control?.focus({ preventScroll: true });
  }

  /** How many steps, latent frames and layers the form's run has: the valid ranges of index lists. */
  indexRanges() {
    const frames = Number(this.frames.value);
    return {
      steps: Number(this.steps.value),
      latentFrames: Number.isInteger(frames) && frames >= 1 ? latentFrameCount(frames) : undefined,
      layers: this.selectedModel()?.num_layers,
    };
  }

  showFormError(detail) {
    this.formError.hidden = false;
    this.formError.textContent = detail;
  }

  /** Editing an input clears its own message. */
  clearFieldError(control) {
    const wrapper = control.closest?.(".invalid");
    if (wrapper) this.clearWrapper(wrapper);
  }

  clearWrapper(wrapper) {
    wrapper.classList.remove("invalid");
    const slot = wrapper.querySelector(":scope > .field-error");
    if (slot) slot.textContent = "";
    wrapper.querySelector("[aria-invalid]")?.removeAttribute("aria-invalid");
  }

  clearErrors() {
    for (const wrapper of this.form.querySelectorAll(".invalid")) this.clearWrapper(wrapper);
    this.formError.hidden = true;
    this.formError.textContent = "";
  }
}
