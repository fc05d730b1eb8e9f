"""GPU benchmark: stepscope's full instrumentation against the plain diffusers WanPipeline.

Random weights at the real sizes (no downloads): Wan2.1-T2V-1.3B (12 heads × 128, 30 layers,
ffn 8960), the Wan 14B expert (40 × 128, 40 layers, ffn 13824), and a two-expert A14B-style
pipeline. All runs use one pipeline object in one process, alternating plain and
instrumented runs after a warm-up; every measurement prints one JSON line, the last lines
are the ratios, one per baseline and stepscope mode.

Baselines (--baselines): `plain-compiled`, diffusers' own fast path for Wan, regional
compilation (`transformer.compile_repeated_blocks(fullgraph=True)`), and `plain-eager`. Both use
the attention backend diffusers is set to (the same one stepscope runs with).

Stepscope modes (--modes): `default` is what a user gets with no settings: the spec's default
probes (x̂₀ and preview of every step, norms of every block, no step decodes, the final decode),
blocks compiled and step decodes in the dtype of STEPSCOPE_COMPILE / STEPSCOPE_STEP_DECODE_DTYPE's
defaults on this device. The other modes record everything below with a full decode of every
`--decode-every`-th step, with `eager` or `compiled` blocks and step decodes in the VAE's dtype or
(`+bf16-decodes`, `+fp16-decodes`) a lower-precision copy.

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
from stepscope.config import compile_on, get_settings, step_decode_dtype_for  # noqa: E402
from stepscope.models.compiled import compile_blocks, uncompile_blocks  # noqa: E402
from stepscope.models.loading import DTYPES, LoadedModel, cast_copy, info_from_pipeline, load_model  # noqa: E402
from stepscope.models.presets import RandomConfig, TinyConfig  # noqa: E402
from stepscope.models.random import TEXT_DIM, build_random_pipeline  # noqa: E402
from stepscope.models.tiny import build_text_encoder, build_vae  # noqa: E402
from stepscope.probe import run_experiment  # noqa: E402
from stepscope.spec import check_spec  # noqa: E402
from stepscope.store import RunDir  # noqa: E402

# The benchmark's model configurations: stepscope's random-weight presets at the real sizes.
PRESET_OF = {"1.3b": "wan2.1-1.3b-random", "14b": "wan-14b-random", "a14b": "wan2.2-a14b-random"}
SMOKE = RandomConfig(num_attention_heads=2, attention_head_dim=32, ffn_dim=128, num_layers=4)  # checks the script
PROMPT = "a ball rolls through a maze and stops at the exit"
NEGATIVE = "blurry, low quality"


def build_model(config: str, device: str) -> LoadedModel:
    if config == "smoke":
        pipe = build_random_pipeline(SMOKE, device)
        # The Wan VAE at full width decodes for seconds per frame on a CPU, and the random model's text encoder takes
        # 0.4 s a prompt there: the script check needs their shapes only (the tiny VAE, a one-layer encoder).
        text_encoder = build_text_encoder(
            len(pipe.tokenizer), d_model=pipe.transformer.config.text_dim, d_ff=8, num_layers=1, num_heads=1
        )
        small = {
            "vae": build_vae(TinyConfig()).to(device),
            "text_encoder": text_encoder.to(device, pipe.text_encoder.dtype),
        }
        pipe = type(pipe)(**{**pipe.components, **small})
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
        "loop_seconds": step_ends[-1] - start,  # the rest of the wall time is the final decode
        "step_ends": step_ends,
        "peak_gib": peak_gib(),
        "video_shape": list(video.shape),
        "final_latents": final.get("latents"),
    }


def stepscope_run(model: LoadedModel, args, publish, cache_dir: str, mode: str) -> dict:
    """One run_experiment; mode `default` leaves the probes at the spec's defaults."""
    request = {
        "model": model.name,
        "prompt": PROMPT,
        "negative_prompt": NEGATIVE,
        "seed": 0,
        "steps": args.steps,
        "guidance": 5.0,
        "height": args.height,
        "width": args.width,
        "frames": args.frames,
    }
    if mode != "default":
        request["probes"] = {
            "every": 1,
            "layers": "all",
            "passes": "cond",
            "x0_arrays": True,
            "decode_every": args.decode_every,
            "final_decode": True,
        }
    spec = check_spec(request, model.info)
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
MODES = ("default", *(blocks + suffix for suffix in ("", *DECODE_DTYPES) for blocks in ("eager", "compiled")))
BASELINES = ("plain-compiled", "plain-eager")
_step_vaes: dict[tuple[int, torch.dtype], torch.nn.Module] = {}
_regional_calls: dict[int, object] = {}  # id(block) → the compiled call regional compilation gave it


def default_mode(device: str) -> tuple[bool, torch.dtype | None]:
    """(compiled blocks, step-decode dtype or None for the VAE's own) with no STEPSCOPE_* settings."""
    settings = get_settings()
    dtype = step_decode_dtype_for(settings, device, "none")
    return compile_on(settings, device), DTYPES[dtype] if dtype else None


@contextlib.contextmanager
def blocks_mode(model: LoadedModel, mode: str):
    """Run stepscope with eager or compiled block forwards, and step decodes in the VAE's own
    dtype or in bfloat16 / float16 (STEPSCOPE_STEP_DECODE_DTYPE); `default`: as a worker with no settings."""
    if mode == "default":
        compiled, step_dtype = default_mode(model.device)
    else:
        compiled = mode.startswith("compiled")
        step_dtype = next((dtype for suffix, dtype in DECODE_DTYPES.items() if mode.endswith(suffix)), None)
    if compiled:
        for module in model.experts.values():
            compile_blocks(module)
    if step_dtype is not None and step_dtype != next(model.pipe.vae.parameters()).dtype:
        key = (id(model.pipe.vae), step_dtype)
        if key not in _step_vaes:
            _step_vaes[key] = cast_copy(model.pipe.vae, step_dtype)
        model.step_vae = _step_vaes[key]
    try:
        yield
    finally:
        model.step_vae = None
        for module in model.experts.values():
            uncompile_blocks(module)


@contextlib.contextmanager
def baseline_mode(model: LoadedModel, baseline: str):
    """Plain diffusers eager, or with diffusers' regional compilation of every transformer block.

    `compile_repeated_blocks` calls `nn.Module.compile` on each block, which routes the module call
    (hooks included) through `_compiled_call_impl`; it is cleared afterwards so that stepscope's
    runs get the eager module call around their own hooks, and restored for the next plain run."""
    blocks = [block for module in model.experts.values() for block in module.blocks]
    if baseline == "plain-compiled":
        if not all(id(block) in _regional_calls for block in blocks):
            for module in model.experts.values():
                module.compile_repeated_blocks(fullgraph=True)
            _regional_calls.update({id(block): block._compiled_call_impl for block in blocks})
        for block in blocks:
            block._compiled_call_impl = _regional_calls[id(block)]
    try:
        yield
    finally:
        for block in blocks:
            block._compiled_call_impl = None  # nn.Module's own default: the eager call


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
    return {k: v for k, v in record.items() if k not in ("step_seconds", "final_latents", "final_rel_l2_vs")} | (
        {"final_rel_l2_vs_plain": record["final_rel_l2_vs"]} if "final_rel_l2_vs" in record else {}
    )


def relative_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


def attention_backend() -> str:
    """The attention backend diffusers dispatches to (both baselines and stepscope use it)."""
    try:
        from diffusers.models.attention_dispatch import _AttentionBackendRegistry

        return str(_AttentionBackendRegistry.get_active_backend()[0].value)
    except (ImportError, AttributeError):
        return "unknown"


def steady_step_seconds(step_ends: list[float], skip: int = 2) -> float:
    gaps = [b - a for a, b in zip(step_ends[skip:], step_ends[skip + 1 :], strict=False)]
    return statistics.median(gaps) if gaps else float("nan")


def start_redis(scratch: str):
    from stepscope.embedded_redis import EmbeddedRedis

    return EmbeddedRedis(Path(scratch) / "redis", persistence=False).start()


def spread(runs: list[dict], key: str) -> float:
    return round(max(r[key] for r in runs) - min(r[key] for r in runs), 3)


def ratio_line(baseline: str, plain_runs: list[dict], mode: str, runs: list[dict], common: dict) -> dict:
    """stepscope `mode` against one plain baseline: medians over the repeats, and where the time goes."""
    plain_wall = statistics.median(p["wall_seconds"] for p in plain_runs)
    wall = statistics.median(r["wall_seconds"] for r in runs)
    plain_loop = statistics.median(p["loop_seconds"] for p in plain_runs)
    loop = statistics.median(r["loop_seconds"] for r in runs)
    plain_step = statistics.median(p["steady_step_seconds"] for p in plain_runs)
    return {
        "event": "ratio",
        "baseline": baseline,
        "mode": mode,
        **common,
        "plain_wall_seconds": round(plain_wall, 3),
        "stepscope_wall_seconds": round(wall, 3),
        "wall_ratio": round(wall / plain_wall, 4),
        "steady_step_ratio": round(statistics.median(r["steady_step_seconds"] for r in runs) / plain_step, 4),
        # Wall = denoising loop + what follows it (the final decode; for stepscope also its storage and events).
        "plain_loop_seconds": round(plain_loop, 3),
        "stepscope_loop_seconds": round(loop, 3),
        "plain_after_loop_seconds": round(plain_wall - plain_loop, 3),
        "stepscope_after_loop_seconds": round(wall - loop, 3),
        "step_decodes": runs[0]["decodes"],
        "decode_dtypes": runs[0]["decode_dtypes"],
        "compile": runs[0]["compile"],
        "forward_to_event_p50": statistics.median(r["forward_to_event"]["p50"] for r in runs),
        "forward_to_event_p95": statistics.median(r["forward_to_event"]["p95"] for r in runs),
        "peak_gib_plain": round(max(p["peak_gib"] for p in plain_runs), 2),
        "peak_gib_stepscope": round(max(r["peak_gib"] for r in runs), 2),
        "final_rel_l2_vs_plain": max(r["final_rel_l2_vs"][baseline] for r in runs),
        "wall_spread_plain": spread(plain_runs, "wall_seconds"),
        "wall_spread_stepscope": spread(runs, "wall_seconds"),
        "repeats": len(runs),
    }


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
    parser.add_argument(
        "--baselines",
        default=",".join(BASELINES),
        help=f"comma-separated plain diffusers baselines (of {', '.join(BASELINES)}); the first is the primary one",
    )
    args = parser.parse_args()
    modes = args.modes.split(",") if args.modes else ["default", "compiled"] if args.compile else ["default"]
    unknown = set(modes) - set(MODES)
    if unknown:
        parser.error(f"unknown modes {sorted(unknown)}; choose from {', '.join(MODES)}")
    baselines = args.baselines.split(",")
    unknown = set(baselines) - set(BASELINES)
    if unknown or not baselines:
        parser.error(f"--baselines: unknown {sorted(unknown)}; choose from {', '.join(BASELINES)}")
    low_precision = [mode for mode in modes if mode.endswith(tuple(DECODE_DTYPES))]
    if low_precision and not args.device.startswith("cuda"):
        # float16/bfloat16 VAE convolutions on a CPU without native support take many minutes.
        parser.error(f"--modes {','.join(low_precision)}: lower-precision step decodes are measured on CUDA only")
    out = open(args.out, "a") if args.out else None
    device = args.device

    import redis

    from stepscope import events

    server = start_redis(args.scratch)
    try:  # the script's Redis and output file are released also when a run fails halfway
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
            "attention_backend": attention_backend(),
        }
        emit_line(
            {"event": "setup", **common, "params_b": sum(p.numel() for p in pipe.transformer.parameters()) / 1e9}, out
        )

        warm = argparse.Namespace(**{**vars(args), "steps": args.warmup_steps, "decode_every": 1})
        for baseline in baselines:
            with baseline_mode(model, baseline):
                started = time.perf_counter()
                plain_run(pipe, warm)
                seconds = round(time.perf_counter() - started, 2)
                emit_line({"event": "warmup", "baseline": baseline, "seconds": seconds}, out)
        for mode in modes:
            with blocks_mode(model, mode):
                started = time.perf_counter()
                stepscope_run(model, warm, publish, cache_dir, mode)
                emit_line({"event": "warmup", "mode": mode, "seconds": round(time.perf_counter() - started, 2)}, out)

        if any(mode.startswith("compiled") or (mode == "default" and default_mode(device)[0]) for mode in modes):
            emit_line(
                {
                    "event": "forward_check",
                    **common,
                    "compiled_vs_eager_rel_l2": compiled_forward_difference(model, args),
                },
                out,
            )

        plain: dict[str, list[dict]] = {baseline: [] for baseline in baselines}
        probed: dict[str, list[dict]] = {mode: [] for mode in modes}
        for repeat in range(args.repeats):
            for baseline in baselines:
                clear_memory()
                with baseline_mode(model, baseline):
                    p = plain_run(pipe, args)
                p["steady_step_seconds"] = steady_step_seconds(p.pop("step_ends"))
                plain[baseline].append(p)
                emit_line({"event": "plain", "baseline": baseline, "repeat": repeat, **common, **printable(p)}, out)
            for mode in modes:
                clear_memory()
                decode_seconds.clear()
                decode_dtypes.clear()
                with blocks_mode(model, mode):
                    r = stepscope_run(model, args, publish, cache_dir, mode)
                r["decode_seconds"] = list(decode_seconds)
                r["decode_dtypes"] = list(decode_dtypes)  # the final decode's is the VAE's own
                r["steady_step_seconds"] = statistics.median(r["step_seconds"][2:])
                finals = {b: runs[-1]["final_latents"] for b, runs in plain.items()}
                r["final_rel_l2_vs"] = {b: relative_l2(r["final_latents"], latents) for b, latents in finals.items()}
                probed[mode].append(r)
                emit_line({"event": "stepscope", "mode": mode, "repeat": repeat, **common, **printable(r)}, out)

        for baseline, plain_runs in plain.items():
            for mode, runs in probed.items():
                emit_line(ratio_line(baseline, plain_runs, mode, runs, common), out)
    finally:
        server.stop()
        if out:
            out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
