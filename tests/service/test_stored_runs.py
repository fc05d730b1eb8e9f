"""Run directories without a job record (written by `stepscope reproduce`/`bench`, or whose record expired) are
served like finished jobs: the API adopts them from their manifests."""

from __future__ import annotations

import json
import shutil
import threading

import httpx
import redis

from stepscope.client import Client
from stepscope.jobs import Jobs

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


def test_a_copied_running_manifest_is_adopted_as_failed_once_by_concurrent_requests(client: Client, service):
    job = client.submit(SPEC)
    list(client.events(job["id"]))
    copy = "copied-" + job["id"]
    shutil.copytree(service.store / job["id"], service.store / copy)
    path = service.store / copy / "manifest.json"
    data = json.loads(path.read_text())
    data.update(status="running", id=copy)
    data.pop("finished", None)
    path.write_text(json.dumps(data))

    answers: list[dict] = []

    def fetch() -> None:
        answers.append(httpx.get(f"{service.url}/api/jobs/{copy}", timeout=30).json())

    threads = [threading.Thread(target=fetch) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(answers) == 8 and {a["status"] for a in answers} == {"failed"}
    assert "gone" in answers[0]["error"]
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
