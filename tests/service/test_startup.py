"""What a service says as it starts, before any worker is ready: runs written into its store without it
(`stepscope reproduce`, then `stepscope up --data-dir`) are in the jobs list at once, with their progress; health is
ok but not ready, naming the models it waits for; `/api/models` names the model a spec without one runs on. (Ready
once a worker serves every offered model: tests/service/test_api.py.)"""

from __future__ import annotations

import pytest

from stepscope.api.routes.health import offered_models
from stepscope.client import Client
from stepscope.config import Settings
from stepscope.probe import run_experiment
from stepscope.spec import check_spec
from stepscope.store import Store
from tests.servers import running_service, wait_until

SPEC = {"model": "tiny", "prompt": "written without the service", "steps": 3}
VARIANT = {"name": "noise1", "interventions": [{"kind": "noise_at_step", "steps": [1], "strength": 0.5}]}


@pytest.fixture(scope="module")
def starting(tiny, tmp_path_factory):
    """A store with two finished runs and a directory that is not a run; the API over it with no worker at all."""
    root = tmp_path_factory.mktemp("starting")
    store = Store(str(root / "runs"))
    run_experiment(tiny, check_spec(SPEC, tiny.info), store.create("maze-3-noise"))
    run_experiment(tiny, check_spec({**SPEC, "variants": [VARIANT]}, tiny.info), store.create("maze-3-trajectory"))
    store.create("not-a-run")  # a directory without a manifest is left alone
    with running_service(root, root / "runs", [], STEPSCOPE_MODELS="tiny,tiny-i2v") as service:
        with Client(service.url) as client:
            yield client


def test_stored_runs_are_listed_at_start_with_their_progress(starting):
    def both_listed():
        jobs = {j["id"]: j for j in starting.jobs(limit=10)}
        return jobs if len(jobs) >= 2 else None

    # Listed by the API's first look at its store, without any request naming them.
    listed = wait_until(both_listed, 60, "the stored runs to be listed")
    assert set(listed) == {"maze-3-noise", "maze-3-trajectory"}
    for job_id, trajectories in (("maze-3-noise", 1), ("maze-3-trajectory", 2)):
        job = listed[job_id]
        assert job["status"] == "finished" and "stored run" in job["adopted"]
        # Finished: every step of every trajectory done (3 steps each).
        assert job["progress"] == {"done": 3 * trajectories, "total": 3 * trajectories}
    assert listed["maze-3-trajectory"]["spec"]["variants"][0]["name"] == "noise1"


def test_health_is_ok_before_it_is_ready(starting):
    # The API and Redis answer; no worker has loaded a model: ok, not ready, and which models it waits for.
    health = starting.health()
    assert (health["status"], health["ready"], health["waiting_for"]) == ("ok", False, ["tiny", "tiny-i2v"])
    assert health["queues"] == {}


def test_the_default_model_is_the_one_a_spec_without_a_model_runs_on(starting):
    listing = starting.http.get("/api/models").json()
    assert listing["default"] == "tiny" and "tiny" in {m["name"] for m in listing["models"]}
    job = starting.submit({"prompt": "no model named", "steps": 2})
    assert job["model"] == listing["default"]
    starting.cancel(job["id"])


def test_offered_models_are_stepscope_models_and_up_s_workers():
    settings = Settings(models="tiny, wan2.1-t2v-1.3b", redis_url="redis://unused")
    assert offered_models(settings, None) == ["tiny", "wan2.1-t2v-1.3b"]
    supervised = {"redis": {"state": "running"}, "worker:tiny-i2v": {"state": "running"}, "worker:tiny": {}}
    assert offered_models(settings, supervised) == ["tiny", "wan2.1-t2v-1.3b", "tiny-i2v"]
