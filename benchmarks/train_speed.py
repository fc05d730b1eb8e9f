"""Time one optimiser step of each training stage of `stepscope train` at several batch sizes, eager and compiled.

    python benchmarks/train_speed.py --device cuda --json-out speed.json

Both stages of the `full` config are small models (a few million parameters), so a step is
bound by kernel launches, not arithmetic: a larger batch or fewer launches (regional
compilation of the repeated transformer blocks, as diffusers documents for Wan) can cost little
more time per step. The transformer is also timed at each `--text-tokens` length (the
pipeline's max_sequence_length: Wan's 512 against the longest prompt's 176). This measures it
on the machine that will train, with the training code's
own loss functions on rendered task videos, one process, side by side. Prints one JSON line per
configuration (ms per step, samples per second) and the compile time where there is one.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backend"))

import torch  # noqa: E402

from stepscope.train.build import assemble_pipeline, seeded_components  # noqa: E402
from stepscope.train.config import FULL  # noqa: E402
from stepscope.train.data import render_all, to_model_range, training_refs  # noqa: E402
from stepscope.train.flow import flow_matching_loss  # noqa: E402
from stepscope.train.loop import autocast_for  # noqa: E402
from stepscope.train.transformer import encode_pool, prompt_embeddings  # noqa: E402
from stepscope.train.vae import reconstruction_loss  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step, device: torch.device, warmup: int, timed: int) -> float:
    """Seconds per call of `step()` after `warmup` untimed calls."""
    for _ in range(warmup):
        step()
    sync(device)
    started = time.perf_counter()
    for _ in range(timed):
        step()
    sync(device)
    return (time.perf_counter() - started) / timed


def optimiser_step(module: torch.nn.Module, loss_fn, device: torch.device):
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-4)

    def step() -> None:
        with autocast_for(device):
            loss = loss_fn()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--vae-batches", default="32,128")
    parser.add_argument("--transformer-batches", default="256,1024")
    parser.add_argument("--compile", default="off,blocks", help="off, blocks (compile_repeated_blocks), or both")
    parser.add_argument("--text-tokens", default=f"512,{FULL.transformer.text_tokens}")
    parser.add_argument("--timed", type=int, default=10)
    parser.add_argument("--videos", type=int, default=400, help="rendered videos per family")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--json-out")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    cfg = FULL
    lines: list[dict] = []

    def emit(line: dict) -> None:
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        line = {"benchmark": "train_speed", "device": name, **line}
        lines.append(line)
        print(json.dumps(line), flush=True)

    refs = training_refs(cfg.families, cfg.difficulties, args.videos)
    videos, _ = render_all(refs, cfg.size, cfg.frames, workers=args.workers)
    text_encoder, vae, transformer = seeded_components(cfg)
    vae = vae.to(device).train()
    model_videos = to_model_range(videos, device)
    generator = torch.Generator(device).manual_seed(0)
    for batch in [int(b) for b in args.vae_batches.split(",")]:
        index = torch.arange(batch, device=device) % len(model_videos)
        step = optimiser_step(
            vae, lambda i=index: reconstruction_loss(vae, model_videos[i], cfg.vae.kl_weight, generator), device
        )
        seconds = time_steps(step, device, 3, args.timed)
        emit(
            {
                "stage": "vae",
                "batch": batch,
                "compile": "off",
                "ms_per_step": seconds * 1e3,
                "samples_per_s": batch / seconds,
            }
        )

    vae.eval().requires_grad_(False)
    x0, condition = encode_pool(vae, videos, torch.arange(len(videos)).numpy(), device)
    pipe = assemble_pipeline(cfg, text_encoder.to(device), vae, transformer)
    prompt = "Maze: a prompt"
    for mode, tokens in [(m, int(t)) for m in args.compile.split(",") for t in args.text_tokens.split(",")]:
        texts = prompt_embeddings(pipe, [prompt], device, tokens)
        module = seeded_components(cfg)[2].to(device).train()
        compile_seconds = None
        if mode == "blocks":
            module.compile_repeated_blocks(fullgraph=True)
        for batch in [int(b) for b in args.transformer_batches.split(",")]:
            index = torch.arange(batch, device=device) % len(x0)
            text = texts.expand(batch, -1, -1)
            step = optimiser_step(
                module,
                lambda i=index, t=text, m=module: flow_matching_loss(
                    m, x0[i], condition[i], t, cfg=cfg, generator=generator
                ),
                device,
            )
            if mode == "blocks":
                sync(device)
                started = time.perf_counter()
                step()
                sync(device)
                compile_seconds = time.perf_counter() - started
            seconds = time_steps(step, device, 3, args.timed)
            emit(
                {
                    "stage": "transformer",
                    "batch": batch,
                    "compile": mode,
                    "text_tokens": tokens,
                    "first_step_s": compile_seconds,
                    "ms_per_step": seconds * 1e3,
                    "samples_per_s": batch / seconds,
                }
            )
    if args.json_out:
        Path(args.json_out).write_text("".join(json.dumps(line) + "\n" for line in lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
