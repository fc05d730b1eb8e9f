"""Look at a trained pipeline's VAE: each held-out ground truth above its reconstruction, and the scorer's verdict.

    python benchmarks/vae_reconstruction_look.py --model runs/mini-reasoner/pipeline --png recon.png
    python benchmarks/vae_reconstruction_look.py --vae runs/vae/vae --split validation --png recon.png

Rows: per family, `--per-family` held-out instances, the ground truth (top) and the VAE's decode of its
encoding (bottom) at frames 0, 4, 8, 12, 16. Prints each reconstruction's verdict from the task's own scorer:
what `stepscope.train evaluate --vae-ceiling` counts, instance by instance.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backend"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from stepscope.models import load_model  # noqa: E402
from stepscope.train.config import FULL  # noqa: E402
from stepscope.train.evaluate import reconstructions, split_tasks  # noqa: E402
from stepscope.train.run import load_vae  # noqa: E402

FRAMES_SHOWN = (0, 4, 8, 12, 16)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="a saved pipeline directory or a preset")
    source.add_argument("--vae", help="a VAE directory (a VAE stage's vae/)")
    parser.add_argument("--split", choices=["held-out", "validation"], default="held-out")
    parser.add_argument("--png", required=True, help="where to write the image")
    parser.add_argument("--per-family", type=int, default=2)
    args = parser.parse_args(argv)
    model = load_model(args.model, device="cpu", dtype="float32") if args.model else load_vae(Path(args.vae), "cpu")
    rows = []
    for family in FULL.families:
        tasks = split_tasks(FULL, family, args.split, args.per_family)
        with torch.no_grad():
            decoded = reconstructions(model, tasks)
        for task, video in zip(tasks, decoded, strict=True):
            truth = task.ground_truth()
            verdict = task.score(video)
            error = np.mean((video.astype(np.float64) - truth) ** 2, axis=(1, 2, 3)) / 255**2 * 4  # in [−1, 1] units
            print(f"{family}: {'pass' if verdict.passed else 'FAIL'} score {verdict.score:.3f}: {verdict.reason}")
            print("  frame MSE " + " ".join(f"{e:.4f}" for e in error))
            rows.append(np.concatenate([np.concatenate([truth[i], video[i]], axis=0) for i in FRAMES_SHOWN], axis=1))
    image = np.concatenate(rows, axis=0)
    Image.fromarray(image).resize((image.shape[1] * 2, image.shape[0] * 2), Image.NEAREST).save(args.png)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
