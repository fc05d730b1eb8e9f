"""Does a Wan VAE trained on short windows code whole videos? A CPU-sized check of the window rule in docs/training.md.

    python benchmarks/vae_window_cpu.py --windows 5,9 --steps 400

Trains one small AutoencoderKLWan per window length with the training code (`stepscope.train.vae.train_vae`),
same seed, data and steps, on 32×32 crops of task videos (the full config's factors: 4× time, 8× space;
`--base-dim` channels), then prints the per-frame reconstruction MSE of whole 17-frame held-out crops and one
JSON line. The question is architectural (which cache states a window shows the causal chunks), so a
small model on small crops answers it in minutes on a CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backend"))

import torch  # noqa: E402

from stepscope.train.build import build_vae_for  # noqa: E402
from stepscope.train.config import FULL  # noqa: E402
from stepscope.train.data import held_out_refs, render_all, to_model_range, training_refs  # noqa: E402
from stepscope.train.vae import train_vae  # noqa: E402

CROP = 32


def crops(videos):
    """(N, T, 64, 64, 3) uint8 → model-range (N, 3, T, 32, 32): the top-left quarter of each frame."""
    return to_model_range(videos[:, :, :CROP, :CROP])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--windows", default="5,9")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--base-dim", type=int, default=8)
    parser.add_argument("--videos", type=int, default=100, help="training videos per family")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    train_videos, _ = render_all(training_refs(FULL.families, FULL.difficulties, args.videos), FULL.size, FULL.frames)
    test_videos, _ = render_all(held_out_refs(FULL.families, FULL.difficulties, 4), FULL.size, FULL.frames)
    train_x, test_x = crops(train_videos), crops(test_videos)
    record = {"crop": CROP, "steps": args.steps, "batch": args.batch, "base_dim": args.base_dim, "windows": {}}
    for window in [int(w) for w in args.windows.split(",")]:
        cfg = FULL.replace(
            vae={
                "base_dim": args.base_dim,
                "steps": args.steps,
                "seconds": None,
                "batch": args.batch,
                "clip_frames": window,
            }
        )
        torch.manual_seed(cfg.seed + 1)
        started = time.perf_counter()
        vae, loop = train_vae(cfg, build_vae_for(cfg), train_x, torch.device("cpu"), log=lambda line: None)
        with torch.no_grad():
            decoded = vae.decode(vae.encode(test_x).latent_dist.mode(), return_dict=False)[0]
        per_frame = (decoded - test_x).pow(2).mean(dim=(0, 1, 3, 4)).tolist()
        record["windows"][window] = {
            "seconds": round(time.perf_counter() - started, 1),
            "final_training_loss": loop.losses[-1][1],
            "mse_per_frame": [round(v, 4) for v in per_frame],
            "mse_frames_0_4": round(sum(per_frame[:5]) / 5, 4),
            "mse_frames_5_16": round(sum(per_frame[5:]) / 12, 4),
        }
        print(f"window {window}: " + " ".join(f"{v:.3f}" for v in per_frame), flush=True)
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
