"""GET /api/tasks and /api/tasks/{family} against a real API process (the service of conftest.py): the instance it
serves is exactly stepscope.tasks.generate's, and bad parameters get 404/422 naming the field."""

from __future__ import annotations

import base64
import io

import httpx
import numpy as np
import pytest
from PIL import Image

from stepscope.tasks import family_names, generate, get_family


@pytest.fixture
def api(service):
    """The API of tests/service's running service: these routes need no worker, only the API process."""
    return service


def decode_data_url(url: str) -> np.ndarray:
    head, _, payload = url.partition(",")
    assert head == "data:image/png;base64"
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(payload))).convert("RGB"))


def test_the_families_are_listed_with_difficulties_and_descriptions(api):
    r = httpx.get(f"{api.url}/api/tasks", timeout=30)
    assert r.status_code == 200, r.text
    families = r.json()["families"]
    assert [f["name"] for f in families] == family_names() == ["maze", "pattern", "trajectory"]
    for f in families:
        assert f["difficulties"] == [1, 2, 3]
        assert f["description"] == get_family(f["name"]).description


@pytest.mark.parametrize(("family", "difficulty", "seed"), [("maze", 1, 0), ("trajectory", 3, 12345)])
def test_an_instance_is_what_generate_gives_with_its_first_frame(api, family, difficulty, seed):
    r = httpx.get(f"{api.url}/api/tasks/{family}", params={"difficulty": difficulty, "seed": seed}, timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    expected = generate(family, difficulty=difficulty, seed=seed)
    assert (body["family"], body["difficulty"], body["seed"]) == (family, difficulty, seed)
    assert body["prompt"] == expected.prompt
    assert (body["height"], body["width"], body["frames"]) == (64, 64, 17)
    assert body["instance"] == expected.to_json()
    image = decode_data_url(body["image"])
    assert image.shape == (64, 64, 3)
    np.testing.assert_array_equal(image, expected.first_frame)  # PNG is lossless: exact pixels


def test_defaults_are_difficulty_1_seed_0(api):
    body = httpx.get(f"{api.url}/api/tasks/pattern", timeout=30).json()
    assert (body["difficulty"], body["seed"]) == (1, 0)
    assert body["instance"] == generate("pattern", 1, 0).to_json()
    # another seed is another instance (the parameters reach the generator)
    other = httpx.get(f"{api.url}/api/tasks/pattern", params={"seed": 1}, timeout=30).json()
    assert other["instance"] != body["instance"]


def test_an_unknown_family_is_404_naming_family(api):
    r = httpx.get(f"{api.url}/api/tasks/labyrinth", timeout=30)
    assert r.status_code == 404
    body = r.json()
    assert body["field"] == "family"
    assert body["detail"].startswith("family: unknown task family 'labyrinth'")
    assert "maze" in body["detail"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"difficulty": 0}, "difficulty"),
        ({"difficulty": 4}, "difficulty"),
        ({"difficulty": "1.0"}, "difficulty"),
        ({"difficulty": "two"}, "difficulty"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**31}, "seed"),
        ({"seed": "1.5"}, "seed"),
        ({"seed": "+3"}, "seed"),
    ],
)
def test_bad_parameters_are_422_naming_the_field(api, params, field):
    r = httpx.get(f"{api.url}/api/tasks/maze", params=params, timeout=30)
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["field"] == field
    assert body["detail"].startswith(f"{field}: ")


def test_the_largest_seed_is_served(api):
    r = httpx.get(f"{api.url}/api/tasks/maze", params={"seed": 2**31 - 1}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["instance"] == generate("maze", 1, 2**31 - 1).to_json()
