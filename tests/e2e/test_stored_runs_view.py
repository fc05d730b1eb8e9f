"""`stepscope up --data-dir findings` after `stepscope reproduce`: the runs written without the service are in the
jobs list at first sight, told apart (task, what each compares, their whole ids), and read as stored runs."""

from __future__ import annotations

import pytest

from stepscope.client import Client
from stepscope.probe import run_experiment
from stepscope.spec import check_spec
from stepscope.store import Store
from tests.e2e.helpers import screenshot
from tests.servers import running_service, wait_until

pytestmark = pytest.mark.browser

TASK = {"family": "maze", "difficulty": 2, "seed": 2}
BASE = {"model": "tiny", "prompt": "the same prompt for both", "steps": 3, "height": 64, "width": 64, "frames": 9}
# Two runs of one instance, as reproduce writes them: the same task and prompt, different comparisons.
RUNS = {
    "maze-2-steps": {
        **BASE,
        "task": TASK,
        "sweeps": [
            {
                "name": "inject",
                "intervention": {"kind": "noise_at_step", "steps": [0], "strength": 1.0},
                "over": "steps",
                "values": [0, 1],
            }
        ],
    },
    "maze-2-trajectory": {
        **BASE,
        "task": TASK,
        "variants": [{"name": "ensemble", "interventions": [{"kind": "seed_ensemble", "seeds": [0, 1]}]}],
    },
}


@pytest.fixture(scope="module")
def findings(tiny, tmp_path_factory):
    """A store written by the probe engine alone, then a service (no worker needed) started over it."""
    root = tmp_path_factory.mktemp("findings")
    store = Store(str(root / "runs"))
    for run_id, spec in RUNS.items():
        run_experiment(tiny, check_spec(spec, tiny.info), store.create(run_id))
    with running_service(root, root / "runs", []) as service:
        yield service


def test_stored_runs_are_listed_at_first_sight_and_told_apart(page, findings):
    with Client(findings.url) as client:  # listed by the API's first look at its store
        wait_until(lambda: len(client.jobs()) == len(RUNS), 60, "the stored runs to be listed")
    page.goto(f"{findings.url}/")
    page.wait_for_function(f"() => document.querySelectorAll('#jobs li.job').length === {len(RUNS)}")
    titles = page.eval_on_selector_all(
        "#jobs li.job",
        "els => els.map(e => [e.dataset.job, e.querySelector('.job-prompt').textContent, "
        "e.querySelector('.job-subtitle').textContent])",
    )
    assert sorted(titles) == [
        ["maze-2-steps", "maze · difficulty 2 · seed 2", "maze-2-steps · sweep inject"],
        ["maze-2-trajectory", "maze · difficulty 2 · seed 2", "maze-2-trajectory · variant ensemble"],
    ]
    screenshot(page, "stored_runs_listed")

    page.click("#jobs a.job-link[data-job='maze-2-trajectory']")
    page.wait_for_selector("section.explorer[data-job='maze-2-trajectory'][data-status='finished']")
    assert page.inner_text("h1.job-title") == "maze · difficulty 2 · seed 2"
    assert page.inner_text(".job-meta").startswith("maze-2-trajectory · tiny · 3 steps")
    # Read from its directory: no live events to count, and its progress is the manifest's (every step of both).
    page.wait_for_function("() => document.getElementById('stream-state').textContent.startsWith('stored run')")
    assert page.inner_text("#step-count") == "6 / 6 steps"
    assert page.eval_on_selector(".job-state .progress .bar", "b => b.style.width") == "100%"
    screenshot(page, "stored_run_opened")
