"""Per-frame reconstruction error of a trained pipeline's VAE on held-out task videos, for several clip lengths.

    python benchmarks/vae_reconstruction_by_frame.py --model runs/mini-reasoner/pipeline --lengths 5,9,17

The Wan VAE codes a video as its first frame, then chunks of 4 frames, each reading a cache of the
chunk before; a VAE trained on short windows may code the chunks it has seen and fail on later
ones. This prints, for each clip length, the MSE (videos in [−1, 1]) of every frame, averaged over
`--per-family` held-out instances of each family, and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backend"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from stepscope.models import load_model  # noqa: E402
from stepscope.train.config import FULL  # noqa: E402
from stepscope.train.data import held_out_refs, make_instance, to_model_range  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="a saved pipeline directory or a preset")
    parser.add_argument("--lengths", default="5,9,17")
    parser.add_argument("--per-family", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    vae = load_model(args.model, device=args.device, dtype="float32").pipe.vae
    refs = held_out_refs(FULL.families, FULL.difficulties, args.per_family)
    videos = to_model_range(np.stack([make_instance(r, FULL.size, FULL.frames).ground_truth() for r in refs]))
    videos = videos.to(args.device)
    record = {"model": args.model, "instances": len(refs), "mse_per_frame": {}}
    for length in [int(n) for n in args.lengths.split(",")]:
        clip = videos[:, :, :length]
        with torch.no_grad():
            decoded = vae.decode(vae.encode(clip).latent_dist.mode(), return_dict=False)[0]
        per_frame = (decoded.float() - clip).pow(2).mean(dim=(0, 1, 3, 4)).tolist()
        record["mse_per_frame"][length] = [round(v, 4) for v in per_frame]
        print(f"{length:>3} frames: " + " ".join(f"{v:.4f}" for v in per_frame), flush=True)
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
