"""Runs written into the store without the service (`stepscope reproduce`, then `stepscope up --data-dir`) are in the
jobs list from the start, with their progress, without being opened by URL first."""

from __future__ import annotations

from stepscope.client import Client
from stepscope.probe import run_experiment
from stepscope.spec import parse_spec
from stepscope.store import Store
from tests.servers import running_service, wait_until

SPEC = {"model": "tiny", "prompt": "written without the service", "steps": 3}
VARIANT = {"name": "noise1", "interventions": [{"kind": "noise_at_step", "steps": [1], "strength": 0.5}]}


def test_stored_runs_are_listed_at_start_with_their_progress(tiny, tmp_path):
    store = Store(str(tmp_path / "runs"))
    run_experiment(tiny, parse_spec(SPEC), store.create("maze-3-noise"))
    run_experiment(tiny, parse_spec({**SPEC, "variants": [VARIANT]}), store.create("maze-3-trajectory"))
    store.create("not-a-run")  # a directory without a manifest is left alone
    with running_service(tmp_path, tmp_path / "runs", []) as service, Client(service.url) as client:
        # Listed by the API's first look at the store, without any request naming them.
        def both_listed():
            jobs = {j["id"]: j for j in client.jobs(limit=10)}
            return jobs if len(jobs) >= 2 else None

        listed = wait_until(both_listed, 60, "the stored runs to be listed")
        assert set(listed) == {"maze-3-noise", "maze-3-trajectory"}
        for job_id, trajectories in (("maze-3-noise", 1), ("maze-3-trajectory", 2)):
            job = listed[job_id]
            assert job["status"] == "finished" and "stored run" in job["adopted"]
            # Finished: every step of every trajectory done (3 steps each).
            assert job["progress"] == {"done": 3 * trajectories, "total": 3 * trajectories}
        assert listed["maze-3-trajectory"]["spec"]["variants"][0]["name"] == "noise1"
