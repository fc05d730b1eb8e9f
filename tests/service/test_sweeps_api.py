"""A sweep submitted through the API runs as one job; its curve comes back through the client."""

from __future__ import annotations

import pytest

import stepscope
from stepscope.client import Client


def test_a_sweep_job_and_its_curve_through_the_client(client: Client, service):
    template = {"kind": "noise_at_step", "steps": [1], "strength": 1.0}
    spec = {
        "model": "tiny",
        "prompt": "a ball rolls through a maze",
        "steps": 4,
        "height": 32,
        "width": 32,
        "frames": 5,
        "sweeps": [{"name": "inject", "over": "steps", "values": [1, 2, 3], "intervention": template}],
    }
    job = client.submit(spec)
    assert client.wait(job["id"], timeout=300)["status"] == "finished"
    sweep = client.sweep(job["id"], "inject")
    # The same record the run directory holds, read independently of the API.
    run = stepscope.load_run(str(service.store / job["id"]))
    assert sweep == run.sweep("inject")
    assert sweep["values"] == [1, 2, 3] and len(sweep["curve"]["final_relative_l2"]) == 3
    assert all(v > 0 for v in sweep["curve"]["final_relative_l2"])  # every member moved away from the baseline
    with pytest.raises(KeyError, match="no sweep 'other'"):
        client.sweep(job["id"], "other")
