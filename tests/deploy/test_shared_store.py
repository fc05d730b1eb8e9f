"""Several workers, one Redis, one store on S3: the team deployment, with real processes.

Redis (embedded), moto's S3 server, two `stepscope worker` processes serving the tiny model
on CPU and `stepscope api`, all on 127.0.0.1, configured only through environment variables
(STEPSCOPE_STORE=s3://..., the AWS_* keys and FSSPEC_S3_ENDPOINT_URL) as docs/deploy.md says.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
import zipfile

import httpx
import numpy as np
import pytest
import redis
import yaml
from PIL import Image
from rq import Worker

from stepscope.client import Client
from stepscope.embedded_redis import free_port
from stepscope.jobs import queue_name
from tests.deploy.conftest import REPO
from tests.servers import running_service, wait_until

TOKEN = "deploy-test-token"
# 3 steps: what is checked is where a job's objects go and how they are served, not the denoising.
SPEC = {"model": "tiny", "prompt": "a ball rolls through a maze", "steps": 3}


@pytest.fixture(scope="module")
def team(tmp_path_factory, moto_s3):
    root = tmp_path_factory.mktemp("team")
    bucket = moto_s3.new_bucket()
    workers = [("tiny", "host-a-gpu0"), ("tiny", "host-b-gpu0")]
    with running_service(root, f"s3://{bucket}/runs", workers, STEPSCOPE_TOKEN=TOKEN, **moto_s3.env()) as team:
        team.store_prefix = f"{bucket}/runs"
        team.s3 = moto_s3.filesystem()
        yield team


@pytest.fixture
def client(team):
    with Client(team.url, token=TOKEN) as c:
        yield c


def test_a_job_runs_into_s3_and_the_api_serves_its_artifacts(team, client):
    job = client.submit(SPEC)
    record = client.wait(job["id"], timeout=120)
    assert record["status"] == "finished", record
    prefix = f"{team.store_prefix}/{job['id']}"

    # The manifest the API serves is the object in the bucket.
    stored = json.loads(team.s3.cat_file(f"{prefix}/manifest.json"))
    assert client.manifest(job["id"]) == stored
    assert stored["status"] == "finished"

    # Every file the API lists is in the bucket, and nothing else is.
    files = client.files(job["id"])
    assert sorted(files) == sorted(k.removeprefix(prefix + "/") for k in team.s3.find(prefix))
    assert "trajectories/baseline/x0/step_002.npy" in files

    # Arrays: the exact bytes, with dtype and shape headers read from the stored .npy.
    rel = "trajectories/baseline/x0/step_002.npy"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    response = httpx.get(f"{team.url}/api/jobs/{job['id']}/artifacts/{rel}", headers=headers)
    assert response.status_code == 200
    assert response.content == team.s3.cat_file(f"{prefix}/{rel}")
    array = np.load(io.BytesIO(response.content))
    assert response.headers["x-shape"] == ",".join(map(str, array.shape))
    assert response.headers["x-dtype"] == array.dtype.str

    # Images decode; the final decode's video is there too.
    preview = client.artifact(job["id"], "trajectories/baseline/preview/step_002.png")
    assert Image.open(io.BytesIO(preview)).format == "PNG"
    videos = [f for f in files if f.endswith("video.mp4")]
    assert videos and client.artifact(job["id"], videos[0])[4:8] == b"ftyp"

    # The run as a zip, streamed from the bucket file by file.
    bundle = httpx.get(f"{team.url}/api/jobs/{job['id']}/export/bundle.zip", headers=headers, timeout=60)
    assert bundle.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(bundle.content))
    assert sorted(archive.namelist()) == sorted(f"stepscope-{job['id']}/{f}" for f in files)
    assert archive.read(f"stepscope-{job['id']}/{rel}") == team.s3.cat_file(f"{prefix}/{rel}")

    missing = httpx.get(f"{team.url}/api/jobs/{job['id']}/artifacts/trajectories/none.npy", headers=headers)
    assert missing.status_code == 404
    escape = httpx.get(f"{team.url}/api/jobs/{job['id']}/artifacts/a/..%2F..%2Fx", headers=headers)
    assert escape.status_code == 400


def test_two_workers_share_one_queue_and_one_store(team, client):
    conn = redis.Redis.from_url(team.redis_url)
    names = {w.name for w in team.workers}

    def both_listening():
        workers = Worker.all(connection=conn, queue=None)
        # RQ names a stepscope worker "<name>.<generation>" (a new generation after a Redis outage).
        idle = {
            w.name.rsplit(".", 1)[0]
            for w in workers
            if w.get_state() == "idle" and queue_name("tiny") in w.queue_names()
        }
        return idle >= names

    wait_until(both_listening, 30, "both workers to wait on the tiny queue")
    quick = {**SPEC, "probes": {"final_decode": False}}
    ids = [client.submit({**quick, "seed": seed})["id"] for seed in range(4)]
    records = [client.wait(job_id, timeout=120) for job_id in ids]
    assert [r["status"] for r in records] == ["finished"] * 4, records
    assert {r["worker"] for r in records} == names  # both took jobs from the one queue

    # One store: every run is in the bucket, whichever worker wrote it, and the API serves it.
    in_bucket = {p.rsplit("/", 1)[-1] for p in team.s3.ls(team.store_prefix)}
    assert set(ids) <= in_bucket
    for job_id, record in zip(ids, records, strict=True):
        manifest = client.manifest(job_id)
        assert manifest["status"] == "finished"
        assert manifest["spec"]["seed"] == record["spec"]["seed"]


def test_deleting_a_job_removes_its_objects(team, client):
    job_id = client.submit(SPEC)["id"]
    assert client.wait(job_id, timeout=120)["status"] == "finished"
    assert team.s3.find(f"{team.store_prefix}/{job_id}")
    client.delete(job_id)
    assert team.s3.find(f"{team.store_prefix}/{job_id}") == []
    response = httpx.get(f"{team.url}/api/jobs/{job_id}/manifest", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 404


def _compose_service(name: str) -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"][name]


def _dockerfile_healthcheck() -> list[str]:
    text = (REPO / "Dockerfile.gpu").read_text().replace("\\\n", " ")
    line = next(x for x in text.splitlines() if x.startswith("HEALTHCHECK"))
    return json.loads(line.split(" CMD ", 1)[1])


def _run_check(command: list[str], env: dict) -> int:
    # The image's `python` is the interpreter that has stepscope; here that is this one.
    assert command[0] == "python"
    return subprocess.run([sys.executable, *command[1:]], env=env, timeout=30, capture_output=True).returncode


def test_image_healthcheck_asks_the_api_with_the_token(team):
    """The Dockerfile's HEALTHCHECK command, run here against a real API (not in a container)."""
    command = _dockerfile_healthcheck()
    port = team.url.rsplit(":", 1)[1]
    assert _run_check(command, {**team.environment, "STEPSCOPE_PORT": port}) == 0
    without_token = {k: v for k, v in team.environment.items() if k != "STEPSCOPE_TOKEN"}
    assert _run_check(command, {**without_token, "STEPSCOPE_PORT": port}) != 0  # 401
    assert _run_check(command, {**team.environment, "STEPSCOPE_PORT": str(free_port())}) != 0  # nothing there


def test_worker_healthcheck_sees_this_hosts_heartbeat(team):
    """The compose file's worker health check, run here against the real Redis and workers."""
    test = _compose_service("worker-gpu0")["healthcheck"]["test"]
    assert test[0] == "CMD"
    assert _run_check(test[1:], team.environment) == 0
    other_db = team.redis_url.rsplit("/", 1)[0] + "/5"  # a Redis where no worker announced itself
    assert _run_check(test[1:], {**team.environment, "STEPSCOPE_REDIS_URL": other_db}) != 0


def test_workers_report_their_heartbeat_with_the_store(team, client):
    health = client.health()
    assert health["store"].startswith("s3://")
    assert {w["name"] for w in health["workers"]} == {w.name for w in team.workers}
    assert health["queues"][queue_name("tiny")]["workers"] == 2
    assert time.time() - min(w["seen"] for w in health["workers"]) < 30
