"""Every view at a laptop's 1024×700 and a desktop's 1400×900: no horizontal overflow, no control off-screen or
clipped, no picture spilling out of its panel, no two controls on top of each other, no chart text over another
text or a curve (tests/e2e/checks.py). Screenshots: test-output/e2e/layout_<view>_<size>.png."""

from __future__ import annotations

import pytest

from tests.e2e.checks import VIEWPORTS, layout_problems
from tests.e2e.helpers import screenshot

pytestmark = pytest.mark.browser

# A task-scored run with a sweep: the candidates over x̂₀, the strip and the Sweeps tab (a few seconds on a CPU).
TASK_SPEC = {
    "model": "tiny",
    "prompt": "a maze, solved",
    "steps": 4,
    "height": 64,
    "width": 64,
    "frames": 9,
    "task": {"family": "maze", "difficulty": 2, "seed": 1},
    "sweeps": [
        {
            "name": "inject",
            "intervention": {"kind": "noise_at_step", "steps": [1], "strength": 1.0},
            "over": "steps",
            "values": [1, 2],
        }
    ],
}

# view → (URL after the job id, what to wait for once its data is drawn)
VIEWS = {
    "trajectory": ("trajectory", "document.getElementById('frame-canvas')?.dataset.src"),
    "layers": ("layers?layer=4", "document.getElementById('heatmap-canvas')?.dataset.src"),
    "compare": ("compare?right=noise3", "document.getElementById('cka-chart')?.dataset.points > 0 && DIFF"),
    "compare_any_pair": ("compare?left=noise3&right=ens", "DIFF === 'x0'"),
}
VIEWS = {
    k: (path, ready.replace("DIFF", "document.getElementById('compare-diff')?.dataset.src"))
    for k, (path, ready) in VIEWS.items()
}
TASK_VIEWS = {
    "task_trajectory": ("trajectory?frame=2", "document.getElementById('candidate-strip')?.dataset.rows > 0"),
    "task_sweeps": ("sweeps", "document.querySelectorAll('svg.sweep-chart g.points circle').length > 0"),
}


@pytest.fixture(scope="module")
def task_run(client):
    job = client.submit(TASK_SPEC)
    record = client.wait(job["id"], timeout=180)
    assert record["status"] == "finished", record
    return job["id"]


@pytest.fixture(params=list(VIEWPORTS), ids=list(VIEWPORTS))
def sized_page(request, browser):
    context = browser.new_context(viewport=VIEWPORTS[request.param])
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.size = request.param
    yield page
    context.close()
    assert not errors, errors


def check(page, url: str, ready: str, name: str) -> None:
    page.goto(url)
    page.wait_for_function(f"() => Boolean({ready})")
    page.wait_for_function("() => window.stepscope.view.cache?.idle ?? true")
    # Two animation frames: the render the last asset asked for has run.
    page.evaluate("() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")
    problems = layout_problems(page)
    screenshot(page, f"layout_{name}_{page.size}")
    # The lower half of the view, where the charts are.
    page.evaluate("document.querySelector('main').scrollTop = document.querySelector('main').scrollHeight")
    problems += [p for p in layout_problems(page) if p not in problems]
    screenshot(page, f"layout_{name}_{page.size}_lower")
    assert problems == [], "\n".join(problems)


def test_the_submit_form(sized_page, service):
    check(sized_page, f"{service.url}/#/new", "document.querySelector('.submit-view select option')", "form")


@pytest.mark.parametrize("view", list(VIEWS))
def test_a_finished_run(sized_page, service, finished_run, view):
    path, ready = VIEWS[view]
    check(sized_page, f"{service.url}/#/jobs/{finished_run.id}/{path}", ready, view)


@pytest.mark.parametrize("view", list(TASK_VIEWS))
def test_a_task_run(sized_page, service, task_run, view):
    path, ready = TASK_VIEWS[view]
    check(sized_page, f"{service.url}/#/jobs/{task_run}/{path}", ready, view)
