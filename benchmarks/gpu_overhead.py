"""GPU benchmark: stepscope's full instrumentation against the plain diffusers WanPipeline.

Random weights at the real sizes (no downloads): Wan2.1-T2V-1.3B (12 heads × 128, 30 layers,
ffn 8960), the Wan 14B expert (40 × 128, 40 layers, ffn 13824), and a two-expert A14B-style
pipeline. Both runs use one pipeline object in one process, alternating plain and
instrumented runs after a warm-up; every measurement prints one JSON line, the last lines
are the ratios.

Instrumented = x̂₀ and its linear preview of every frame at every step, L2 norms of every
block's output at every step (cond pass), preview PNG + x̂₀ .npy + norms .npy stored and one
Redis stream event published per step, full-quality decodes of every `--decode-every`-th
step in the background, and the final decode (which the plain pipeline also does).

    python benchmarks/gpu_overhead.py --config 1.3b --steps 20 --out results.jsonl
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from diffusers.utils import logging as diffusers_logging

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backend"))

from jsonl import emit_line  # noqa: E402
from stepscope.models.compiled import compile_blocks, uncompile_blocks  # noqa: E402
from stepscope.models.loading import LoadedModel, cast_copy, info_from_pipeline, load_model  # noqa: E402
from stepscope.models.presets import RandomConfig, TinyConfig  # noqa: E402
from stepscope.models.random import TEXT_DIM, build_random_pipeline  # noqa: E402
from stepscope.models.tiny import build_vae  # noqa: E402
from stepscope.probe import run_experiment  # noqa: E402
from stepscope.spec import parse_spec  # noqa: E402
from stepscope.store import RunDir  # noqa: E402

# The benchmark's model configurations: stepscope's random-weight presets at the real sizes.
PRESET_OF = {"1.3b": "wan2.1-1.3b-random", "14b": "wan-14b-random", "a14b": "wan2.2-a14b-random"}
SMOKE = RandomConfig(num_attention_heads=2, attention_head_dim=32, ffn_dim=128, num_layers=4)  # checks the script
PROMPT = "a ball rolls through a maze and stops at the exit"
NEGATIVE = "blurry, low quality"


def build_model(config: str, device: str) -> LoadedModel:
    if config == "smoke":
        pipe = build_random_pipeline(SMOKE, device)
        # The Wan VAE at full width decodes for seconds per frame on a CPU; the script check needs its shape only.
        pipe = type(pipe)(**{**pipe.components, "vae": build_vae(TinyConfig()).to(device)})
        pipe.set_progress_bar_config(disable=True)
        dtype = "bfloat16"
        if not device.startswith("cuda"):
            # CPUs without native bfloat16 arithmetic emulate it slowly: the script check runs float32 there.
            with quiet_diffusers():  # its keep-in-float32 warning: every module ends in float32 here
                pipe.transformer.to(torch.float32)
            pipe.text_encoder.to(torch.float32)
            dtype = "float32"
        return LoadedModel(name="smoke", pipe=pipe, info=info_from_pipeline(pipe), device=device, dtype=dtype)
    return load_model(PRESET_OF[config], device=device)


@contextlib.contextmanager
def quiet_diffusers():
    previous = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(previous)


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def reset_peak() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_gib() -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0


def plain_run(pipe, args) -> dict:
    """The plain diffusers call, with its final decode, timed to the last byte on the host."""
    step_ends: list[float] = []

    final = {}

    def on_step(p, i, t, kwargs):
        step_ends.append(time.perf_counter())
        if i == args.steps - 1:
            final["latents"] = kwargs["latents"].float().cpu()
        return {}

    sync()
    reset_peak()
    start = time.perf_counter()
    video = pipe(
        prompt=PROMPT,
        negative_prompt=NEGATIVE,
        height=args.height,
        width=args.width,
        num_frames=args.frames,
        num_inference_steps=args.steps,
        guidance_scale=5.0,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
        callback_on_step_end=on_step,
    ).frames
    sync()
    wall = time.perf_counter() - start
    return {
        "wall_seconds": wall,
        "step_ends": step_ends,
        "peak_gib": peak_gib(),
        "video_shape": list(video.shape),
        "final_latents": final.get("latents"),
    }


def stepscope_run(model: LoadedModel, args, publish, cache_dir: str) -> dict:
    spec = parse_spec(
        {
            "model": model.name,
            "prompt": PROMPT,
            "negative_prompt": NEGATIVE,
            "seed": 0,
            "steps": args.steps,
            "guidance": 5.0,
            "height": args.height,
            "width": args.width,
            "frames": args.frames,
            "probes": {
                "every": 1,
                "layers": "all",
                "passes": "cond",
                "x0_arrays": True,
                "decode_every": args.decode_every,
                "final_decode": True,
            },
        }
    )
    with tempfile.TemporaryDirectory(dir=args.scratch) as tmp:
        run = RunDir.at(tmp)
        sync()
        reset_peak()
        start = time.perf_counter()
        manifest = run_experiment(model, spec, run, emit=publish, cache_dir=cache_dir)
        sync()
        wall = time.perf_counter() - start
        final_latents = torch.from_numpy(run.read_array(manifest["trajectories"]["baseline"]["final"]["latents"]))
    traj = manifest["trajectories"]["baseline"]
    return {
        "wall_seconds": wall,
        "loop_seconds": traj["loop_seconds"],
        "step_seconds": traj["step_seconds"],
        "forward_to_event": traj["forward_to_event_seconds"],
        "decodes": [d["step"] for d in traj["decodes"]],
        "peak_gib": peak_gib(),
        "final_latents": final_latents,
        "compile": manifest["model"]["compile"],
    }


def clear_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


DECODE_DTYPES = {"+bf16-decodes": torch.bfloat16, "+fp16-decodes": torch.float16}
MODES = tuple(blocks + suffix for suffix in ("", *DECODE_DTYPES) for blocks in ("eager", "compiled"))
_step_vaes: dict[tuple[int, torch.dtype], torch.nn.Module] = {}


@contextlib.contextmanager
def blocks_mode(model: LoadedModel, mode: str):
    """Run stepscope with eager or compiled block forwards, and step decodes in the VAE's own
    dtype or in bfloat16 / float16 (STEPSCOPE_STEP_DECODE_DTYPE); plain diffusers always runs eager."""
    if mode.startswith("compiled"):
        for module in model.experts.values():
            compile_blocks(module)
    for suffix, dtype in DECODE_DTYPES.items():
        if mode.endswith(suffix):
            key = (id(model.pipe.vae), dtype)
            if key not in _step_vaes:
                _step_vaes[key] = cast_copy(model.pipe.vae, dtype)
            model.step_vae = _step_vaes[key]
    try:
        yield
    finally:
        model.step_vae = None
        for module in model.experts.values():
            uncompile_blocks(module)


@torch.no_grad()
def compiled_forward_difference(model: LoadedModel, args) -> float:
    """Relative L2 between one compiled and one eager forward on the same inputs: the per-forward
    rounding that compilation adds, to compare with how far it grows over a whole run."""
    transformer = model.pipe.transformer
    gen = torch.Generator().manual_seed(1)
    shape = (1, 16, (args.frames - 1) // 4 + 1, args.height // 8, args.width // 8)
    x = torch.randn(shape, generator=gen).to(model.device, torch.bfloat16)
    text = torch.randn(1, 512, TEXT_DIM, generator=gen).to(model.device, torch.bfloat16)
    t = torch.tensor([900], device=model.device)
    eager = transformer(hidden_states=x, timestep=t, encoder_hidden_states=text, return_dict=False)[0].float()
    with blocks_mode(model, "compiled"):
        compiled = transformer(hidden_states=x, timestep=t, encoder_hidden_states=text, return_dict=False)[0].float()
    return relative_l2(compiled, eager)


def printable(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in ("step_seconds", "final_latents")}


def relative_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


def steady_step_seconds(step_ends: list[float], skip: int = 2) -> float:
    gaps = [b - a for a, b in zip(step_ends[skip:], step_ends[skip + 1 :], strict=False)]
    return statistics.median(gaps) if gaps else float("nan")


def start_redis(scratch: str):
    from stepscope.embedded_redis import EmbeddedRedis

    return EmbeddedRedis(Path(scratch) / "redis", persistence=False).start()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=["1.3b", "14b", "a14b", "smoke"], default="1.3b")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=832)
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--decode-every", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2, help="plain/stepscope pairs after the warm-up")
    parser.add_argument("--warmup-steps", type=int, default=2)
    parser.add_argument("--scratch", default=tempfile.gettempdir())
    parser.add_argument("--out", help="also append the JSON lines to this file")
    parser.add_argument("--compile", action="store_true", help="also measure stepscope with compiled blocks")
    parser.add_argument("--modes", help=f"comma-separated stepscope modes instead (of {', '.join(MODES)})")
    args = parser.parse_args()
    modes = args.modes.split(",") if args.modes else ["eager", "compiled"] if args.compile else ["eager"]
    unknown = set(modes) - set(MODES)
    if unknown:
        parser.error(f"unknown modes {sorted(unknown)}; choose from {', '.join(MODES)}")
    low_precision = [mode for mode in modes if mode.endswith(tuple(DECODE_DTYPES))]
    if low_precision and not args.device.startswith("cuda"):
        # float16/bfloat16 VAE convolutions on a CPU without native support take many minutes.
        parser.error(f"--modes {','.join(low_precision)}: lower-precision step decodes are measured on CUDA only")
    out = open(args.out, "a") if args.out else None
    device = args.device

    import redis

    from stepscope import events

    server = start_redis(args.scratch)
    conn = redis.Redis.from_url(server.url)
    job = f"bench-{args.config}"

    decode_seconds: list[float] = []
    decode_dtypes: list[str] = []

    def publish(event: dict) -> None:
        events.publish(conn, job, event)
        if event["type"] == "decode":
            decode_seconds.append(event["seconds"])
            decode_dtypes.append(event["dtype"])

    model = build_model(args.config, device)
    pipe = model.pipe
    cache_dir = str(Path(args.scratch) / "stepscope-cache")
    common = {
        "config": args.config,
        "steps": args.steps,
        "frames": args.frames,
        "height": args.height,
        "width": args.width,
        "decode_every": args.decode_every,
        "device": torch.cuda.get_device_name() if device.startswith("cuda") else device,
        "torch": torch.__version__,
    }
    emit_line(
        {"event": "setup", **common, "params_b": sum(p.numel() for p in pipe.transformer.parameters()) / 1e9}, out
    )

    warm = argparse.Namespace(**{**vars(args), "steps": args.warmup_steps, "decode_every": 1})
    plain_run(pipe, warm)
    for mode in modes:
        with blocks_mode(model, mode):
            started = time.perf_counter()
            stepscope_run(model, warm, publish, cache_dir)
            emit_line({"event": "warmup", "mode": mode, "seconds": round(time.perf_counter() - started, 2)}, out)

    if any(mode.startswith("compiled") for mode in modes):
        emit_line(
            {"event": "forward_check", **common, "compiled_vs_eager_rel_l2": compiled_forward_difference(model, args)},
            out,
        )

    plain, probed = [], {mode: [] for mode in modes}
    for repeat in range(args.repeats):
        clear_memory()
        p = plain_run(pipe, args)
        p["steady_step_seconds"] = steady_step_seconds(p.pop("step_ends"))
        plain.append(p)
        emit_line({"event": "plain", "repeat": repeat, **common, **printable(p)}, out)
        for mode in modes:
            clear_memory()
            decode_seconds.clear()
            decode_dtypes.clear()
            with blocks_mode(model, mode):
                r = stepscope_run(model, args, publish, cache_dir)
            r["decode_seconds"] = list(decode_seconds)
            r["decode_dtypes"] = list(decode_dtypes)  # the final decode's is the VAE's own
            r["steady_step_seconds"] = statistics.median(r["step_seconds"][2:])
            r["final_rel_l2_vs_plain"] = relative_l2(r["final_latents"], p["final_latents"])
            probed[mode].append(r)
            emit_line({"event": "stepscope", "mode": mode, "repeat": repeat, **common, **printable(r)}, out)

    plain_wall = statistics.median(p["wall_seconds"] for p in plain)
    plain_step = statistics.median(p["steady_step_seconds"] for p in plain)
    for mode, runs in probed.items():
        wall = statistics.median(r["wall_seconds"] for r in runs)
        emit_line(
            {
                "event": "ratio",
                "mode": mode,
                **common,
                "plain_wall_seconds": round(plain_wall, 3),
                "stepscope_wall_seconds": round(wall, 3),
                "wall_ratio": round(wall / plain_wall, 4),
                "steady_step_ratio": round(statistics.median(r["steady_step_seconds"] for r in runs) / plain_step, 4),
                "forward_to_event_p50": statistics.median(r["forward_to_event"]["p50"] for r in runs),
                "forward_to_event_p95": statistics.median(r["forward_to_event"]["p95"] for r in runs),
                "peak_gib_plain": round(max(p["peak_gib"] for p in plain), 2),
                "peak_gib_stepscope": round(max(r["peak_gib"] for r in runs), 2),
                "final_rel_l2_vs_plain": max(r["final_rel_l2_vs_plain"] for r in runs),
                "wall_spread_plain": round(
                    max(p["wall_seconds"] for p in plain) - min(p["wall_seconds"] for p in plain), 3
                ),
                "wall_spread_stepscope": round(
                    max(r["wall_seconds"] for r in runs) - min(r["wall_seconds"] for r in runs), 3
                ),
            },
            out,
        )
    server.stop()
    if out:
        out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
