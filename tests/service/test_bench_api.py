"""The task benchmark as an API job (POST /api/bench) against a real API, embedded Redis and a `stepscope worker`
holding the random-weight tiny image-to-video model: progress events, the stored result checked against its own
per-instance scores and the stored videos, 422s naming the field, cancel with a partial result, and a worker killed
mid-bench ending `failed`."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from stepscope import events
from stepscope.bench import score_run
from stepscope.client import ApiError, Client
from stepscope.run_format import BENCH_RESULT, BENCH_SUMMARY, bench_instance_dir
from stepscope.stats import wilson_interval
from stepscope.tasks import TaskInstance
from tests.servers import WorkerGate, running_service, start_worker, wait_until

MODEL = "tiny-i2v"
NOISE = {"name": "noise1", "interventions": [{"kind": "noise_at_step", "steps": [1], "strength": 1.0}]}
FRAMES = 9  # the fewest a task canvas has (17 by default): the frame count is not what these tests are about
WAIT = 240  # seconds a bench of a few tiny instances may take on a loaded 2-core machine (about 3× a slow run)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench-api")
    # A short janitor patience so the killed worker's job fails within the test's deadline.
    env = {"STEPSCOPE_SSE_HEARTBEAT": "1", "STEPSCOPE_LOST_AFTER": "4", "STEPSCOPE_JANITOR_EVERY": "0.5"}
    with running_service(root, root / "runs", [(MODEL, None)], **env) as service:
        service.replacements = []  # workers a test started in place of one it killed
        try:
            yield service
        finally:
            for worker in service.replacements:
                worker.stop()


@pytest.fixture
def client(service):
    with Client(service.url) as c:
        yield c


def live_worker(service):
    """A live worker for the model: the module's, or a new one if a test killed it (whatever order tests run in)."""
    alive = [w for w in (*service.workers, *service.replacements) if w.alive()]
    if not alive:
        alive.append(start_worker(service.environment, service.logs / "worker-again.log", MODEL))
        service.replacements.append(alive[0])
    return alive[0]


@pytest.fixture
def worker(service):
    return live_worker(service)


@pytest.fixture(scope="module")
def finished_bench(service):
    """One small bench run to its end: two families, two instances each, 4 steps, 9 frames, the baseline and one
    variant."""
    live_worker(service)
    with Client(service.url) as client:
        job = client.bench(MODEL, ["maze", "pattern"], 2, [NOISE], steps=4, frames=FRAMES)
        seen = [event for _, event in client.events(job["id"], timeout=WAIT)]
        return job, seen, client.bench_result(job["id"])


def test_a_bench_job_reports_progress_and_finishes(finished_bench):
    job, seen, answer = finished_bench
    assert job["kind"] == "bench" and job["links"]["bench"] == f"/api/bench/{job['id']}"
    assert "manifest" not in job["links"]
    types = [e["type"] for e in seen]
    assert types[0] == events.QUEUED and types[1] == events.STARTED and types[-1] == events.FINISHED, types
    instances = [e for e in seen if e["type"] == events.BENCH_INSTANCE]
    # 2 families × 2 instances, each the baseline and one variant: 8 runs, 2 more with each instance.
    assert [e["progress"] for e in instances] == [{"done": d, "total": 8} for d in (2, 4, 6, 8)]
    assert [(e["family"], e["seed"], e["difficulty"]) for e in instances] == [
        ("maze", 0, 1),
        ("maze", 1, 2),
        ("pattern", 0, 1),
        ("pattern", 1, 2),
    ]
    assert [e["run"] for e in instances] == [bench_instance_dir(e["family"], e["seed"]) for e in instances]
    record = answer["job"]
    assert record["status"] == "finished" and record["progress"] == {"done": 8, "total": 8}
    assert seen[-1]["result"] == BENCH_RESULT


def test_the_stored_result_equals_its_per_instance_scores(finished_bench, service, client):
    job, seen, answer = finished_bench
    summary = answer["result"]
    result = client.bench_json(job["id"])  # the full bench.json, streamed
    assert summary == {k: v for k, v in result.items() if k != "instances"}
    assert result["complete"] is True and result["instances_done"] == result["instances_total"] == 4
    assert (result["model"], result["n"], result["steps"], result["tasks"]) == (MODEL, 2, 4, ["maze", "pattern"])
    assert result["canvas"] == {"size": 64, "frames": FRAMES}
    assert result["trajectories"] == ["baseline", "noise1"] and result["conditioned_on_first_frame"] is True
    by_event = {(e["family"], e["seed"]): e["results"] for e in seen if e["type"] == events.BENCH_INSTANCE}
    for row in result["instances"]:
        # Each verdict is the one the instance's run stored in its manifest (served by the artifacts route) ...
        manifest = client._check(client.http.get(f"/api/jobs/{job['id']}/artifacts/{row['dir']}/manifest.json"))
        stored = manifest.json()["trajectories"]
        assert "run" not in row  # the worker's own filesystem path is not served
        for name, verdict in row["trajectories"].items():
            assert verdict["score"] == stored[name]["task_score"]["score"]
            assert verdict["passed"] == stored[name]["task_score"]["passed"]
            assert by_event[(row["family"], row["seed"])][name] == {
                "score": verdict["score"],
                "passed": verdict["passed"],
            }
        # ... and the scorer run here on the final videos the job stored agrees with it.
        rescored = score_run(TaskInstance.from_json(row["instance"]), f"{service.store}/{job['id']}/{row['dir']}")
        for name, verdict in row["trajectories"].items():
            assert rescored[name]["passed"] == verdict["passed"]
            assert rescored[name]["score"] == pytest.approx(verdict["score"], abs=1e-9)
    for family in ("maze", "pattern"):
        rows = [r for r in result["instances"] if r["family"] == family]
        assert len(rows) == 2
        for name in ("baseline", "noise1"):
            passed = [float(r["trajectories"][name]["passed"]) for r in rows]
            scores = [r["trajectories"][name]["score"] for r in rows]
            assert result["success_rate"][family][name] == pytest.approx(sum(passed) / len(passed))
            assert result["interval"][family][name] == pytest.approx(wilson_interval(int(sum(passed)), len(passed)))
            assert result["mean_score"][family][name] == pytest.approx(sum(scores) / len(scores))
            rate = result["success_rate"][family][name]
            assert f"| {family} | {name} | 2 | {rate:.3f} |" in answer["table"]
    # Random weights solve nothing (docs/tasks.md).
    assert all(r == 0.0 for by_name in result["success_rate"].values() for r in by_name.values())


def test_the_result_is_the_summary_and_bench_json_is_never_parsed_by_the_api(finished_bench, service, client):
    """bench.json grows to about 1 GB at 2,000 runs: GET /api/bench/{id} serves the bounded summary; bench.json
    goes out as a file. Made unparseable here, it must not matter to the summary route."""
    job, _, answer = finished_bench
    assert "instances" not in answer["result"] and answer["result"]["instances_done"] == 4
    link = answer["links"]["bench_json"]
    assert link == f"/api/jobs/{job['id']}/artifacts/{BENCH_RESULT}"
    path = Path(service.store) / job["id"] / BENCH_RESULT
    original = path.read_bytes()
    try:
        path.write_bytes(b'{"instances": [' + b"{}, " * 200_000 + b"not json")
        again = client.bench_result(job["id"])
        assert again["result"] == answer["result"] and again["table"] == answer["table"]
        streamed = client.http.get(link)
        assert streamed.status_code == 200 and streamed.content.endswith(b"not json")
    finally:
        path.write_bytes(original)
    assert (Path(service.store) / job["id"] / BENCH_SUMMARY).stat().st_size < 64 * 1024


def test_bench_jobs_are_listed_by_kind(finished_bench, client):
    job, _, _ = finished_bench
    benches = client._check(client.http.get("/api/jobs", params={"kind": "bench"})).json()["jobs"]
    assert job["id"] in [j["id"] for j in benches]
    assert job["id"] not in [j["id"] for j in client.jobs()]  # the default listing is experiments


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"tasks": ["maze", "sudoku"]}, "tasks.1", "unknown task family 'sudoku'"),
        ({"n": 0}, "n", "must be 1 to 500"),
        ({"n": 501}, "n", "must be 1 to 500"),
        ({"n": 400, "variants": [NOISE]}, "n", "= 2400 runs, over the limit of 2000"),
        ({"n": True}, "n", "valid integer"),
        (
            {"variants": [{**NOISE, "interventions": [{"kind": "noise_at_step", "steps": [1], "strength": -1}]}]},
            "variants.0.interventions.0.strength",
            "greater than or equal to 0",
        ),
        (
            {
                "steps": 4,
                "variants": [
                    NOISE,
                    {
                        **NOISE,
                        "name": "late",
                        "interventions": [{"kind": "noise_at_step", "steps": [4], "strength": 1.0}],
                    },
                ],
            },
            "variants.1.interventions.0.steps",
            "beyond the run's 4 steps",
        ),
        ({"variants": [NOISE, NOISE]}, "variants.1.name", "duplicate variant name"),
        (
            {
                "variants": [
                    {
                        "name": "x",
                        "interventions": [{"kind": "layer_swap", "layers": [99], "steps": [0], "source": {"seed": 1}}],
                    }
                ]
            },
            "variants.0.interventions.0.layers",
            "beyond the model's",
        ),
        ({"frames": 18}, "frames", "4k+1"),
        ({"size": 72}, "size", "multiple of 16"),
        ({"first_seed": 2**31 - 1}, "first_seed", "first_seed + n − 1"),
        ({"curves": "final"}, "curves", "'preview' or 'decode'"),
        ({"model": "no-such-model"}, "model", "unknown model"),
        ({"seeds": 3}, "seeds", "Extra inputs are not permitted"),
    ],
)
def test_a_bad_field_is_a_422_naming_it(client, body, field, words):
    with pytest.raises(ApiError) as refused:
        client._check(client.http.post("/api/bench", json={"model": MODEL, "n": 2, **body}))
    assert refused.value.status == 422, refused.value.detail
    assert refused.value.field == field
    assert refused.value.detail.startswith(f"{field}: ") and words in refused.value.detail


def test_a_body_that_is_not_an_object_is_refused(client):
    for raw, status, field in ((b"[1, 2]", 422, "body"), (b"{nope", 400, "body")):
        r = client.http.post("/api/bench", content=raw, headers={"Content-Type": "application/json"})
        assert r.status_code == status and r.json()["field"] == field, r.text
    r = client.http.post("/api/bench", content=b"n=2", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415


def test_only_bench_jobs_have_a_bench_result(client):
    with pytest.raises(ApiError) as missing:
        client.bench_result("0123456789abcdef")
    assert missing.value.status == 404 and missing.value.field == "job_id"
    experiment = client.submit({"model": "tiny", "steps": 2})  # no worker serves tiny here: it stays queued
    try:
        with pytest.raises(ApiError) as wrong:
            client.bench_result(experiment["id"])
        assert wrong.value.status == 404 and "is a experiment job, not a bench" in wrong.value.detail
    finally:
        client.delete(experiment["id"])


def is_bench_instance(event: dict) -> bool:
    return event["type"] == events.BENCH_INSTANCE


def test_cancel_stops_the_bench_and_keeps_what_finished(client, worker):
    with WorkerGate(worker, client) as gate:
        gate.hold()
        job = client.bench(MODEL, ["maze"], 40, steps=4, frames=FRAMES)
        # Frozen once the first instance is stored, 39 to go: the cancel lands mid-bench, however fast the machine.
        gate.run_until(job["id"], is_bench_instance, "the first bench instance", timeout=WAIT)
        assert client.cancel(job["id"])["status"] == "running"
    final = client.wait(job["id"], timeout=WAIT)
    assert final["status"] == "cancelled", final
    answer = client.bench_result(job["id"])
    result = answer["result"]
    assert result["complete"] is False and 1 <= result["instances_done"] < 40
    assert len(client.bench_json(job["id"])["instances"]) == result["instances_done"]
    assert "Partial: " in answer["table"] and f"| maze | baseline | {result['instances_done']} |" in answer["table"]
    assert final["progress"]["total"] == 40 and final["progress"]["done"] == result["instances_done"]


def test_a_worker_killed_mid_bench_ends_the_job_failed(service, client, worker):
    with WorkerGate(worker, client) as gate:
        gate.hold()
        job = client.bench(MODEL, ["maze"], 40, steps=4, frames=FRAMES)
        gate.run_until(job["id"], is_bench_instance, "the first bench instance", timeout=WAIT)  # frozen mid-bench
        os.kill(worker.pid, signal.SIGKILL)  # the `worker` fixture starts another for any test that needs one later
        worker.process.wait()
    final = client.wait(job["id"], timeout=60)  # the janitor's patience is 4 s
    assert final["status"] == "failed" and "lost" in final["error"], final

    def statuses() -> dict:
        found = {}
        for instance in sorted(os.listdir(f"{service.store}/{job['id']}/maze")):
            path = f"/api/jobs/{job['id']}/artifacts/maze/{instance}/manifest.json"
            manifest = client._check(client.http.get(path)).json()
            found[instance] = (manifest["status"], manifest.get("partial"))
        return found

    # The janitor labels the instance the worker was running failed and partial (just after the job's failed event);
    # finished ones stay finished.
    def settled() -> dict | None:
        found = statuses()
        return found if all(status != "running" for status, _ in found.values()) else None

    labelled = wait_until(settled, 30, "the janitor to label the partial instance run")
    assert labelled[bench_instance_dir("maze", 0).split("/")[1]] == ("finished", None)
    assert set(labelled.values()) <= {("finished", None), ("failed", True)}
    # The summary of the instances finished before the kill is served (bench.json, written at the end, is not).
    answer = client.bench_result(job["id"])
    result, finished = answer["result"], sum(1 for s, _ in labelled.values() if s == "finished")
    assert result is not None and result["complete"] is False and result["instances_total"] == 40
    assert 1 <= result["instances_done"] <= finished  # the last instance may have ended just before its summary
    assert result["count"]["maze"]["baseline"] == result["instances_done"]
    assert "Partial: " in answer["table"] and answer["links"]["bench_json"] is None
