"""Invalid specs are refused, and the error names the field."""

from __future__ import annotations

import pytest

from stepscope.models import PRESETS
from stepscope.spec import (
    MAX_ENSEMBLE,
    MAX_SWEEP_MEMBERS,
    MAX_VARIANTS,
    CheckedSpec,
    SpecError,
    check_against_model,
    check_spec,
    latent_frame_of,
    parse_spec,
)


def _variant(iv: dict) -> dict:
    return {"steps": 10, "variants": [{"name": "v", "interventions": [iv]}]}


def _sweep(over: str, values: list, iv: dict | None = None) -> dict:
    iv = iv or {"kind": "noise_at_step", "steps": [0], "strength": 1}
    return {"steps": 10, "sweeps": [{"name": "s", "over": over, "values": values, "intervention": iv}]}


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
        (
            _variant({"kind": "noise_at_frame", "frames": [17], "frame_units": "video", "strength": 1}),
            "variants.0.interventions.0.frames",
            "video frame 17 is out of range",
        ),
        (
            _variant({"kind": "noise_at_step", "steps": [1], "strength": 1, "units": "std"}),
            "variants.0.interventions.0.units",
            "sigma",
        ),
        (
            _variant({"kind": "seed_ensemble", "seeds": [1, 2], "mode": "mean"}),
            "variants.0.interventions.0.mode",
            "updates",
        ),
        (_sweep("layers", [1]), "sweeps.0.over", "noise_at_step has no layers"),
        (_sweep("steps", [3, 10]), "sweeps.0.values.1", "beyond the run's 10 steps"),
        (_sweep("steps", [3, 3]), "sweeps.0.values", "each value once"),
        (_sweep("steps", [2.5]), "sweeps.0.values.0", "whole numbers"),
        (_sweep("strength", [101.0]), "sweeps.0.values.0", "strength must be in"),
        (_sweep("steps", list(range(MAX_SWEEP_MEMBERS + 1))), "sweeps.0.values", f"at most {MAX_SWEEP_MEMBERS}"),
        (
            _sweep("frames", [9], {"kind": "noise_at_frame", "frames": [0], "strength": 1}),
            "sweeps.0.values.0",
            "latent frame 9 is out of range",
        ),
        (
            {**_sweep("steps", [1]), "variants": [{"name": "s", "interventions": [{"kind": "guidance", "scale": 1}]}]},
            "sweeps.0.name",
            "already the name",
        ),
        (
            _sweep("steps", [1], {"kind": "noise_at_step", "steps": [], "strength": 1}),
            "sweeps.0.intervention.steps",
            "at least 1",
        ),
        # An optional list means "all" when omitted; an empty one would act nowhere (or, as a sweep's base, fail
        # in the worker), so it is refused where it is written.
        (
            _variant({"kind": "noise_at_frame", "frames": [0], "steps": [], "strength": 1}),
            "variants.0.interventions.0.steps",
            "at least 1",
        ),
        (
            _sweep("frames", [1], {"kind": "noise_at_frame", "frames": [0], "steps": [], "strength": 1}),
            "sweeps.0.intervention.steps",
            "at least 1",
        ),
        (
            _variant({"kind": "layer_swap", "layers": [1], "steps": []}),
            "variants.0.interventions.0.steps",
            "at least 1",
        ),
        (
            _variant({"kind": "layer_swap", "layers": [1], "frames": []}),
            "variants.0.interventions.0.frames",
            "at least 1",
        ),
        (
            _variant({"kind": "seed_ensemble", "seeds": [1, 2], "layers": []}),
            "variants.0.interventions.0.layers",
            "at least 1",
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


def test_check_spec_parses_and_checks_once_and_a_checked_spec_cannot_be_made_unchecked():
    tiny = PRESETS["tiny"].info
    checked = check_spec({"steps": 3}, tiny)
    assert checked.spec == parse_spec({"steps": 3}) and checked.info == tiny
    assert check_spec(checked.spec, tiny) == checked  # a spec parsed before the model was known
    for make in (lambda: check_spec({"steps": 0}, tiny), lambda: check_spec({"probes": {"layers": [8]}}, tiny)):
        with pytest.raises(SpecError) as err:
            make()
        assert err.value.field in ("steps", "probes.layers")
    # The type is the guarantee: made by hand, it still runs the model's checks.
    with pytest.raises(SpecError) as err:
        CheckedSpec(parse_spec({"probes": {"layers": [8]}}), tiny)
    assert err.value.field == "probes.layers"
    with pytest.raises(TypeError):
        CheckedSpec({"steps": 3}, tiny)


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


def test_video_frames_map_to_the_latent_frame_holding_them():
    # Wan's VAE: video frame 0 alone in latent frame 0, then frames 4k-3..4k in latent frame k.
    assert [latent_frame_of(v) for v in range(10)] == [0, 1, 1, 1, 1, 2, 2, 2, 2, 3]
    iv = parse_spec(
        _variant({"kind": "noise_at_frame", "frames": [0, 5, 8, 16], "frame_units": "video", "strength": 1})
    )
    assert iv.variants[0].interventions[0].latent_frame_list == [0, 2, 4]
    swap = parse_spec(
        _variant({"kind": "layer_swap", "layers": [1], "frames": [3], "frame_units": "video", "source": {}})
    )
    assert swap.variants[0].interventions[0].latent_frame_list == [1]
    latent = parse_spec(_variant({"kind": "noise_at_frame", "frames": [3], "strength": 1}))
    assert latent.variants[0].interventions[0].latent_frame_list == [3]


def test_noise_units_default_to_what_relative_says():
    def units(**kw):
        return parse_spec(_variant({"kind": "noise_at_step", "steps": [1], "strength": 1, **kw})).variants[0]

    assert units().interventions[0].strength_units == "latent_std"
    assert units(relative=False).interventions[0].strength_units == "absolute"
    assert units(units="sigma").interventions[0].strength_units == "sigma"


def test_the_seed_ensemble_defaults_to_the_updates_mode():
    spec = parse_spec(_variant({"kind": "seed_ensemble", "seeds": [0, 1, 2]}))
    assert spec.variants[0].interventions[0].mode == "updates"


def test_a_sweep_has_one_member_per_value_beyond_the_variant_cap():
    values = list(range(50))
    spec = parse_spec({**_sweep("steps", values), "steps": 50})
    members = spec.sweeps[0].members()
    assert len(members) == 50 > MAX_VARIANTS
    assert [m.steps for m in members] == [[v] for v in values]
    assert all(m.strength == 1.0 and m.kind == "noise_at_step" for m in members)
    strengths = parse_spec(_sweep("strength", [0.25, 2])).sweeps[0].members()
    assert [m.strength for m in strengths] == [0.25, 2.0] and strengths[0].steps == [0]
    layers = parse_spec(
        _sweep("layers", [3, 1], {"kind": "layer_swap", "layers": [0], "steps": [2], "source": {"seed": 1}})
    ).sweeps[0]
    assert [(m.layers, m.steps, m.source.seed) for m in layers.members()] == [([3], [2], 1), ([1], [2], 1)]
