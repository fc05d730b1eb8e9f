"""Health says when the service can run a job: `ready` once every offered model has a worker that has loaded it.
`/api/models` names the model a spec without one runs on."""

from __future__ import annotations

from stepscope.api.routes.health import offered_models
from stepscope.client import Client
from stepscope.config import Settings
from tests.servers import running_service, start_worker


def test_health_is_ok_before_it_is_ready_and_ready_once_each_offered_model_has_a_worker(tmp_path):
    with running_service(tmp_path, tmp_path / "runs", [], STEPSCOPE_MODELS="tiny,tiny-i2v") as service:
        with Client(service.url) as client:
            # The API and Redis answer, no worker has loaded a model yet: ok, not ready.
            health = client.health()
            assert (health["status"], health["ready"], health["waiting_for"]) == ("ok", False, ["tiny", "tiny-i2v"])

            # The default model is the one a spec without `model` runs on.
            listing = client.http.get("/api/models").json()
            assert listing["default"] == "tiny" and "tiny" in {m["name"] for m in listing["models"]}
            job = client.submit({"prompt": "no model named", "steps": 2})
            assert job["model"] == listing["default"]
            client.cancel(job["id"])

            # start_worker returns once the worker announced itself, i.e. after loading its model.
            worker = start_worker(service.environment, service.logs / "worker-tiny.log", "tiny")
            try:
                health = client.health()
                assert (health["ready"], health["waiting_for"]) == (False, ["tiny-i2v"])
                assert health["queues"]["stepscope:tiny"]["workers"] == 1
            finally:
                worker.stop()


def test_offered_models_are_stepscope_models_and_up_s_workers():
    settings = Settings(models="tiny, wan2.1-t2v-1.3b", redis_url="redis://unused")
    assert offered_models(settings, None) == ["tiny", "wan2.1-t2v-1.3b"]
    supervised = {"redis": {"state": "running"}, "worker:tiny-i2v": {"state": "running"}, "worker:tiny": {}}
    assert offered_models(settings, supervised) == ["tiny", "wan2.1-t2v-1.3b", "tiny-i2v"]
