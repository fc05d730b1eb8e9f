"""The Sweeps tab against a real sweep job: the plotted curve is the manifest's, a point opens
that member in Compare against the baseline, and the run's warnings and the hidden-state CKA's
error bound are shown."""

from __future__ import annotations

import json
import math
import re

import pytest
from playwright.sync_api import expect

from tests.e2e.helpers import open_job, screenshot

pytestmark = pytest.mark.browser

# noise_at_step (strength 1) swept over the injection step of a 4-step run: small enough for seconds on a CPU.
SWEEP_SPEC = {
    "model": "tiny",
    "prompt": "a ball rolls through a maze",
    "steps": 4,
    "height": 32,
    "width": 32,
    "frames": 5,
    # A swap of all tokens at two layers: the run records a warning that it equals swapping the last alone.
    "variants": [
        {
            "name": "swap",
            "interventions": [{"kind": "layer_swap", "layers": [2, 3], "steps": [2], "source": {"seed": 1}}],
        }
    ],
    "sweeps": [
        {
            "name": "inject",
            "intervention": {"kind": "noise_at_step", "steps": [1], "strength": 1.0},
            "over": "steps",
            "values": [1, 2, 3],
        }
    ],
}
SERIES = {
    "cka_x0_distance_final": "1 − CKA of x̂₀ (final)",
    "final_relative_l2": "relative L2 (final)",
    "hidden_state_cka_distance_final": "1 − CKA of hidden states (final, mean over layers)",
}


@pytest.fixture(scope="module")
def sweep_run(client):
    job = client.submit(SWEEP_SPEC)
    record = client.wait(job["id"], timeout=120)
    assert record["status"] == "finished", record
    return job["id"], client.manifest(job["id"])


def plotted(page, series: str, count: int) -> list[tuple[float, float]]:
    """(step, value) of the series' dots, once the chart (drawn in an animation frame after the view) has all."""
    dots = f'svg.sweep-chart[data-sweep="inject"] g.points[data-series="{series}"] circle'
    expect(page.locator(dots)).to_have_count(count)
    return page.eval_on_selector_all(dots, "els => els.map(e => [Number(e.dataset.step), Number(e.dataset.value)])")


def test_sweep_curve_is_the_manifests_and_a_point_opens_the_member(page, service, client, sweep_run):
    job_id, manifest = sweep_run
    sweep = manifest["sweeps"]["inject"]
    curve = sweep["curve"]
    assert sweep["values"] == [1, 2, 3] and sweep["members"] == ["inject.000", "inject.001", "inject.002"]
    open_job(page, service, job_id, "sweeps")
    page.wait_for_selector("#tab-sweeps", state="visible")
    chart = page.locator('svg.sweep-chart[data-sweep="inject"]')
    # The chart is drawn in the animation frame after the view: wait for the label, not read it once.
    expect(chart.locator("g.axes text.label", has_text=re.compile(r"^injection step$"))).to_have_count(1)
    x0 = plotted(page, SERIES["cka_x0_distance_final"], 3)
    assert [x for x, _ in x0] == [1, 2, 3]
    assert [y for _, y in x0] == pytest.approx(curve["cka_x0_distance_final"], rel=1e-9)
    l2 = plotted(page, SERIES["final_relative_l2"], 3)
    assert [y for _, y in l2] == pytest.approx(curve["final_relative_l2"], rel=1e-9)
    assert all(v > 0 for v in curve["final_relative_l2"]), "noise at any step changes the final latent"
    hidden = plotted(page, SERIES["hidden_state_cka_distance_final"], 3)
    expected = [
        sum(v for v in row if v is not None) / len([v for v in row if v is not None])
        for row in curve["hidden_state_cka_distance_final"]
    ]
    assert [y for _, y in hidden] == pytest.approx(expected, rel=1e-9)
    # The table's rows name the members with where each started.
    rows = page.locator(".sweep-table tbody tr")
    expect(rows).to_have_count(3)
    for row, member in zip(rows.all(), sweep["members"], strict=True):
        expect(row).to_have_attribute("data-member", member)
    screenshot(page, "sweep_view")

    # Clicking the point at step 2 opens inject.001 against the baseline in Compare.
    dot = chart.locator(f'g.points[data-series="{SERIES["cka_x0_distance_final"]}"] circle[data-step="2"]')
    dot.click(force=True)  # the other curves' dots at step 2 sit on top: the chart picks by x
    page.wait_for_selector("#tab-compare.active")
    # The tab turns active at once, the view's pickers in the next animation frame.
    expect(page.locator("#variant-select")).to_have_value("inject.001")
    expect(page.locator("#left-select")).to_have_value("baseline")
    metrics = json.loads(client.artifact(job_id, manifest["metrics"]["inject.001"]["file"]))
    dots = '#cka-chart g.points[data-series="x̂₀"] circle'
    page.wait_for_function(f"() => document.querySelectorAll({dots!r}).length === {len(metrics['steps'])}")
    values = page.eval_on_selector_all(dots, "els => els.map(e => Number(e.dataset.value))")
    assert values == pytest.approx(metrics["cka_x0_distance"])
    assert values[-1] == pytest.approx(curve["cka_x0_distance_final"][1]), "the curve's point is the member's last step"
    # The hidden-state CKA at the current step with its error bound (tiny keeps every token: exact, bound 0).
    hidden_metric = metrics["hidden_state_cka_distance"]
    readout = page.locator("#layer-matrix-readout")
    page.wait_for_function("() => document.querySelector('#layer-matrix-readout').dataset.step !== undefined")
    # One read of what one render wrote together (the readout's text and its data-* values).
    shown = readout.evaluate("el => ({ ...el.dataset, text: el.innerText })")
    step = int(shown["step"])
    col = metrics["steps"].index(step)
    row = len(hidden_metric["layers"]) - 1
    assert int(shown["layer"]) == hidden_metric["layers"][row]
    bound = hidden_metric["error_bound"][row][col]
    if bound is not None:
        assert float(shown["bound"]) == pytest.approx(bound)
        assert "±" in shown["text"]
    value = hidden_metric["values"][row][col]
    if value is not None and math.isfinite(value):
        assert float(shown["value"]) == pytest.approx(value)
    expect(page).to_have_url(re.compile(r"inject\.001"))  # the compared member; the URL is written 200 ms after a view
    # The run's warning is in the header; the pickers hold the variant alone and the members under their sweep.
    assert len(manifest["warnings"]) == 1 and manifest["warnings"][0].startswith("swap: layer_swap of all tokens")
    expect(page.locator("#run-warnings li")).to_have_text([f"⚠ {w}" for w in manifest["warnings"]], use_inner_text=True)
    plain = page.eval_on_selector_all("#variant-select > option", "els => els.map(e => e.value)")
    assert plain == ["baseline", "swap", "swap.source0"]
    grouped = page.eval_on_selector_all(
        '#variant-select > optgroup[label="sweep inject"] > option', "els => els.map(e => e.value)"
    )
    assert grouped == sweep["members"]
    readout.scroll_into_view_if_needed()
    screenshot(page, "sweep_member_compare")
