"""The explorer in headless Chromium against a running service with the tiny model.

Each test checks what is on screen against the run's own artifacts (the preview PNG a step
event names, the norm array behind a heatmap, the metrics JSON behind a curve) and saves a
screenshot under test-output/e2e/.
"""

from __future__ import annotations

import io
import json
import re

import httpx
import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect

from stepscope.tasks import generate
from tests.e2e.helpers import LONG_SPEC, NOISE_STEP, open_job, screenshot
from tests.servers import WorkerGate, start_api

pytestmark = pytest.mark.browser

# Records every value the step counter shows, with a timestamp, from the first byte of the page.
RECORD_STEP_COUNT = """
window.__stepCounts = [];
new MutationObserver((records) => {
  for (const r of records) {
    if (r.target.id === "step-count") {
      window.__stepCounts.push([performance.now(), Number(r.target.dataset.done), Number(r.target.dataset.total)]);
    }
  }
}).observe(document, { subtree: true, attributes: true, attributeFilter: ["data-done"] });
"""

# Pixels of a canvas at the given (x, y) points, as [r, g, b] lists.
CANVAS_PIXELS = """([selector, points]) => {
  const canvas = document.querySelector(selector);
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  return points.map(([x, y]) => Array.from(data.slice((y * canvas.width + x) * 4, (y * canvas.width + x) * 4 + 3)));
}"""


# Set a range input's value as a drag would (an input event).
SET_RANGE = "(el, value) => { el.value = value; el.dispatchEvent(new Event('input', { bubbles: true })); }"
INFERNO_LUT = "async () => Array.from((await import('/static/colour.js')).colourMap('inferno'))"
DECODED_IMAGES_LOADED = (
    "() => [...document.querySelectorAll('img.decoded-frame')].every((i) => i.complete && i.naturalWidth > 0)"
)


def json_artifact(client, job_id: str, path: str) -> dict:
    return json.loads(client.artifact(job_id, path))


def artifact_requests(page) -> list[str]:
    """Start recording requests for run data (artifacts, manifests, events); returns the live list."""
    seen: list[str] = []
    page.on("request", lambda r: "/api/jobs/" in r.url and seen.append(r.url))
    return seen


def wait_for_data(page, selector: str, **attrs) -> None:
    """Wait until the element has all the given data-* values."""
    conditions = " && ".join(f"el.dataset.{k} === {str(v)!r}" for k, v in attrs.items())
    page.wait_for_function(f"() => {{ const el = document.querySelector({selector!r}); return el && {conditions}; }}")


def preview_frame(client, job_id: str, path: str, frames: int, frame: int, members: int = 1) -> np.ndarray:
    """Latent frame `frame` of member 0 from a stored preview strip: (h, w, 3)."""
    strip = np.asarray(Image.open(io.BytesIO(client.artifact(job_id, path))).convert("RGB"))
    h, w = strip.shape[0] // members, strip.shape[1] // frames
    return strip[:h, frame * w : (frame + 1) * w]


def assert_canvas_shows(page, selector: str, expected: np.ndarray, scale: int) -> None:
    """The canvas is `expected` upscaled `scale`× without smoothing: compare every source pixel's centre."""
    h, w = expected.shape[:2]
    points = [(x * scale + scale // 2, y * scale + scale // 2) for y in range(h) for x in range(w)]
    shown = np.array(page.evaluate(CANVAS_PIXELS, [selector, points])).reshape(h, w, 3)
    np.testing.assert_allclose(shown, expected, atol=2)


def test_submit_from_the_form_and_watch_steps_arrive_live(page, service, client):
    page.add_init_script(RECORD_STEP_COUNT)
    page.goto(f"{service.url}/#/new")
    page.wait_for_selector("#model option[value='tiny']", state="attached")
    page.fill("#prompt", LONG_SPEC["prompt"])
    for field in ("steps", "height", "width", "frames"):
        page.fill(f"#{field}", str(LONG_SPEC[field]))
    page.fill("#probe-layers", "0-3")
    with WorkerGate(service.workers[0], client) as gate:
        gate.hold()  # the job waits in the queue until the gate lets the worker run it
        with page.expect_response(lambda r: r.url.endswith("/api/jobs") and r.request.method == "POST") as answer:
            page.click("#submit")
        assert answer.value.status == 201
        job_id = answer.value.json()["id"]
        spec = client.job(job_id)["spec"]
        assert (spec["steps"], spec["height"], spec["width"], spec["frames"]) == (40, 48, 80, 9)
        assert spec["probes"]["layers"] == [0, 1, 2, 3]
        page.wait_for_url(f"**/#/jobs/{job_id}**")

        # Mid-run: some steps shown, not all (the worker is frozen after step 11 until the gate lets it go).
        gate.run_to(job_id, 11)
        page.wait_for_function(
            "() => { const c = document.getElementById('step-count');"
            " return c && Number(c.dataset.done) > 10 && Number(c.dataset.done) < Number(c.dataset.total); }"
        )
        assert client.job(job_id)["status"] == "running"
        expect(page.locator(f"#jobs li[data-job='{job_id}']")).to_have_count(1)  # the list refreshes on its own
        screenshot(page, "submit_live_mid_run")
    page.wait_for_selector("#job-status.status-finished", timeout=60_000)  # 2.3 s idle, under 8 s loaded

    counts = page.evaluate("window.__stepCounts")
    total = LONG_SPEC["steps"]
    done = [d for _, d, t in counts if t == total]
    assert done == sorted(done), "the step count never goes back"
    partial = [(ms, d) for ms, d, t in counts if t == total and 0 < d < total]
    rising = sorted({d for _, d in partial})
    assert len(rising) >= 3, f"the count rose in steps while running: {rising}"
    assert done[-1] == total == client.job(job_id)["progress"]["done"]
    # Every step of the run is scrubbable, ending at the newest.
    wait_for_data(page, "#frame-canvas", step=str(total - 1))
    expect(page.locator("#step-slider")).to_have_attribute("max", str(total - 1))
    screenshot(page, "submit_live_finished")


def test_scrub_with_keyboard_and_sliders_shows_that_steps_preview(page, service, client, finished_run):
    manifest = finished_run.manifest
    steps = manifest["trajectories"]["baseline"]["steps"]
    frames = manifest["shapes"]["latent"][1]
    last = steps[-1]["index"]
    open_job(page, service, finished_run.id)
    wait_for_data(page, "#frame-canvas", step=str(last), src=steps[-1]["artifacts"]["preview"])
    # Everything is in memory before scrubbing starts.
    page.wait_for_function("() => window.stepscope.view.cache.idle")
    requests = artifact_requests(page)

    page.evaluate("document.activeElement && document.activeElement.blur()")
    for _ in range(4):
        page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowUp")
    page.keyboard.press("ArrowUp")
    step = last - 4
    wait_for_data(page, "#frame-canvas", step=str(step), frame="2", src=steps[step]["artifacts"]["preview"])
    canvas = page.locator("#frame-canvas")
    scale = int(canvas.get_attribute("data-scale"))  # written with data-step by the same draw
    expected = preview_frame(client, finished_run.id, steps[step]["artifacts"]["preview"], frames, 2)
    assert_canvas_shows(page, "#frame-canvas", expected, scale)
    expect(page.locator("#frame-info")).to_have_text("latent 2 ↔ video frames 5–8")

    # A held arrow key (auto-repeat): every press is drawn by the next animation frame.
    shown = page.evaluate(
        """async (count) => {
          const canvas = document.getElementById("frame-canvas");
          const shown = [];
          for (let i = 0; i < count; i++) {
            const key = new KeyboardEvent("keydown", { key: "ArrowLeft", repeat: i > 0, bubbles: true });
            document.body.dispatchEvent(key);
            await new Promise((resolve) => requestAnimationFrame(resolve));
            shown.push(Number(canvas.dataset.step));
          }
          return shown;
        }""",
        step,
    )
    assert shown == list(range(step - 1, -1, -1))
    expect(canvas).to_have_attribute("data-src", steps[0]["artifacts"]["preview"])

    # The step slider (mouse) and the frame slider.
    box = page.locator("#step-slider").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.75, box["y"] + box["height"] / 2)
    slider_step = int(page.locator("#step-slider").input_value())
    assert 0 < slider_step < last
    wait_for_data(page, "#frame-canvas", step=str(slider_step), src=steps[slider_step]["artifacts"]["preview"])
    page.locator("#frame-slider").evaluate(SET_RANGE, 4)
    wait_for_data(page, "#frame-canvas", step=str(slider_step), frame="4")
    expected = preview_frame(client, finished_run.id, steps[slider_step]["artifacts"]["preview"], frames, 4)
    assert_canvas_shows(page, "#frame-canvas", expected, scale)
    expect(page.locator("#frame-info")).to_have_text("latent 4 ↔ video frames 13–16")

    # Exact step entry.
    page.fill("#step-input", "5")
    page.press("#step-input", "Enter")
    wait_for_data(page, "#frame-canvas", step="5", frame="4", src=steps[5]["artifacts"]["preview"])
    expect(page.locator("#step-info")).to_contain_text(f"{steps[5]['sigma']:.4f}")

    assert requests == [], f"scrubbing fetched {requests}"

    # The ensemble variant stacks its members: member 2 is the third row of the strip.
    page.select_option("#trajectory-select", "ens")
    page.select_option("#member-select", "2")
    wait_for_data(page, "#frame-canvas", trajectory="ens", member="2", step="5")
    ens_path = manifest["trajectories"]["ens"]["steps"][5]["artifacts"]["preview"]
    strip = np.asarray(Image.open(io.BytesIO(client.artifact(finished_run.id, ens_path))).convert("RGB"))
    h, w = strip.shape[0] // 3, strip.shape[1] // frames
    assert_canvas_shows(page, "#frame-canvas", strip[2 * h : 3 * h, 4 * w : 5 * w], scale)
    assert not [r for r in requests if "/preview/" in r], "every trajectory's previews were already in memory"
    screenshot(page, "scrub_keyboard_and_sliders")

    # Space plays over steps and pauses; the button plays over frames.
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.keyboard.press(" ")
    wait_for_data(page, ".scrubber", playing="steps")
    page.wait_for_function("() => document.getElementById('frame-canvas').dataset.step !== '5'")
    page.keyboard.press(" ")
    wait_for_data(page, ".scrubber", playing="")
    page.click("#play-frames")
    wait_for_data(page, ".scrubber", playing="frames")
    page.wait_for_function("() => document.getElementById('frame-canvas').dataset.frame !== '4'")
    page.click("#play-frames")
    wait_for_data(page, ".scrubber", playing="")


def test_switch_layer_and_colour_scale_changes_the_heatmap(page, service, finished_run):
    manifest = finished_run.manifest
    layers = manifest["probes"]["layers"]
    run_dir = service.store / finished_run.id
    norm_paths = [s["artifacts"]["layer_norms.cond"] for s in manifest["trajectories"]["baseline"]["steps"]]
    norms = np.stack([np.load(run_dir / p) for p in norm_paths])  # (S, M, L, F', H', W')
    # Opened from a shared URL: step, frame and layer as it says.
    open_job(page, service, finished_run.id, f"layers?step=5&frame=1&layer={layers[2]}")
    page.wait_for_function(f"() => document.getElementById('norms-loaded')?.dataset.loaded === '{len(norm_paths)}'")
    wait_for_data(page, "#heatmap-canvas", step="5", frame="1", layer=str(layers[2]))
    expect(page.locator("#step-input")).to_have_value("5")
    bands = page.locator("#layer-picker .band")
    expect(bands).to_have_count(3)
    for i, band in enumerate(("early", "middle", "late")):
        expect(bands.nth(i)).to_have_attribute("data-band", band)
    page.click("label:has(input[value='alone'])")
    page.wait_for_function("() => window.stepscope.view.cache.idle")
    requests = artifact_requests(page)

    def heatmap(layer: int) -> np.ndarray:
        page.click(f"#layer-picker .chip[data-layer='{layer}']")
        wait_for_data(page, "#heatmap-canvas", layer=str(layer), mode="alone")
        c = page.locator("#heatmap-canvas")
        size = int(c.get_attribute("width"))
        grid = [(x, y) for y in range(0, size, 8) for x in range(0, size, 8)]
        return np.array(page.evaluate(CANVAS_PIXELS, ["#heatmap-canvas", grid]))

    def check_against_array(layer: int, scale_mode: str) -> None:
        c = page.locator("#heatmap-canvas")
        step, frame = int(c.get_attribute("data-step")), int(c.get_attribute("data-frame"))
        lo, hi = float(c.get_attribute("data-lo")), float(c.get_attribute("data-hi"))
        pos = layers.index(layer)
        if scale_mode == "global":
            assert (lo, hi) == (float(norms.min()), float(norms.max()))
        elif scale_mode == "layer":
            assert (lo, hi) == (float(norms[:, :, pos].min()), float(norms[:, :, pos].max()))
        else:
            assert (lo, hi) == (float(norms[step, :, pos].min()), float(norms[step, :, pos].max()))
        plane = norms[step, 0, pos, frame]  # (H', W') tokens
        lut = np.array(page.evaluate(INFERNO_LUT))
        index = np.clip(np.floor((plane - lo) / (hi - lo) * 255 + 0.5), 0, 255).astype(int)
        expected = lut.reshape(256, 3)[index]
        block = int(c.get_attribute("width")) // plane.shape[1]
        rows, cols = plane.shape
        points = [(x * block + block // 2, y * block + block // 2) for y in range(rows) for x in range(cols)]
        shown = np.array(page.evaluate(CANVAS_PIXELS, ["#heatmap-canvas", points])).reshape(*plane.shape, 3)
        np.testing.assert_array_equal(shown, expected)

    first = heatmap(layers[-1])
    check_against_array(layers[-1], "global")
    second = heatmap(layers[1])
    check_against_array(layers[1], "global")
    assert not np.array_equal(first, second), "a different layer draws a different heatmap"
    for mode in ("layer", "step"):
        page.click(f"#scale-modes label:has(input[value='{mode}'])")
        wait_for_data(page, "#heatmap-canvas", scaleMode=mode)
        check_against_array(layers[1], mode)
    # The energy chart holds every step and layer; picking a cell picks layer and step.
    energy = page.locator("#energy-chart")
    expect(energy).to_have_attribute("data-steps", str(len(norm_paths)))
    expect(energy).to_have_attribute("data-layers", str(len(layers)))
    # Its colour bar spans the chart's values: mean token norm per (step, layer).
    means = norms.mean(axis=(3, 4, 5)).mean(axis=1)  # (S, L)
    bar = page.locator("#energy-colourbar")
    assert float(bar.get_attribute("data-lo")) == pytest.approx(float(means.min()), rel=1e-4)
    assert float(bar.get_attribute("data-hi")) == pytest.approx(float(means.max()), rel=1e-4)
    assert requests == [], f"changing layer or colour scale fetched {requests}"
    page.click("#scale-modes label:has(input[value='global'])")
    page.click("label:has(input[value='overlay'])")
    screenshot(page, "layers_heatmap")


def test_layer_norms_past_the_memory_budget_are_dropped_and_fetched_again(page, service, finished_run):
    """With room for ~2 norm arrays the explorer still summarises every step, holds no more
    than its budget and fetches a dropped step's norms again when it is shown."""
    manifest = finished_run.manifest
    run_dir = service.store / finished_run.id
    norm_paths = [s["artifacts"]["layer_norms.cond"] for s in manifest["trajectories"]["baseline"]["steps"]]
    norms = np.stack([np.load(run_dir / p) for p in norm_paths])
    budget = 2.5 * norms[0].astype(np.float32).nbytes
    page.goto(f"{service.url}/?array_budget_mb={budget / 2**20}#/jobs/{finished_run.id}/layers")
    page.wait_for_selector(f"section.explorer[data-job='{finished_run.id}']")
    page.wait_for_function(f"() => document.getElementById('norms-loaded')?.dataset.loaded === '{len(norm_paths)}'")
    page.wait_for_function("() => window.stepscope.view.cache.idle")
    cache = page.evaluate("() => { const c = window.stepscope.view.cache; return [c.arrayBytes, c.evictions]; }")
    assert cache[0] <= budget and cache[1] > 0, f"arrays held / dropped: {cache}"
    expect(page.locator("#energy-chart")).to_have_attribute("data-steps", str(len(norm_paths)))
    requests = artifact_requests(page)
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.fill("#step-input", "0")
    page.press("#step-input", "Enter")
    wait_for_data(page, "#heatmap-canvas", step="0", src=norm_paths[0])
    c = page.locator("#heatmap-canvas")
    lo, hi = float(c.get_attribute("data-lo")), float(c.get_attribute("data-hi"))
    assert (lo, hi) == (float(norms.min()), float(norms.max())), "the global scale still spans every step"
    assert any(r.endswith(norm_paths[0]) for r in requests), "the dropped step 0 was fetched again"
    assert page.evaluate("() => window.stepscope.view.cache.arrayBytes") <= budget


def test_compare_a_noise_at_step_variant(page, service, client, finished_run):
    metrics = client.manifest(finished_run.id)["metrics"]["noise3"]
    data = json_artifact(client, finished_run.id, metrics["file"])
    open_job(page, service, finished_run.id, "compare")
    page.select_option("#variant-select", "noise3")
    dots = '#cka-chart g.points[data-series="x̂₀"] circle'
    page.wait_for_function(f"() => document.querySelectorAll({dots!r}).length === {len(data['steps'])}")
    points = page.eval_on_selector_all(dots, "els => els.map(e => [Number(e.dataset.step), Number(e.dataset.value)])")
    assert [s for s, _ in points] == data["steps"]
    values = dict(points)
    assert values[NOISE_STEP] > 0, "the noise step moves x̂₀ away from the baseline"
    assert all(values[s] == 0 for s in range(NOISE_STEP)), "before the noise both runs are the same"
    assert [v for _, v in points] == pytest.approx(data["cka_x0_distance"])
    expect(page.locator("#cka-chart g.vline.intervention")).to_have_attribute("data-step", str(NOISE_STEP))
    # Side by side at the same step and frame, and their difference map.
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.fill("#step-input", str(NOISE_STEP))
    page.press("#step-input", "Enter")
    wait_for_data(page, "#compare-variant", step=str(NOISE_STEP))
    steps = finished_run.manifest["trajectories"]
    for canvas, name in (("#compare-baseline", "baseline"), ("#compare-variant", "noise3")):
        wait_for_data(page, canvas, step=str(NOISE_STEP), src=steps[name]["steps"][NOISE_STEP]["artifacts"]["preview"])
    wait_for_data(page, "#compare-diff", src=metrics["difference"])
    diff = client.array(finished_run.id, metrics["difference"])
    assert float(page.locator("#compare-diff").get_attribute("data-hi")) == pytest.approx(float(diff.max()), rel=1e-3)
    commits = [steps[n]["convergence"]["commitment_step"] for n in ("baseline", "noise3")]
    # The convergence chart is drawn once both curves' arrays have arrived: wait for it.
    expect(page.locator("#commitment-note")).to_have_attribute("data-steps", ",".join(str(c) for c in commits))
    expect(page.locator("#convergence-chart path.series")).to_have_count(4)
    # The step box gave the keys back: ↑ moves the frame, and the convergence chart follows it.
    assert page.evaluate("() => document.activeElement === document.body")
    page.keyboard.press("ArrowUp")
    wait_for_data(page, "#convergence-chart", frame="1")
    dashed = page.eval_on_selector_all(
        "#convergence-chart path.series[stroke-dasharray]", "els => els.map(e => e.dataset.series)"
    )
    assert dashed == ["baseline frame 1", "noise3 frame 1"]
    expect(page.locator("#commitment-note")).to_contain_text("latent frame 1")
    # A dropdown used from the keyboard also gives the keys back once its value is set.
    page.focus("#diff-scale")
    expect(page.locator("#keys-hint")).to_contain_text("focused dropdown")  # written in a microtask after the focus
    outline = page.evaluate("() => getComputedStyle(document.getElementById('diff-scale')).outlineStyle")
    assert outline == "solid", "the focused control is marked"
    page.keyboard.press("ArrowDown")
    page.wait_for_function(
        "() => document.getElementById('diff-scale').value === 'step' && document.activeElement === document.body"
    )
    page.keyboard.press("ArrowLeft")
    wait_for_data(page, "#compare-variant", step=str(NOISE_STEP - 1))
    expect(page.locator("#keys-hint")).to_have_text(re.compile(r"^←/→ step"))
    # Labels stay inside the charts; the threshold is named in the legend, off the curves.
    for chart in ("#convergence-chart", "#cka-chart"):
        width = page.locator(chart).bounding_box()["width"]
        rights = page.eval_on_selector_all(f"{chart} text", "els => els.map(e => e.getBBox().x + e.getBBox().width)")
        assert max(rights) <= width + 0.5, f"{chart}: a label runs past the edge"
    expect(page.locator("#convergence-chart g.legend")).to_contain_text("commit threshold")
    # The layer × step CKA matrix has a colour bar up to its largest value.
    hidden = data.get("hidden_state_cka_distance")
    matrix = hidden or data["layer_norm_map_r2_distance"]
    expect(page.locator("#layer-cka")).to_have_attribute("data-matrix", "hidden" if hidden else "norms")
    layer_cka = max(v for row in matrix["values"] for v in row if v is not None)
    assert float(page.locator("#layer-cka-colourbar").get_attribute("data-hi")) == pytest.approx(layer_cka)
    screenshot(page, "compare_noise_variant")
    page.locator("#layer-cka-colourbar").scroll_into_view_if_needed()
    screenshot(page, "compare_layer_matrix")

    # Any two trajectories side by side, from a URL; one scrubber moves both.
    page.evaluate(f"location.hash = '#/jobs/{finished_run.id}/compare?step=4&frame=1&left=ens&right=noise3'")
    wait_for_data(page, "#compare-baseline", trajectory="ens", step="4", frame="1")
    wait_for_data(page, "#compare-variant", trajectory="noise3", step="4", frame="1")
    run_dir = service.store / finished_run.id

    def pair_difference_max(step: int, frame: int) -> float:
        a, b = (np.load(run_dir / steps[n]["steps"][step]["artifacts"]["x0"]) for n in ("ens", "noise3"))
        return float(np.abs(a[0, :, frame] - b[0, :, frame]).mean(axis=0).max())  # member 0, mean over channels

    wait_for_data(page, "#compare-diff", src="x0", step="4", frame="1")
    hi = float(page.locator("#compare-diff").get_attribute("data-hi"))
    assert hi == pytest.approx(pair_difference_max(4, 1), rel=1e-5)
    page.keyboard.press("ArrowRight")
    for canvas in ("#compare-baseline", "#compare-variant", "#compare-diff"):
        wait_for_data(page, canvas, step="5", frame="1")
    wait_for_data(page, "#compare-diff", src="x0", step="5", frame="1")
    assert float(page.locator("#compare-diff").get_attribute("data-hi")) == pytest.approx(
        pair_difference_max(5, 1), rel=1e-5
    )
    # The URL follows, so the position can be shared.
    page.wait_for_function("() => location.hash.includes('step=5') && location.hash.includes('left=ens')")
    assert "frame=1" in page.evaluate("location.hash") and "right=noise3" in page.evaluate("location.hash")
    screenshot(page, "compare_any_two_trajectories")


def test_a_form_error_shows_the_api_message_next_to_the_field(page, service, client):
    page.goto(f"{service.url}/#/new")
    page.wait_for_selector("#model option[value='tiny']", state="attached")

    def submit_and_expect_error(field: str) -> str:
        with page.expect_response(lambda r: r.url.endswith("/api/jobs") and r.request.method == "POST") as answer:
            page.click("#submit")
        body = answer.value.json()
        assert answer.value.status == 422 and body["field"] == field, body
        message = page.locator(f".field[data-field='{field}'] > .field-error")
        message.wait_for(state="visible")
        shown = message.inner_text()
        assert shown == body["detail"].removeprefix(f"{field}: ") or "at least 1 item" in body["detail"], shown
        return body["detail"]

    # A real example prompt is there from the start: submitting the defaults is a meaningful run.
    assert len(page.input_value("#prompt")) > 20
    page.fill("#frames", "16")
    assert "4k+1" in submit_and_expect_error("frames")
    page.fill("#frames", "17")
    page.fill("#steps", "10")
    page.select_option("#add-variant-kind", "noise_at_step")
    page.click("#add-variant")
    page.fill("[data-field='variants.0.interventions.0.steps'] input", "12")
    detail = submit_and_expect_error("variants.0.interventions.0.steps")
    assert "beyond the run's 10 steps" in detail
    assert page.locator(".field.invalid").count() == 1, "the frames error went away once fixed"
    # An empty list: what is wanted and the valid range of the run being set up, not pydantic's words.
    page.fill("[data-field='variants.0.interventions.0.steps'] input", "")
    detail = submit_and_expect_error("variants.0.interventions.0.steps")
    assert "at least 1 item" in detail
    message = page.locator(".field[data-field='variants.0.interventions.0.steps'] > .field-error")
    assert message.inner_text() == "give at least one step (valid steps: 0–9)"
    screenshot(page, "form_error_next_to_field")
    # One intervention-kind picker: it makes new variants and adds to existing ones.
    assert page.locator("select[aria-label='intervention kind']").count() == 1
    page.select_option("#add-variant-kind", "guidance")
    page.click(".variant-card .add-to-variant")
    kinds = page.eval_on_selector_all(".variant-card .intervention", "els => els.map(e => e.dataset.kind)")
    assert kinds == ["noise_at_step", "guidance"]
    screenshot(page, "form_one_kind_picker")

    # A task instance fills the prompt, canvas and first frame; submitted, its stored image is the task's first frame.
    page.click(".variant-card button[title='remove variant']")
    page.select_option("#model", "tiny-i2v")  # no worker serves it here: the job waits in the queue
    page.select_option("#task-family", "trajectory")
    page.select_option("#task-difficulty", "2")
    page.fill("#task-seed", "5")
    task = generate("trajectory", difficulty=2, seed=5)
    with page.expect_response(lambda r: "/api/tasks/trajectory?" in r.url) as served:
        page.click("#use-task")
    assert served.value.status == 200
    page.wait_for_function("p => document.getElementById('prompt').value === p", arg=task.prompt)
    # The same handler filled the prompt, the canvas, the image and the note, in one go.
    assert [page.input_value(f"#{f}") for f in ("height", "width", "frames")] == ["64", "64", "17"]
    assert page.eval_on_selector("#image", "el => el.files[0].name") == "trajectory-2-5.png"
    page.locator("#image ~ img.thumb").wait_for(state="visible")
    expect(page.locator("#task-note")).to_have_text("the run will be scored on trajectory, difficulty 2, seed 5")
    screenshot(page, "form_task_instance")
    # Off the task's canvas the run cannot be scored: the form drops the task and says why.
    page.fill("#width", "48")
    expect(page.locator("#task-note")).to_have_text(
        re.compile(r"^not scored: the canvas is no longer the task's 64×64×17")
    )
    expect(page.locator("#clear-task")).to_be_hidden()
    with page.expect_response(lambda r: "/api/tasks/trajectory?" in r.url):
        page.click("#use-task")
    page.wait_for_function("() => document.getElementById('task-note').dataset.scored === 'true'")
    expect(page.locator("#width")).to_have_value("64")
    with page.expect_response(lambda r: r.url.endswith("/api/jobs") and r.request.method == "POST") as answer:
        page.click("#submit")
    assert answer.value.status == 201, answer.value.text()
    job = answer.value.json()
    assert job["spec"]["prompt"] == task.prompt
    assert job["spec"]["task"] == {"family": "trajectory", "difficulty": 2, "seed": 5}
    stored = httpx.get(f"{service.url}/api/jobs/{job['id']}/artifacts/inputs/first_frame.png", timeout=30)
    assert stored.status_code == 200
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(stored.content)).convert("RGB")), task.first_frame)
    client.cancel(job["id"])
    client.delete(job["id"])


def test_full_quality_decode_of_a_step_on_request(page, service, finished_run):
    open_job(page, service, finished_run.id)
    page.fill("#step-input", "4")
    page.press("#step-input", "Enter")
    wait_for_data(page, "#frame-canvas", step="4")
    page.click("#decode-button")
    first = page.locator("#decode-frames img.decoded-frame").first
    first.wait_for(timeout=60_000)
    expect(first).to_have_attribute("data-src", "trajectories/baseline/decode/step_004/frame_000.jpg")
    expect(page.locator("#decode-status")).to_have_text(re.compile(r"· 17 frames · float32 VAE$"))
    page.wait_for_function(DECODED_IMAGES_LOADED)
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.keyboard.press("ArrowUp")
    page.wait_for_function("() => document.querySelectorAll('img.decoded-frame').length === 4")
    srcs = page.eval_on_selector_all("img.decoded-frame", "els => els.map(e => e.dataset.src)")
    assert srcs == [f"trajectories/baseline/decode/step_004/frame_{v:03d}.jpg" for v in range(1, 5)]
    page.wait_for_function(DECODED_IMAGES_LOADED)
    assert (service.store / finished_run.id / "trajectories/baseline/decode/step_004/decode.json").is_file()
    screenshot(page, "full_quality_decode")


def test_reconnecting_mid_run_loses_and_repeats_nothing(page, service, client):
    with WorkerGate(service.workers[0], client) as gate:
        gate.hold()
        job = client.submit({**LONG_SPEC, "prompt": "reconnect while it runs"})
        open_job(page, service, job["id"])
        for threshold in (5, 15, 25):
            gate.run_to(job["id"], threshold)  # the worker is frozen after this step: the click lands mid-run
            page.wait_for_function(f"() => window.stepscope.view.run.stepIndices('baseline').length > {threshold}")
            assert client.job(job["id"])["status"] == "running"
            page.click("#reconnect")
            # The next run_to lets the worker go on at once, so events arrive while the browser reconnects.
    page.wait_for_selector("#job-status.status-finished", timeout=60_000)  # 2.3 s idle, under 8 s loaded
    received = page.evaluate(
        "() => ({ steps: window.stepscope.view.run.stepIndices('baseline'), events: window.stepscope.view.eventCount })"
    )
    all_events = list(client.events(job["id"]))
    assert received["steps"] == list(range(LONG_SPEC["steps"]))
    assert received["events"] == len(all_events), "every event once: none lost, none repeated"
    expect(page.locator("#stream-state")).to_have_attribute("data-state", "ended")
    screenshot(page, "reconnect_mid_run")


def test_token_is_asked_for_once_and_kept_in_a_cookie(page, service, finished_run, tmp_path):
    token = "s3cret-token"
    api = start_api({**service.environment, "STEPSCOPE_TOKEN": token}, tmp_path / "api-token.log")
    try:
        page.goto(f"{api.url}/#/jobs/{finished_run.id}")
        page.wait_for_selector("#token-dialog[open]")
        screenshot(page, "token_dialog")
        page.fill("#token-input", token)
        page.click("#token-dialog button[value='ok']")
        page.wait_for_selector(f"#jobs li[data-job='{finished_run.id}']")
        # Images, arrays and the event stream all authenticate with the cookie.
        last = finished_run.manifest["trajectories"]["baseline"]["steps"][-1]
        wait_for_data(page, "#frame-canvas", src=last["artifacts"]["preview"])
        page.wait_for_selector("#stream-state[data-state='ended']")
        cookies = {c["name"]: c["value"] for c in page.context.cookies()}
        assert cookies["stepscope_token"] == token
        expect(page.locator("#token-dialog[open]")).to_have_count(0)
    finally:
        api.stop()


def test_timeline_shows_sigma_of_every_step_and_the_final_video(page, service, client, finished_run):
    open_job(page, service, finished_run.id)
    steps = finished_run.manifest["trajectories"]["baseline"]["steps"]
    page.wait_for_function(f"() => document.querySelectorAll('#timeline g.points circle').length === {len(steps)}")
    sigmas = page.eval_on_selector_all("#timeline g.points circle", "els => els.map(e => Number(e.dataset.value))")
    assert sigmas == pytest.approx([s["sigma"] for s in steps])
    # The cursor is on the newest step once the scrubber has it (it follows the steps as they load).
    page.wait_for_function(
        "s => Number(document.getElementById('timeline').dataset.cursor) === s", arg=steps[-1]["index"]
    )
    expect(page.locator("#timeline path.series")).to_have_count(1)  # σ only: t = 1000σ would lie on it
    # The final video: a player, and the last row of the grid (one decoded frame per latent frame).
    final = finished_run.manifest["trajectories"]["baseline"]["final"]
    frames = finished_run.manifest["shapes"]["latent"][1]
    expect(page.locator("#final-video")).to_have_attribute("data-src", final["video"])
    page.wait_for_function("() => document.getElementById('final-video').readyState >= 1")
    wait_for_data(page, "#grid-canvas", finalRow="yes", finalLoaded=str(frames))
    grid = page.locator("#grid-canvas")
    cw, ch = int(grid.get_attribute("data-cw")), int(grid.get_attribute("data-ch"))
    frame = 2  # latent frame 2 ↔ video frames 5–8: the cell shows video frame 8
    jpg_bytes = client.artifact(finished_run.id, f"{final['frames_dir']}/frame_008.jpg")
    jpg = Image.open(io.BytesIO(jpg_bytes)).convert("RGB")
    expected = np.asarray(jpg.resize((cw - 1, ch), Image.BILINEAR)).astype(int)
    y = len(steps) * (ch + 1)
    inside = [(x, yy) for yy in (ch // 4, ch // 2, 3 * ch // 4) for x in ((cw - 1) // 4, (cw - 1) // 2)]
    points = [(frame * cw + x, y + yy) for x, yy in inside]
    shown = np.array(page.evaluate(CANVAS_PIXELS, ["#grid-canvas", points]))
    want = np.array([expected[yy - y, x - frame * cw] for x, yy in points])
    assert np.abs(shown - want).mean() < 24, (shown, want)
    wait_for_data(page, "#filmstrip-canvas", finalShown="yes", cells=str(len(steps) + 1))
    # The grid fills its panel's width; its frame header stays in view as the cells scroll; zoom.
    box = page.locator(".grid-scroll").evaluate("el => el.clientWidth")
    assert frames * cw >= 0.85 * box
    page.locator(".grid-scroll").evaluate("el => { el.scrollTop = 60; }")
    head = page.locator("#grid-header").bounding_box()
    assert abs(head["y"] - page.locator(".grid-scroll").bounding_box()["y"]) <= 1
    page.select_option("#grid-zoom", "2")
    page.wait_for_function(f"() => Number(document.getElementById('grid-canvas').dataset.cw) >= {2 * cw - 1}")
    page.select_option("#grid-zoom", "1")
    # Text: chart ticks, grid-side hints and the keys hint at 12 px or more.
    sizes = page.evaluate(
        """() => ['#timeline text.tick', '#keys-hint', '.caption'].map(
             (s) => parseFloat(getComputedStyle(document.querySelector(s)).fontSize))"""
    )
    assert min(sizes) >= 12, sizes
    page.locator(".grid-scroll").evaluate("el => { el.scrollTop = el.scrollHeight; }")
    screenshot(page, "trajectory_view")
    # What the last step did: |x̂₀(last) − x̂₀(previous)|, mean over channels, on its own scale.
    page.select_option("#frame-mode", "change")
    last = steps[-1]["index"]
    wait_for_data(page, "#frame-canvas", src="change", step=str(last), previous=str(last - 1))
    run_dir = service.store / finished_run.id
    now, before = (np.load(run_dir / steps[i]["artifacts"]["x0"]) for i in (last, last - 1))
    change = np.abs(now[0, :, 0] - before[0, :, 0]).mean(axis=0)
    assert float(page.locator("#frame-canvas").get_attribute("data-hi")) == pytest.approx(float(change.max()), rel=1e-5)
    lut = np.array(page.evaluate(INFERNO_LUT.replace("inferno", "viridis"))).reshape(256, 3)
    scale = int(page.locator("#frame-canvas").get_attribute("data-scale"))
    index = np.clip(np.floor(change / change.max() * 255 + 0.5), 0, 255).astype(int)
    h, w = change.shape
    points = [(x * scale + scale // 2, y * scale + scale // 2) for y in range(h) for x in range(w)]
    shown = np.array(page.evaluate(CANVAS_PIXELS, ["#frame-canvas", points])).reshape(h, w, 3)
    # float32 sums in another order may move a value across a colour-map step: one step's worth.
    np.testing.assert_allclose(shown, lut[index], atol=4)
    screenshot(page, "trajectory_change_from_previous_step")


def test_jobs_list_shows_queue_position_and_cancels(page, service, client):
    # No worker serves tiny-moe in this service: the job waits at the head of its queue.
    job = client.submit({**LONG_SPEC, "model": "tiny-moe", "steps": 4, "prompt": "waits in the queue"})
    page.goto(f"{service.url}/#/new")
    item = page.locator(f"#jobs li[data-job='{job['id']}']")
    expect(item).to_have_attribute("data-status", "queued")
    expect(item.locator(".queue-pos")).to_have_text("queue #1")
    screenshot(page, "jobs_queue_position")
    item.locator("button[title='cancel the job']").click()
    page.wait_for_selector(f"#jobs li[data-job='{job['id']}'][data-status='cancelled']")
    assert client.job(job["id"])["status"] == "cancelled"


def test_layer_norms_of_either_cfg_pass(page, service, client):
    job = client.submit({"model": "tiny", "prompt": "both passes", "steps": 4, "probes": {"passes": "both"}})
    assert client.wait(job["id"], timeout=60)["status"] == "finished"
    open_job(page, service, job["id"], "layers")
    wait_for_data(page, "#heatmap-canvas", src="trajectories/baseline/layer_norms/cond/step_003.npy")
    page.select_option("#norm-pass", "uncond")
    wait_for_data(page, "#heatmap-canvas", src="trajectories/baseline/layer_norms/uncond/step_003.npy")
    page.wait_for_function("() => document.getElementById('norms-loaded').dataset.loaded === '4'")
    run_dir = service.store / job["id"] / "trajectories/baseline/layer_norms"
    uncond = np.stack([np.load(run_dir / f"uncond/step_{s:03d}.npy") for s in range(4)])
    cond = np.stack([np.load(run_dir / f"cond/step_{s:03d}.npy") for s in range(4)])
    assert not np.array_equal(cond, uncond)
    # The global colour scale now spans the unconditional pass's arrays.
    c = page.locator("#heatmap-canvas")
    assert (float(c.get_attribute("data-lo")), float(c.get_attribute("data-hi"))) == (uncond.min(), uncond.max())
