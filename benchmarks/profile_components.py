"""Where the time of one instrumented Wan step goes, on a GPU (random weights, real sizes).

Times, each as a median of CUDA-event-timed repeats after warm-up: one transformer forward
with batch 1 (what the pipelines run twice per step for CFG) and batch 2 (cond and uncond in
one forward); the same with each block's forward compiled by torch.compile (hooks stay
outside the compiled graph); the per-token norm probe over every block; one full VAE decode
in float32, bfloat16 and float16; JPEG and MP4 encoding of the decoded frames.

    python benchmarks/profile_components.py --config 1.3b
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backend"))

from stepscope.models.presets import WAN_1_3B, WAN_14B, RandomConfig  # noqa: E402
from stepscope.models.random import TEXT_DIM, build_random_transformer  # noqa: E402
from stepscope.store import encode_image, encode_mp4  # noqa: E402
from stepscope.vae import decode_latents  # noqa: E402


def timed(fn, repeats: int = 5, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1000)
    return statistics.median(times)


def wall(fn, repeats: int = 3) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def report(name: str, seconds: float, **extra) -> None:
    print(json.dumps({"measure": name, "seconds": round(seconds, 4), **extra}), flush=True)


def profile_vae(dev: str, f_lat: int, h_lat: int, w_lat: int):
    """One full decode: float32 (with and without TF32 convolutions), bfloat16 and float16, each
    with and without cuDNN's autotuner; lower-precision frames compared with float32's."""
    from diffusers import AutoencoderKLWan

    vae = AutoencoderKLWan().to(dev).eval()
    latents = torch.randn(1, 16, f_lat, h_lat, w_lat, device=dev) * 0.5
    copies = {}
    for name, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        copies[name] = AutoencoderKLWan().to(dev, dtype).eval()
        copies[name].load_state_dict({k: v.to(dtype) for k, v in vae.state_dict().items()})
    report("cudnn_allow_tf32_default", float(torch.backends.cudnn.allow_tf32))
    for autotune in (False, True):
        torch.backends.cudnn.benchmark = autotune
        suffix = "_cudnn_benchmark" if autotune else ""
        reference = decode_latents(vae, latents)
        report(f"vae_decode_fp32{suffix}", timed(lambda: decode_latents(vae, latents), repeats=2, warmup=1))
        for name, copy in copies.items():
            frames = decode_latents(copy, latents)
            diff = np.abs(frames.astype(np.int16) - reference.astype(np.int16))
            report(
                f"vae_decode_{name}{suffix}",
                timed(lambda copy=copy: decode_latents(copy, latents), repeats=2, warmup=1),
                mean_abs_diff_vs_fp32=round(float(diff.mean()), 3),
                max_abs_diff_vs_fp32=int(diff.max()),
            )
    torch.backends.cudnn.benchmark = False
    allow = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    report("vae_decode_fp32_without_tf32_convs", timed(lambda: decode_latents(vae, latents), repeats=1, warmup=1))
    torch.backends.cudnn.allow_tf32 = allow
    return vae, latents


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="1.3b", choices=["1.3b", "14b"])
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=832)
    parser.add_argument("--compile", action="store_true", help="also time compiled block forwards")
    parser.add_argument("--vae-only", action="store_true", help="only the VAE decode variants")
    args = parser.parse_args()
    dev = "cuda"
    torch.manual_seed(0)
    f_lat, h_lat, w_lat = (args.frames - 1) // 4 + 1, args.height // 8, args.width // 8
    if args.vae_only:
        profile_vae(dev, f_lat, h_lat, w_lat)
        return 0
    model = build_random_transformer(RandomConfig(**(WAN_1_3B if args.config == "1.3b" else WAN_14B)), dev)
    x = torch.randn(2, 16, f_lat, h_lat, w_lat, device=dev, dtype=torch.bfloat16)
    text = torch.randn(2, 512, TEXT_DIM, device=dev, dtype=torch.bfloat16)
    t = torch.tensor([900, 900], device=dev)
    print(
        json.dumps(
            {
                "device": torch.cuda.get_device_name(),
                "torch": torch.__version__,
                "config": args.config,
                "tokens": f_lat * (h_lat // 2) * (w_lat // 2),
            }
        ),
        flush=True,
    )

    def forward(batch: int):
        with torch.no_grad():
            return model(
                hidden_states=x[:batch], timestep=t[:batch], encoder_hidden_states=text[:batch], return_dict=False
            )[0]

    one = timed(lambda: forward(1))
    report("forward_b1", one)
    report("cfg_step_two_b1", 2 * one)
    report("forward_b2", timed(lambda: forward(2)))

    norms = []
    handles = [
        b.register_forward_hook(lambda m, a, o: norms.append(torch.linalg.vector_norm(o, dim=-1, dtype=torch.float32)))
        for b in model.blocks
    ]
    report("forward_b1_with_norm_hooks", timed(lambda: (forward(1), norms.clear())))
    for h in handles:
        h.remove()

    if args.compile:
        started = time.perf_counter()
        for block in model.blocks:
            block.forward = torch.compile(block.forward, fullgraph=True, dynamic=False)
        forward(1)
        report("compile_seconds", time.perf_counter() - started)
        report("forward_b1_compiled", timed(lambda: forward(1)))
        forward(2)
        report("forward_b2_compiled", timed(lambda: forward(2)))
        handles = [
            b.register_forward_hook(
                lambda m, a, o: norms.append(torch.linalg.vector_norm(o, dim=-1, dtype=torch.float32))
            )
            for b in model.blocks
        ]
        report("forward_b1_compiled_with_norm_hooks", timed(lambda: (forward(1), norms.clear())))
        for h in handles:
            h.remove()
    model.to("cpu")  # free the GPU for the VAE measurements
    torch.cuda.empty_cache()

    vae, latents = profile_vae(dev, f_lat, h_lat, w_lat)

    frames = decode_latents(vae, latents)[0]
    report("jpeg_81_frames_serial", wall(lambda: [encode_image(f, "jpg") for f in frames], repeats=2))
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        report("jpeg_81_frames_8_threads", wall(lambda: list(pool.map(lambda f: encode_image(f, "jpg"), frames)), 2))
    report("mp4_encode", wall(lambda: encode_mp4(frames), repeats=2))
    report("png_preview_strip", wall(lambda: encode_image(np.zeros((60, 104 * 21, 3), np.uint8), "png"), 5))
    report("npy_x0_write", wall(lambda: np.save(io.BytesIO(), np.zeros((1, 16, f_lat, h_lat, w_lat), np.float32)), 5))
    return 0


if __name__ == "__main__":
    sys.exit(main())
