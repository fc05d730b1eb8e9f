"""The store on fsspec URLs: an in-memory filesystem, and S3 through a real S3-compatible server."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import uuid

import numpy as np
import pytest
from PIL import Image

from stepscope.store import NotFound, Store, StoreError
from tests.deploy.conftest import S3_CREDENTIALS, S3_REGION


@pytest.fixture
def memory_store() -> Store:
    # The memory filesystem is one per process: every test gets its own root in it.
    store = Store(f"memory://stepscope-{uuid.uuid4().hex}/runs")
    yield store
    store.fs.rm(store.root, recursive=True) if store.fs.exists(store.root) else None


def s3_store(moto_s3, bucket: str, **options) -> Store:
    return Store(
        f"s3://{bucket}/runs",
        endpoint_url=moto_s3.url,
        key=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        secret=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        **options,
    )


def exercise_run(store: Store) -> str:
    """Write a run with every kind of artifact and read each back exactly."""
    run = store.create()
    x0 = np.random.default_rng(0).standard_normal((1, 16, 5, 8, 8)).astype(np.float32)
    norms = np.arange(24, dtype=np.float16).reshape(2, 3, 4)
    pixels = np.random.default_rng(1).integers(0, 256, (8, 12, 3), dtype=np.uint8)
    run.write_array("trajectories/baseline/x0/step_000.npy", x0)
    run.write_array("trajectories/baseline/layer_norms/cond/step_000.npy", norms)
    run.write_image("trajectories/baseline/preview/step_000.png", pixels)
    run.write_image("trajectories/baseline/decode/final/frame_000.jpg", pixels)
    run.write_manifest({"status": "running", "sigma": np.float32(0.5), "shape": np.array([1, 2])})

    again = store.open(run.run_id)
    # .npy files hold the array's bytes: a write and a read give them back exactly.
    np.testing.assert_array_equal(again.read_array("trajectories/baseline/x0/step_000.npy"), x0)
    read_norms = again.read_array("trajectories/baseline/layer_norms/cond/step_000.npy")
    assert read_norms.dtype == np.float16
    np.testing.assert_array_equal(read_norms, norms)
    png = Image.open(io.BytesIO(again.read_bytes("trajectories/baseline/preview/step_000.png")))
    assert png.format == "PNG"
    np.testing.assert_array_equal(np.asarray(png), pixels)  # PNG is lossless
    jpg = Image.open(io.BytesIO(again.read_bytes("trajectories/baseline/decode/final/frame_000.jpg")))
    assert jpg.format == "JPEG" and jpg.size == (12, 8)
    assert again.manifest() == {"status": "running", "sigma": 0.5, "shape": [1, 2]}
    with again.open_file("trajectories/baseline/x0/step_000.npy") as f:
        assert f.read(6) == b"\x93NUMPY"
    assert list(again.files()) == [
        "manifest.json",
        "trajectories/baseline/decode/final/frame_000.jpg",
        "trajectories/baseline/layer_norms/cond/step_000.npy",
        "trajectories/baseline/preview/step_000.png",
        "trajectories/baseline/x0/step_000.npy",
    ]
    return run.run_id


def test_memory_store_round_trips_arrays_images_and_the_manifest(memory_store):
    assert not memory_store.local
    run_id = exercise_run(memory_store)
    run = memory_store.open(run_id)
    assert run.local_path("manifest.json") is None  # the API streams it through fs.open instead
    assert memory_store.run_ids() == [run_id]
    assert memory_store.exists(run_id)
    with pytest.raises(StoreError, match="already exists"):
        memory_store.create(run_id)


def test_memory_store_lists_and_deletes_runs(memory_store):
    ids = sorted(exercise_run(memory_store) for _ in range(3))
    assert memory_store.run_ids() == ids
    assert memory_store.delete(ids[1]) is True
    assert memory_store.run_ids() == [ids[0], ids[2]]
    assert not memory_store.exists(ids[1])
    with pytest.raises(NotFound):
        memory_store.open(ids[1])
    assert memory_store.delete(ids[1]) is False
    # Deleting one run leaves the others whole.
    assert len(list(memory_store.open(ids[0]).files())) == 5


def test_memory_store_opens_a_run_that_holds_only_its_inputs(memory_store):
    run = memory_store.create()
    run.write_bytes("inputs/first_frame.png", b"\x89PNG")
    with pytest.raises(NotFound):
        memory_store.open(run.run_id)
    assert memory_store.open(run.run_id, require_manifest=False).read_bytes("inputs/first_frame.png") == b"\x89PNG"
    with pytest.raises(NotFound):
        run.read_bytes("inputs/missing.png")


@pytest.mark.parametrize(
    "rel",
    ["../other/manifest.json", "/etc/passwd", "a/../../b.npy", "a/./b.npy", "a//b.npy", "a\\..\\b", "%2e%2e/x", ""],
)
def test_memory_store_refuses_paths_that_leave_the_run(memory_store, rel):
    victim = memory_store.create()
    victim.write_json("manifest.json", {"mine": True})
    run = memory_store.create()
    with pytest.raises(StoreError):
        run.write_bytes(rel, b"overwritten")
    with pytest.raises(StoreError):
        run.read_bytes(rel)
    assert victim.manifest() == {"mine": True}
    assert list(run.files()) == []


@pytest.mark.parametrize("run_id", ["..", "../runs", "a/b", ".hidden", "-x", "x" * 65])
def test_memory_store_refuses_bad_run_ids(memory_store, run_id):
    with pytest.raises(StoreError):
        memory_store.open(run_id)
    with pytest.raises(StoreError):
        memory_store.create(run_id)
    assert memory_store.exists(run_id) is False


def test_s3_store_round_trips_a_run(moto_s3):
    bucket = moto_s3.new_bucket()
    store = s3_store(moto_s3, bucket)
    run_id = exercise_run(store)
    # Another client sees exactly the objects the store wrote, under the URL's prefix.
    keys = sorted(k.split(f"{bucket}/runs/{run_id}/", 1)[1] for k in moto_s3.filesystem().find(f"{bucket}/runs"))
    assert keys == list(store.open(run_id).files())
    assert store.delete(run_id) and moto_s3.filesystem().find(f"{bucket}/runs") == []


def test_s3_store_sees_what_other_processes_wrote_after_it_listed(moto_s3):
    """The API lists a run while a worker on another host keeps adding to it: nothing may hide."""
    bucket = moto_s3.new_bucket()
    writer = s3_store(moto_s3, bucket, skip_instance_cache=True)  # its own client, like another host
    reader = s3_store(moto_s3, bucket, skip_instance_cache=True)
    first = writer.create()
    first.write_json("manifest.json", {"step": 0})
    first.write_array("x0/step_000.npy", np.zeros(2))
    assert reader.run_ids() == [first.run_id]
    seen = reader.open(first.run_id)
    assert list(seen.files()) == ["manifest.json", "x0/step_000.npy"]

    first.write_array("x0/step_001.npy", np.ones(2))
    first.write_json("manifest.json", {"step": 1})
    second = writer.create()
    second.write_json("manifest.json", {"step": 0})

    assert seen.exists("x0/step_001.npy")
    with seen.open_file("x0/step_001.npy") as f:
        assert np.load(f).tolist() == [1.0, 1.0]
    assert seen.manifest() == {"step": 1}
    assert list(seen.files()) == ["manifest.json", "x0/step_000.npy", "x0/step_001.npy"]
    assert reader.run_ids() == sorted([first.run_id, second.run_id])
    assert reader.exists(second.run_id)


@pytest.mark.parametrize("endpoint_variable", ["FSSPEC_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL"])
def test_s3_store_takes_endpoint_and_credentials_from_the_environment(moto_s3, endpoint_variable):
    """What deployments set: only environment variables, the store is just STEPSCOPE_STORE."""
    bucket = moto_s3.new_bucket()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FSSPEC_"))}
    env.update(S3_CREDENTIALS, AWS_DEFAULT_REGION=S3_REGION, STEPSCOPE_STORE=f"s3://{bucket}/runs")
    env[endpoint_variable] = moto_s3.url
    code = (
        "from stepscope.config import Settings; from stepscope.store import Store\n"
        "run = Store(Settings().store).create('fromenv'); run.write_json('manifest.json', {'ok': True})"
    )
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    assert moto_s3.filesystem().cat_file(f"{bucket}/runs/fromenv/manifest.json") == b'{\n "ok": true\n}'
