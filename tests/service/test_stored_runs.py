"""Run directories without a job record (written by `stepscope reproduce`/`bench`, or whose record expired) are
served like finished jobs: the API adopts them from their manifests."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path

import httpx
import redis

from stepscope.client import Client
from stepscope.jobs import ABANDONED_AFTER, Jobs

SPEC = {"model": "tiny", "prompt": "a stored run", "steps": 2}


def forget_record(service, job_id: str) -> None:
    """What an expired TTL leaves: the run directory, no record, no events."""
    conn = redis.Redis.from_url(service.redis_url)
    Jobs(conn).delete(job_id)
    conn.close()


def test_a_run_directory_without_a_record_is_served_as_its_manifest_says(client: Client, service):
    job = client.submit(SPEC)
    assert [e["type"] for _, e in client.events(job["id"])][-1] == "finished"
    manifest = client.manifest(job["id"])
    forget_record(service, job["id"])

    adopted = client.job(job["id"])
    assert (adopted["status"], adopted["model"], adopted["spec"]["prompt"]) == ("finished", "tiny", "a stored run")
    assert adopted["created"] == manifest["created"]
    # The event stream ends at once with the terminal event, so a viewer does not wait forever.
    assert [e["type"] for _, e in client.events(job["id"])] == ["finished"]
    assert client.manifest(job["id"]) == manifest
    stored = next((service.store / job["id"]).rglob("*.npy")).relative_to(service.store / job["id"]).as_posix()
    assert client.artifact(job["id"], stored) == (service.store / job["id"] / stored).read_bytes()


def copy_as_running(service, job_id: str, copy: str) -> Path:
    """Another process's run in progress: a copy of a finished run whose manifest says running."""
    shutil.copytree(service.store / job_id, service.store / copy)
    path = service.store / copy / "manifest.json"
    data = json.loads(path.read_text())
    data.update(status="running", id=copy)
    data.pop("finished", None)
    path.write_text(json.dumps(data))
    return path


def test_a_run_being_written_elsewhere_is_running_until_its_manifest_ends(client: Client, service):
    job = client.submit(SPEC)
    list(client.events(job["id"]))
    copy = "writing-" + job["id"]
    path = copy_as_running(service, job["id"], copy)
    first = client.job(copy)
    assert first["status"] == "running" and "not stored" in first["adopted"]
    assert client.job(copy)["status"] == "running"  # asked again, still not stored
    data = json.loads(path.read_text())
    data.update(status="finished", finished="2026-01-01T00:00:00.000+00:00")
    path.write_text(json.dumps(data))
    assert client.job(copy)["status"] == "finished"
    assert [e["type"] for _, e in client.events(copy)] == ["finished"]


def test_an_abandoned_running_manifest_is_adopted_as_failed_once_by_concurrent_requests(client: Client, service):
    job = client.submit(SPEC)
    list(client.events(job["id"]))
    copy = "copied-" + job["id"]
    path = copy_as_running(service, job["id"], copy)
    long_ago = time.time() - ABANDONED_AFTER - 60
    os.utime(path, (long_ago, long_ago))

    answers: list[dict] = []

    def fetch() -> None:
        answers.append(httpx.get(f"{service.url}/api/jobs/{copy}", timeout=30).json())

    threads = [threading.Thread(target=fetch) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(answers) == 8 and {a["status"] for a in answers} == {"failed"}
    assert "writer is gone" in answers[0]["error"]
    finals = [e for _, e in client.events(copy)]
    assert [e["type"] for e in finals] == ["failed"]  # one record, one terminal event
    client.delete(copy)
    assert not (service.store / copy).exists()
    assert httpx.get(f"{service.url}/api/jobs/{copy}").status_code == 404


def test_a_directory_with_a_broken_manifest_stays_404(service):
    (service.store / "broken-run").mkdir()
    (service.store / "broken-run" / "manifest.json").write_text("{not json")
    r = httpx.get(f"{service.url}/api/jobs/broken-run")
    assert r.status_code == 404 and "broken-run" in r.json()["detail"]
