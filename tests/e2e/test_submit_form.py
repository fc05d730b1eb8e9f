"""The submit form's own spec inputs carry spec.py's bounds, defaults and choices, as served in its JSON Schema."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.helpers import screenshot
from tests.servers import running_service
from tests.spec_fields import spec_field

pytestmark = pytest.mark.browser

# The form's input (by id) for each field of the spec it fills.
INPUTS = {
    "task-seed": "task.seed",
    "seed": "seed",
    "steps": "steps",
    "guidance": "guidance",
    "guidance-2": "guidance_2",
    "height": "height",
    "width": "width",
    "frames": "frames",
    "probe-layers": "probes.layers",
    "probe-every": "probes.every",
    "probe-passes": "probes.passes",
    "probe-decode-steps": "probes.decode_steps",
    "probe-final-decode": "probes.final_decode",
}

READ_INPUTS = """(ids) => Object.fromEntries(ids.map((id) => {
  const el = document.getElementById(id);
  return [id, {
    type: el.type, min: el.getAttribute("min"), max: el.getAttribute("max"), step: el.getAttribute("step"),
    initial: el.getAttribute("value"), value: el.value, checked: el.checked, defaultChecked: el.defaultChecked,
    options: el.tagName === "SELECT" ? [...el.options].map((o) => o.value) : null,
  }];
}))"""


@pytest.fixture(scope="module")
def form_service(tmp_path_factory):
    """The API and Redis, no worker: the form needs only the models list and the spec's schema."""
    root = tmp_path_factory.mktemp("form")
    with running_service(root, root / "runs", []) as service:
        yield service


def number(text: str | None) -> float | None:
    return None if text in (None, "") else float(text)


def test_the_spec_inputs_take_bounds_defaults_and_choices_from_the_schema(page, form_service):
    page.goto(f"{form_service.url}/#/new")
    page.wait_for_selector("#model option[value='tiny']", state="attached")
    assert page.locator("#form-error").is_hidden(), page.inner_text("#form-error")
    models = httpx.get(f"{form_service.url}/api/models", timeout=30).json()["models"]
    model = next(m for m in models if m["name"] == page.input_value("#model"))
    shown = page.evaluate(READ_INPUTS, list(INPUTS))
    for input_id, path in INPUTS.items():
        want, got = spec_field(path), shown[input_id]
        default = want.get("default")
        if got["type"] == "checkbox":
            assert got["defaultChecked"] is got["checked"] is default, path
        elif got["options"] is not None:
            assert (got["options"], got["value"]) == (want["options"], default), path
        elif got["type"] == "number":
            assert (number(got["min"]), number(got["max"])) == (want["min"], want["max"]), path
            # The spec's default is the input's value attribute; the model may suggest another value to start from.
            assert number(got["initial"]) == default, path
            assert number(got["value"]) == model["defaults"].get(path, default), path
        else:
            assert got["initial"] == ("" if default is None else str(default)), path
            assert got["value"] == got["initial"], path
    # The largest seed the form can send exactly: the spec allows more (2^63 - 1), JavaScript's numbers do not.
    assert shown["seed"]["max"] == str(2**53 - 1)
    screenshot(page, "form_bounds_from_schema")
