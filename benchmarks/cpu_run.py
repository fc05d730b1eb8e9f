"""Time a 20-step stepscope run of the mini-reasoner's architecture on this CPU, every probe on, at two text lengths.

    python benchmarks/cpu_run.py --repeats 5 --json-out cpu_run.jsonl

The model is the `full` training config's: the committed VAE (weights/mini-reasoner/vae), the seeded
text encoder and a transformer of the trained size with its seeded initial weights (what a step costs does
not depend on what the weights learned). It is saved as a pipeline directory once per text length
(`stepscope_model.json` says the length) and loaded with `load_model`, as the service loads it; each run is
`run_experiment` with the spec's defaults (x̂₀ at every step, the L2 norm of every block's output at every
step, the final decode), on a maze instance's first frame, 64×64×17, CFG 5. The two lengths run interleaved
(ABAB…) in one process, so load beside the benchmark falls on both; the median of `--repeats` is printed with
the ratio. Issue 29's target for the shipped preset: ≤ 10 s on an idle 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backend"))

import torch  # noqa: E402

from stepscope.models import load_model  # noqa: E402
from stepscope.models.loading import write_model_settings  # noqa: E402
from stepscope.probe import run_experiment  # noqa: E402
from stepscope.spec import check_spec  # noqa: E402
from stepscope.store import RunDir  # noqa: E402
from stepscope.tasks import generate  # noqa: E402
from stepscope.train.build import assemble_pipeline, seeded_components  # noqa: E402
from stepscope.train.config import FULL  # noqa: E402
from stepscope.train.run import build_vae_copy, load_vae  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def save_pipeline(directory: Path, vae_dir: Path, text_tokens: int) -> Path:
    text_encoder, _, transformer = seeded_components(FULL)
    pipe = assemble_pipeline(FULL, text_encoder, build_vae_copy(FULL, load_vae(vae_dir, "cpu")), transformer)
    pipe.save_pretrained(directory, safe_serialization=True)
    write_model_settings(directory, text_tokens=text_tokens)
    return directory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vae", default=str(ROOT / "weights" / "mini-reasoner" / "vae"))
    parser.add_argument("--text-tokens", default=f"512,{FULL.transformer.text_tokens}")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--json-out")
    args = parser.parse_args(argv)
    lengths = [int(t) for t in args.text_tokens.split(",")]
    task = generate("maze", 2, 7)
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "first.png"
        task.first_frame_image().save(image)
        models = {
            n: load_model(str(save_pipeline(Path(tmp) / f"p{n}", Path(args.vae), n)), dtype="float32") for n in lengths
        }
        spec = {"prompt": task.prompt, "image": str(image), "steps": args.steps, "seed": 7}
        times: dict[int, list[float]] = {n: [] for n in lengths}
        for repeat in range(args.repeats + 1):  # the first round warms caches and is not counted
            for n in lengths:
                run = RunDir.at(str(Path(tmp) / f"run-{n}-{repeat}"))
                started = time.perf_counter()
                checked = check_spec({**spec, "model": models[n].name}, models[n].info)
                run_experiment(models[n], checked, run, allow_paths=True)
                if repeat:
                    times[n].append(time.perf_counter() - started)
    for n in lengths:
        line = {
            "benchmark": "cpu_run",
            "text_tokens": n,
            "steps": args.steps,
            "threads": torch.get_num_threads(),
            "median_s": round(statistics.median(times[n]), 3),
            "runs_s": [round(t, 3) for t in times[n]],
        }
        lines.append(line)
        print(json.dumps(line))
    if len(lengths) == 2:
        ratio = statistics.median(times[lengths[1]]) / statistics.median(times[lengths[0]])
        print(json.dumps({"benchmark": "cpu_run", "ratio": f"{lengths[1]}/{lengths[0]}", "value": round(ratio, 3)}))
    if args.json_out:
        Path(args.json_out).write_text("".join(json.dumps(line) + "\n" for line in lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
