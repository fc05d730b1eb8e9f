"""models/presets: what the API checks specs against must be what the loaded pipeline is."""

from __future__ import annotations

import pytest

from stepscope.models.loading import info_from_pipeline
from stepscope.models.presets import PRESETS, ModelInfo
from stepscope.models.tiny import build_tiny_pipeline


@pytest.mark.parametrize("name", ["tiny", "tiny-i2v"])
def test_a_tiny_presets_static_info_is_its_built_pipelines(name):
    preset = PRESETS[name]
    assert info_from_pipeline(build_tiny_pipeline(preset.tiny)) == preset.info
    assert preset.info.rope_max_seq_len == 32


def test_model_info_round_trips_and_older_workers_get_the_default_rotary_table():
    info = PRESETS["wan2.2-i2v-a14b"].info
    assert ModelInfo.from_json(info.to_json()) == info
    older = {k: v for k, v in info.to_json().items() if k != "rope_max_seq_len"}  # a worker from before the field
    assert ModelInfo.from_json(older).rope_max_seq_len == 1024
