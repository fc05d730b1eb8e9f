"""An image-to-video run with variants: a trajectory's background decode never overlaps the next one's VAE encode."""

from __future__ import annotations

import base64
import threading
import time

import numpy as np
from PIL import Image

import stepscope
from stepscope.images import encode_png
from stepscope.probe import EncoderCache, run_experiment
from stepscope.spec import check_spec


def test_the_first_frame_encode_waits_for_a_running_decode(tiny_i2v, run_dir):
    vae = tiny_i2v.pipe.vae
    calls: list[tuple[str, float, float]] = []
    lock = threading.Lock()
    real_encode, real_decode = vae.encode, vae.decode

    def timed(name, method, pause):
        def call(*args, **kwargs):
            start = time.perf_counter()
            try:
                # A slow decode (a 14B run's VAE takes seconds) keeps the background thread busy while the
                # next trajectory starts: that is where the two calls used to meet inside one module.
                time.sleep(pause)
                return method(*args, **kwargs)
            finally:
                with lock:
                    calls.append((name, start, time.perf_counter()))

        return call

    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    image = "data:image/png;base64," + base64.b64encode(encode_png(Image.fromarray(pixels))).decode()
    spec = check_spec(
        {
            "model": "tiny-i2v",
            "prompt": "a maze",
            "image": image,
            "steps": 3,
            "height": 32,
            "width": 32,
            "frames": 5,
            "probes": {"layers": "none"},
            "variants": [
                {"name": f"noise{i}", "interventions": [{"kind": "noise_at_step", "steps": [1], "strength": 0.5}]}
                for i in range(2)
            ],
        },
        tiny_i2v.info,
    )
    vae.encode, vae.decode = timed("encode", real_encode, 0.0), timed("decode", real_decode, 0.5)
    try:
        # No encoder cache: every trajectory encodes its first frame, as one whose image is new to the cache does.
        run_experiment(tiny_i2v, spec, run_dir, encoder_cache=EncoderCache(tiny_i2v.pipe, capacity=0))
    finally:
        del vae.encode, vae.decode
    encodes = [(s, e) for name, s, e in calls if name == "encode"]
    decodes = [(s, e) for name, s, e in calls if name == "decode"]
    assert len(encodes) >= 3 and len(decodes) >= 3  # a first-frame encode and a final decode per trajectory
    for es, ee in encodes:
        for ds, de in decodes:
            assert ee <= ds or de <= es, "a VAE encode ran while a decode was in progress"
    run = stepscope.load_run(run_dir.path)
    for name in ("baseline", "noise0", "noise1"):
        assert run[name].video.shape == (5, 32, 32, 3)
