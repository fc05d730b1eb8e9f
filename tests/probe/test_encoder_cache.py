"""Each distinct prompt and first frame is encoded once per experiment (and per bench), and the runs are unchanged.

The encoders' real work is counted beside the cache, not by it: a pre-hook on the text encoder's transformer stack
(`text_encoder.encoder`, reached only when the text encoder computes) and on the VAE's `quant_conv` (called once at
the end of every real `AutoencoderKLWan._encode`).
"""

from __future__ import annotations

import base64

import numpy as np
import pytest
import torch
from PIL import Image

import stepscope
from stepscope.bench import run_bench
from stepscope.images import encode_png
from stepscope.preview import linear_preview_for
from stepscope.probe import EncoderCache, Experiment, run_experiment, run_trajectory
from stepscope.probe.encoder_cache import TEXT_ENCODER, VAE_ENCODE
from stepscope.spec import check_spec
from stepscope.store import RunDir

from .helpers import inputs

PROMPT, NEGATIVE, SOURCE_PROMPT = "a red ball rolls through a maze", "blurry", "a green square stands still"


def _image(seed: int) -> str:
    pixels = np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    return "data:image/png;base64," + base64.b64encode(encode_png(Image.fromarray(pixels))).decode()


def _spec(model_name: str, i2v: bool) -> dict:
    """Baseline, a guidance change that turns CFG off (no negative prompt encoded), a seed ensemble (a batch of 2),
    a layer swap whose run B has another prompt (and image), and a sweep whose members resume from the baseline."""
    source = {"prompt": SOURCE_PROMPT, **({"image": _image(1)} if i2v else {})}
    spec = {
        "model": model_name,
        "prompt": PROMPT,
        "negative_prompt": NEGATIVE,
        "steps": 4,
        "height": 32,
        "width": 32,
        "frames": 5,
        "guidance": 5.0,
        "guidance_2": 3.0,
        "probes": {"layers": [0, 1]},
        "variants": [
            {"name": "no_cfg", "interventions": [{"kind": "guidance", "scale": 1.0, "scale_2": 4.0}]},
            {"name": "ensemble", "interventions": [{"kind": "seed_ensemble", "seeds": [0, 1], "layers": [1]}]},
            {"name": "swap", "interventions": [{"kind": "layer_swap", "layers": [1], "source": source}]},
        ],
        "sweeps": [
            {
                "name": "noise",
                "intervention": {"kind": "noise_at_step", "steps": [2], "strength": 0.5},
                "over": "strength",
                "values": [0.5, 1.0],
            }
        ],
    }
    if i2v:
        spec["image"] = _image(0)
    return spec


class EncoderWork:
    """Counts the encoders' real forwards, and the distinct token sequences the text encoder ran on."""

    def __init__(self, pipe):
        self.texts: list[bytes] = []
        self.vae_encodes = 0

        def text(module, args, kwargs):
            ids = args[0] if args else kwargs["input_ids"]
            self.texts.extend(row.numpy().tobytes() for row in ids.cpu())

        def vae(module, args):
            self.vae_encodes += 1

        self.handles = [
            pipe.text_encoder.encoder.register_forward_pre_hook(text, with_kwargs=True),
            pipe.vae.quant_conv.register_forward_pre_hook(vae),
        ]

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


def _run(model, spec, path, capacity: int | None) -> tuple[stepscope.Run, EncoderWork, EncoderCache]:
    """Run `spec` with an encoder cache of `capacity` entries (None: the experiment's default cache)."""
    cache_dir = str(path.parent / "preview-cache")
    linear_preview_for(model.pipe.vae, cache_dir)  # fitted before counting: the fit encodes videos of its own
    given = None if capacity is None else EncoderCache(model.pipe, capacity=capacity)
    experiment = Experiment(
        model, check_spec(spec, model.info), RunDir.at(str(path)), cache_dir=cache_dir, encoder_cache=given
    )
    work = EncoderWork(model.pipe)
    try:
        experiment()
    finally:
        work.close()
    return stepscope.load_run(str(path)), work, experiment.encoder_cache


@pytest.fixture(scope="module", params=["tiny_moe", "tiny_i2v"])
def cached_and_uncached(request, tmp_path_factory):
    model = request.getfixturevalue(request.param)
    spec = _spec(model.name, i2v=model.info.task == "i2v")
    tmp = tmp_path_factory.mktemp(request.param)
    uncached = _run(model, spec, tmp / "uncached", capacity=0)
    cached = _run(model, spec, tmp / "cached", capacity=None)
    return model, spec, uncached, cached


def test_an_experiment_encodes_each_distinct_prompt_and_image_once(cached_and_uncached):
    model, spec, (plain, plain_work, _), (run, work, cache) = cached_and_uncached
    entries = run.manifest["trajectories"]
    assert set(entries) == {"baseline", "no_cfg", "ensemble", "swap", "swap.source0", "noise.000", "noise.001"}
    # Without the cache the pipeline encodes per trajectory: the prompt, and the negative one where CFG is on.
    asked = sum(2 if entry["guidance"] > 1 else 1 for entry in entries.values())
    assert len(plain_work.texts) == asked == 13
    assert plain_work.vae_encodes == (len(entries) if spec.get("image") else 0)
    # With it: the prompt, the negative prompt and run B's prompt once each; the image and run B's once each.
    assert len(work.texts) == len(set(work.texts)) == 3
    assert set(work.texts) == set(plain_work.texts)
    assert work.vae_encodes == (2 if spec.get("image") else 0)
    assert cache.counts[TEXT_ENCODER].computed == 3 and cache.counts[TEXT_ENCODER].reused == asked - 3
    assert cache.counts[VAE_ENCODE].computed == work.vae_encodes
    assert cache.counts[VAE_ENCODE].computed + cache.counts[VAE_ENCODE].reused == plain_work.vae_encodes


def test_a_cached_experiment_stores_what_an_uncached_one_stores(cached_and_uncached):
    # The same final latents and x̂₀ of every step, every trajectory: the reused embeddings and image latents are those
    # the first trajectory computed, and recomputing them from the same inputs gives the same values (up to the
    # encoders' own run-to-run determinism, which torch does not promise; hence a tolerance).
    model, spec, (plain, *_), (run, *_) = cached_and_uncached
    assert run.status == plain.status == "finished"
    for name in plain.manifest["trajectories"]:
        if plain[name].kind == "swap_source":
            continue
        assert run[name].steps == plain[name].steps, name
        torch.testing.assert_close(run[name].final_latents, plain[name].final_latents, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(run[name].x0, plain[name].x0, rtol=1e-6, atol=1e-6)
    # The runs differ from each other where they should: this is not one trajectory compared with itself.
    assert np.abs(run["no_cfg"].final_latents - run["baseline"].final_latents).max() > 1e-3
    assert np.abs(run["swap"].final_latents - run["baseline"].final_latents).max() > 1e-3
    # Both experts ran in each (the boundary falls inside 4 steps), with the guidance each asked for.
    for name in ("baseline", "no_cfg"):
        assert set(run[name].experts) == {"transformer", "transformer_2"}
        assert run[name].entry["guidance"] == plain[name].entry["guidance"]
        assert run[name].entry["guidance_2"] == plain[name].entry["guidance_2"]


def test_a_bench_encodes_the_family_prompt_once_and_each_first_frame_once(tiny_i2v, tmp_path):
    cache_dir = str(tmp_path / "preview-cache")
    linear_preview_for(tiny_i2v.pipe.vae, cache_dir)
    work = EncoderWork(tiny_i2v.pipe)
    variants = [{"name": "noise1", "interventions": [{"kind": "noise_at_step", "steps": [1], "strength": 1.0}]}]
    try:
        report = run_bench(
            tiny_i2v, ["maze"], 3, str(tmp_path / "bench"), steps=2, variants=variants, cache_dir=cache_dir
        )
    finally:
        work.close()
    assert report["instances_done"] == 3
    # Uncached: 3 instances × 2 trajectories × (prompt + negative prompt) texts and 6 first-frame encodes.
    assert len(work.texts) == len(set(work.texts)) == 2  # the maze prompt and the empty negative prompt
    assert work.vae_encodes == 3  # each instance's own first frame


def test_guidance_off_encodes_no_negative_prompt(tiny_moe):
    # The pipeline decides whether the negative prompt is encoded, as without the cache: at guidance 1 it is not.
    cache = EncoderCache(tiny_moe.pipe)
    work = EncoderWork(tiny_moe.pipe)
    try:
        with cache.serving():
            run_trajectory(tiny_moe, inputs(steps=2, guidance=1.0, guidance_2=4.0))
            assert len(work.texts) == 1
            run_trajectory(tiny_moe, inputs(steps=2, guidance=5.0, guidance_2=4.0))
            run_trajectory(tiny_moe, inputs(steps=2, guidance=3.0, guidance_2=1.0))
    finally:
        work.close()
    assert len(work.texts) == 2  # the negative prompt once, for the first run with CFG
    assert cache.counts[TEXT_ENCODER].computed == 2 and cache.counts[TEXT_ENCODER].reused == 3


def test_serving_restores_the_encoders_and_an_experiment_refuses_another_pipelines_cache(tiny, tiny_moe, run_dir):
    pipe = tiny.pipe
    encode_before = pipe.vae.encode
    with EncoderCache(pipe).serving():
        assert "forward" in vars(pipe.text_encoder) and "encode" in vars(pipe.vae)
    assert "forward" not in vars(pipe.text_encoder) and "encode" not in vars(pipe.vae)
    assert pipe.vae.encode == encode_before
    with pytest.raises(ValueError, match="encoder_cache"):
        run_experiment(
            tiny, check_spec({"prompt": "x", "steps": 2}, tiny.info), run_dir, encoder_cache=EncoderCache(tiny_moe.pipe)
        )


class Doubler(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x, scale=1.0, tag=None):
        self.calls += 1
        return {"out": 2 * x * scale}


class Holder:
    def __init__(self):
        self.text_encoder = Doubler()
        self.vae = None


@torch.no_grad()
def test_the_key_is_the_exact_input_and_the_oldest_entry_goes_past_capacity():
    holder = Holder()
    cache = EncoderCache(holder, capacity=2)
    module = holder.text_encoder
    a = torch.arange(6, dtype=torch.float32)
    with cache.serving():
        first = module(a)
        first["out"].add_(100)  # the caller's copy: the stored output is untouched
        assert torch.equal(module(a.clone())["out"], 2 * a) and module.calls == 1
        module(a.to(torch.float64))  # same values, another dtype: another input
        module(a.view(2, 3))  # another shape
        assert module.calls == 3
        module(a)  # evicted by the two above (capacity 2)
        module(a, scale=2.0)  # another keyword value
        module(a, tag=object())  # an argument without an exact key: never stored
        module(a, tag=object())
        assert module.calls == 7 and len(cache) == 2
    assert cache.counts[TEXT_ENCODER].computed == 7 and cache.counts[TEXT_ENCODER].reused == 1


def test_capacity_zero_and_gradients_store_nothing():
    holder = Holder()
    module = holder.text_encoder
    a = torch.ones(3)
    with torch.no_grad(), EncoderCache(holder, capacity=0).serving():
        module(a)
        module(a)
    assert module.calls == 2
    with EncoderCache(holder).serving() as cache:  # gradients on: an output in a graph is never reused
        module(a)
        module(a)
    assert module.calls == 4 and len(cache) == 0
    with pytest.raises(ValueError, match="capacity"):
        EncoderCache(holder, capacity=-1)


def test_a_lone_trajectory_keys_nothing(tiny_i2v, tmp_path):
    # One trajectory reuses no encoding, so its experiment keeps no cache: a real first frame's key (SHA-256 of the
    # whole conditioning video) would be pure overhead there.
    spec = {"model": tiny_i2v.name, "prompt": "a lone run", "steps": 2, "image": _image(0)}
    _, work, cache = _run(tiny_i2v, spec, tmp_path / "lone", capacity=None)
    assert cache.capacity == 0 and len(cache) == 0
    assert cache.counts[VAE_ENCODE].computed == work.vae_encodes == 1 and cache.counts[VAE_ENCODE].reused == 0
