"""docker-compose.yml: valid under the Compose Specification, and shaped as docs/deploy.md says.

The schema is the compose-spec project's own (schema/compose-spec.json, Apache-2.0), as vendored
by the `check-jsonschema` package from PyPI (check_jsonschema/builtin_schemas/vendor/, license
in licenses/LICENSE.compose-spec there). No Docker engine is needed, and none is used.
"""

from __future__ import annotations

import copy
import json
import shlex
from importlib import resources

import jsonschema
import pytest
import yaml

from stepscope.cli import build_parser
from stepscope.models import PRESETS
from tests.deploy.conftest import REPO, interpolate

COMPOSE = REPO / "docker-compose.yml"
STEPSCOPE_SERVICES = ("api", "worker-cpu", "worker-gpu0", "worker-gpu1", "worker-gpu2", "worker-gpu3")
GPU_WORKERS = ("worker-gpu0", "worker-gpu1", "worker-gpu2", "worker-gpu3")


def compose_schema() -> dict:
    vendored = resources.files("check_jsonschema.builtin_schemas.vendor")
    assert "Apache License" in (vendored / "licenses" / "LICENSE.compose-spec").read_text()
    return json.loads((vendored / "compose-spec.json").read_text())


def validator() -> jsonschema.protocols.Validator:
    schema = compose_schema()
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def compose(raw) -> dict:
    """The file as Compose sees it with nothing set in the environment: every default applied."""
    return interpolate(raw, {})


def enabled(compose: dict, profiles: set[str]) -> dict:
    """The services `docker compose --profile ...` starts: no profiles, or one of those active."""
    return {
        name: svc
        for name, svc in compose["services"].items()
        if not svc.get("profiles") or profiles & set(svc["profiles"])
    }


def environment(service: dict) -> dict:
    return service.get("environment") or {}


def volume_mounts(service: dict) -> dict[str, str]:
    """target → named volume, for the short `volume:/path` syntax used throughout."""
    mounts = {}
    for entry in service.get("volumes", []):
        source, target = entry.split(":")[:2]
        mounts[target] = source
    return mounts


def dockerfile_env() -> dict[str, str]:
    text = (REPO / "Dockerfile.gpu").read_text().replace("\\\n", " ")
    block = next(line for line in text.splitlines() if line.startswith("ENV "))
    return dict(item.split("=", 1) for item in shlex.split(block[4:]))


def test_compose_file_is_valid_under_the_compose_specification(raw, compose):
    check = validator()
    for document in (raw, compose):
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in check.iter_errors(document)]
        assert errors == []


@pytest.mark.parametrize(
    "break_it",
    [
        lambda d: d["services"]["api"].__setitem__("portz", ["8000:8000"]),
        lambda d: d["services"]["worker-gpu0"]["deploy"]["resources"]["reservations"]["devices"][0].pop("capabilities"),
        lambda d: d["services"]["redis"]["healthcheck"].__setitem__("every", "5s"),
        lambda d: d["volumes"].__setitem__("runs", {"driverr": "local"}),
    ],
)
def test_the_schema_check_catches_a_broken_file(compose, break_it):
    broken = copy.deepcopy(compose)
    break_it(broken)
    assert list(validator().iter_errors(broken))


def test_every_variable_has_a_default(raw):
    # Compose warns about (and blanks) unset variables; ours all work with nothing set.
    text = COMPOSE.read_text()
    assert interpolate(raw, {}) is not None
    for chunk in text.split("${")[1:]:
        name = chunk.split("}", 1)[0]
        assert ":-" in name, f"${{{name}}} has no default"


def test_api_is_bound_to_localhost_by_default(compose):
    for name, svc in compose["services"].items():
        for port in svc.get("ports", []):
            assert isinstance(port, dict), f"{name}: use the long port syntax so host_ip is explicit"
            assert port["host_ip"] == "127.0.0.1", name
    (api_port,) = compose["services"]["api"]["ports"]
    assert api_port["target"] == 8000 and str(api_port["published"]) == "8000"
    assert "ports" not in compose["services"]["redis"]  # Redis is reached over the compose network only
    exposed = interpolate(yaml.safe_load(COMPOSE.read_text()), {"STEPSCOPE_BIND": "0.0.0.0"})
    assert exposed["services"]["api"]["ports"][0]["host_ip"] == "0.0.0.0"  # an explicit choice


def test_redis_persists_to_an_append_only_file_on_a_volume(compose):
    redis = compose["services"]["redis"]
    command = redis["command"]
    assert command[0] == "redis-server"
    assert command[command.index("--appendonly") + 1] == "yes"
    assert volume_mounts(redis)["/data"] in compose["volumes"]
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert not redis.get("profiles")


def test_one_image_serves_the_api_and_every_worker(compose):
    parser = build_parser()
    images = set()
    for name in STEPSCOPE_SERVICES:
        svc = compose["services"][name]
        images.add((svc["image"], svc["build"]["dockerfile"], svc["build"]["context"]))
        command = svc["command"]
        assert command[0] == "stepscope"
        args = parser.parse_args(command[1:])  # the real CLI accepts the command line
        assert args.command == ("api" if name == "api" else "worker")
        if args.command == "worker":
            assert args.model in PRESETS
    assert images == {("stepscope:gpu", "Dockerfile.gpu", ".")}


def test_api_and_workers_share_redis_and_the_store(compose):
    settings = {
        name: (environment(svc)["STEPSCOPE_REDIS_URL"], environment(svc)["STEPSCOPE_STORE"])
        for name, svc in compose["services"].items()
        if name in STEPSCOPE_SERVICES
    }
    assert set(settings.values()) == {("redis://redis:6379/0", "/data/runs")}
    # The default store is one named volume, mounted where STEPSCOPE_STORE points, in each of them.
    sources = {volume_mounts(compose["services"][name])["/data/runs"] for name in STEPSCOPE_SERVICES}
    assert len(sources) == 1 and sources <= set(compose["volumes"])
    assert dockerfile_env()["STEPSCOPE_STORE"] == "/data/runs"


def test_gpu_workers_reserve_one_gpu_each(compose):
    ids = []
    for name in GPU_WORKERS:
        svc = compose["services"][name]
        (device,) = svc["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
        (gpu,) = device["device_ids"]
        ids.append(gpu)
        assert environment(svc)["STEPSCOPE_DEVICE"] == "cuda"  # the one GPU the container sees
        assert svc["command"][-1] == "wan2.1-t2v-1.3b"
        assert len(svc["profiles"]) == 1
        assert svc["healthcheck"]["start_period"]  # model download and load come first
    assert ids == ["0", "1", "2", "3"]
    # Model and GPU come from the environment.
    chosen = interpolate(
        yaml.safe_load(COMPOSE.read_text()), {"STEPSCOPE_MODEL": "wan2.2-i2v-a14b", "STEPSCOPE_GPU1": "5"}
    )["services"]["worker-gpu1"]
    assert chosen["command"][-1] == "wan2.2-i2v-a14b"
    assert chosen["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"] == ["5"]


def test_profiles_start_cpu_or_gpu_workers(compose):
    always = set(enabled(compose, set()))
    assert always == {"redis", "api"}
    laptop = enabled(compose, {"cpu"})
    assert set(laptop) == always | {"worker-cpu"}
    for svc in laptop.values():
        assert "deploy" not in svc  # nothing asks for a GPU on a laptop
    cpu = laptop["worker-cpu"]
    assert cpu["command"][-1] == "tiny" and environment(cpu)["STEPSCOPE_DEVICE"] == "cpu"
    assert set(enabled(compose, {"gpu"})) == always | {"worker-gpu0"}
    assert set(enabled(compose, {"gpu", "gpu1", "gpu2", "gpu3"})) == always | set(GPU_WORKERS)


def test_workers_keep_model_weights_in_a_volume(compose):
    hf_home = dockerfile_env()["HF_HOME"]
    for name in ("worker-cpu", *GPU_WORKERS):
        mounts = volume_mounts(compose["services"][name])
        covering = [target for target in mounts if hf_home == target or hf_home.startswith(target.rstrip("/") + "/")]
        assert covering, f"{name}: HF_HOME={hf_home} is not on a volume"
        assert mounts[covering[0]] in compose["volumes"]
    assert len({volume_mounts(compose["services"][n])["/cache"] for n in GPU_WORKERS}) == 1  # downloaded once


def test_every_named_volume_is_declared_and_used(compose):
    used = {src for svc in compose["services"].values() for src in volume_mounts(svc).values()}
    assert used == set(compose["volumes"])


def test_s3_profile_runs_minio_and_creates_the_documented_bucket(compose):
    s3 = enabled(compose, {"s3"})
    assert {"minio", "minio-bucket"} <= set(s3)
    assert compose["services"]["minio"]["ports"][0]["host_ip"] == "127.0.0.1"
    command = compose["services"]["minio-bucket"]["command"]
    bucket = command[-1].split("/", 1)[1]
    guide = (REPO / "docs" / "deploy.md").read_text()
    assert f"STEPSCOPE_STORE=s3://{bucket}/runs" in guide
    assert "FSSPEC_S3_ENDPOINT_URL=http://minio:9000" in guide
    # Workers and API wait for the bucket only when the s3 profile is on.
    for name in STEPSCOPE_SERVICES:
        dependency = compose["services"][name]["depends_on"]["minio-bucket"]
        assert dependency == {"condition": "service_completed_successfully", "required": False}
    # The S3 settings pass through from the environment (no value in the file).
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "FSSPEC_S3_ENDPOINT_URL", "STEPSCOPE_TOKEN"):
        assert environment(compose["services"]["api"])[variable] is None


def test_deploy_guide_names_every_variable_of_the_compose_file(raw):
    guide = (REPO / "docs" / "deploy.md").read_text()
    text = COMPOSE.read_text()
    variables = {chunk.split("}", 1)[0].split(":-", 1)[0] for chunk in text.split("${")[1:]}
    for svc in raw["services"].values():
        env = svc.get("environment") or {}
        variables |= {name for name, value in env.items() if value is None}  # passed through
    missing = sorted(v for v in variables if f"`{v}`" not in guide and f"{v}=" not in guide)
    assert not missing, f"docs/deploy.md does not mention {missing}"
