"""Invalid specs are refused, and the error names the field."""

from __future__ import annotations

import pytest

from stepscope.models import PRESETS
from stepscope.spec import MAX_ENSEMBLE, SpecError, check_against_model, parse_spec


def _variant(iv: dict) -> dict:
    return {"steps": 10, "variants": [{"name": "v", "interventions": [iv]}]}


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"steps": 0}, "steps", "greater than or equal to 1"),
        ({"steps": 10_000}, "steps", "less than or equal"),
        ({"height": 60}, "height", "multiple of 16"),
        ({"width": 4096}, "width", "less than or equal"),
        ({"frames": 16}, "frames", "4k+1"),
        ({"seed": -1}, "seed", "greater than or equal to 0"),
        ({"guidance": -2}, "guidance", "greater than or equal"),
        ({"prompt": 5}, "prompt", "string"),
        ({"bogus": 1}, "bogus", "Extra inputs"),
        ({"probes": {"every": 0}}, "probes.every", "greater than or equal to 1"),
        ({"probes": {"layers": []}}, "probes.layers", "at least one layer"),
        ({"probes": {"passes": "sideways"}}, "probes.passes", "cond"),
        ({"steps": 5, "probes": {"decode_steps": [7]}}, "probes.decode_steps", "beyond the run's 5 steps"),
        (
            _variant({"kind": "noise_at_step", "steps": [10], "strength": 1}),
            "variants.0.interventions.0.steps",
            "beyond",
        ),
        (
            _variant({"kind": "noise_at_step", "steps": [2], "strength": -1}),
            "variants.0.interventions.0.strength",
            "greater than or equal to 0",
        ),
        (
            _variant({"kind": "noise_at_frame", "frames": [5], "strength": 1}),
            "variants.0.interventions.0.frames",
            "out of range",
        ),
        (
            _variant({"kind": "seed_ensemble", "seeds": list(range(MAX_ENSEMBLE + 1))}),
            "variants.0.interventions.0.seeds",
            f"at most {MAX_ENSEMBLE}",
        ),
        (_variant({"kind": "seed_ensemble", "seeds": [1]}), "variants.0.interventions.0.seeds", "at least 2"),
        (_variant({"kind": "teleport"}), "variants.0.interventions.0", "teleport"),
        (_variant({"kind": "layer_swap", "layers": [1]}), "variants.0.interventions.0.source", "required"),
        (
            {"variants": [{"name": "baseline", "interventions": [{"kind": "guidance", "scale": 1}]}]},
            "variants.0.name",
            "baseline",
        ),
        (
            {"variants": [{"name": "a/b", "interventions": [{"kind": "guidance", "scale": 1}]}]},
            "variants.0.name",
            "letters",
        ),
        ({"variants": [{"name": "x", "interventions": []}]}, "variants.0.interventions", "at least 1"),
        (
            {"variants": [{"name": "x", "interventions": [{"kind": "guidance", "scale": 1}]}] * 2},
            "variants.1.name",
            "duplicate",
        ),
    ],
)
def test_invalid_specs_name_the_field(data, field, words):
    with pytest.raises(SpecError) as info:
        parse_spec(data)
    assert info.value.field == field
    assert words.lower() in info.value.message.lower()


def test_checks_against_the_model_name_the_field():
    tiny = PRESETS["tiny"].info
    i2v = PRESETS["tiny-i2v"].info
    cases = [
        (parse_spec({"probes": {"layers": [8]}}), tiny, "probes.layers", "beyond the model's 8 layers"),
        (
            parse_spec(_variant({"kind": "layer_swap", "layers": [12], "source": {}})),
            tiny,
            "variants.0.interventions.0.layers",
            "beyond",
        ),
        (parse_spec({"guidance_2": 3.0}), tiny, "guidance_2", "two-expert"),
        (parse_spec({}), i2v, "image", "needs a first-frame image"),
        (parse_spec({"image": "data:image/png;base64,AAAA"}), tiny, "image", "text-to-video"),
        (parse_spec({"height": 48}), PRESETS["wan2.2-ti2v-5b"].info, "height", "multiple of 32"),
    ]
    for spec, info, field, words in cases:
        with pytest.raises(SpecError) as err:
            check_against_model(spec, info)
        assert err.value.field == field and words in err.value.message


def test_index_lists_are_sorted_and_deduplicated():
    spec = parse_spec(_variant({"kind": "noise_at_step", "steps": [5, 1, 5], "strength": 0.5}))
    assert spec.variants[0].interventions[0].steps == [1, 5]


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"steps": True}, "steps", "valid integer"),
        ({"seed": "3"}, "seed", "valid integer"),
        ({"guidance": True}, "guidance", "valid number"),
        ({"probes": {"final_decode": 0}}, "probes.final_decode", "valid boolean"),
        (
            {"variants": [{"name": "a", "interventions": [{"kind": "guidance", "scale": "2"}]}]},
            "variants.0.interventions.0.scale",
            "valid number",
        ),
    ],
)
def test_numbers_and_booleans_are_strict(data, field, words):
    with pytest.raises(SpecError) as exc:
        parse_spec(data)
    assert exc.value.field == field and words in exc.value.message


def test_an_integer_is_still_a_valid_float():
    assert parse_spec({"guidance": 4}).guidance == 4.0


def test_each_axis_stays_within_the_models_rotary_table():
    tiny = PRESETS["tiny"].info  # rope_max_seq_len 32: 32 latent frames, 32·2·8 = 512 pixels
    check_against_model(parse_spec({"height": 512, "width": 512, "frames": 125}), tiny)
    for data, field, largest in [
        ({"frames": 129}, "frames", 125),
        ({"height": 528}, "height", 512),
        ({"width": 1280, "height": 64}, "width", 512),
    ]:
        with pytest.raises(SpecError) as exc:
            check_against_model(parse_spec(data), tiny)
        assert exc.value.field == field and f"at most {largest}" in exc.value.message
    # Real Wan models cover 1024 positions per axis: the spec's own maxima fit.
    real = PRESETS["wan2.1-t2v-1.3b"].info
    check_against_model(parse_spec({"height": 1280, "width": 1280, "frames": 241}), real)
