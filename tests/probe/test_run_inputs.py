"""Input images: one name per spec field, shared by the API (which stores uploads) and the engine."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from stepscope.probe.experiment import run_experiment
from stepscope.run import load_run
from stepscope.run_format import input_image_path, run_ref
from stepscope.spec import check_spec
from stepscope.store import RunDir

SOURCE_FIELD = "variants.0.interventions.0.source.image"


def png(colour) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), colour).save(buf, "PNG")
    return buf.getvalue()


def test_images_the_api_stored_are_used_in_place_not_stored_again(tiny_i2v, tmp_path):
    run = RunDir.at(str(tmp_path / "run"))
    first, source = png((220, 40, 40)), png((30, 60, 230))
    # What POST /api/jobs does with the two images before the worker runs the spec.
    run.write_bytes(input_image_path("image"), first)
    run.write_bytes(input_image_path(SOURCE_FIELD), source)
    spec = check_spec(
        {
            "model": "tiny-i2v",
            "image": run_ref(input_image_path("image")),
            "steps": 2,
            "height": 32,
            "width": 32,
            "frames": 5,
            "probes": {"layers": [0], "final_decode": False},
            "variants": [
                {
                    "name": "swap",
                    "interventions": [
                        {
                            "kind": "layer_swap",
                            "layers": [1],
                            "source": {"image": run_ref(input_image_path(SOURCE_FIELD))},
                        }
                    ],
                }
            ],
        },
        tiny_i2v.info,
    )
    manifest = run_experiment(tiny_i2v, spec, run, cache_dir=str(tmp_path / "cache"))
    assert manifest["status"] == "finished"
    assert sorted(run.glob("inputs/*")) == sorted([input_image_path("image"), input_image_path(SOURCE_FIELD)])
    assert manifest["inputs"] == {"image": input_image_path("image"), SOURCE_FIELD: input_image_path(SOURCE_FIELD)}
    assert run.read_bytes(input_image_path(SOURCE_FIELD)) == source
    # Run B was conditioned on its own image: its first x̂₀ differs from the baseline's.
    loaded = load_run(run.path)
    assert not np.allclose(loaded["swap.source0"].x0[0], loaded.baseline.x0[0])


def test_a_data_url_image_is_stored_under_its_fields_name(tiny_i2v, tmp_path):
    run = RunDir.at(str(tmp_path / "run"))
    data_url = "data:image/png;base64," + base64.b64encode(png((10, 200, 10))).decode()
    spec = check_spec(
        {
            "model": "tiny-i2v",
            "image": data_url,
            "steps": 1,
            "height": 32,
            "width": 32,
            "frames": 5,
            "probes": {"layers": "none", "final_decode": False},
        },
        tiny_i2v.info,
    )
    manifest = run_experiment(tiny_i2v, spec, run, cache_dir=str(tmp_path / "cache"))
    assert run.glob("inputs/*") == [input_image_path("image")]
    assert manifest["inputs"] == {"image": input_image_path("image")}
    stored = np.asarray(Image.open(io.BytesIO(run.read_bytes(input_image_path("image")))))
    assert stored.shape == (32, 32, 3) and tuple(stored[0, 0]) == (10, 200, 10)
