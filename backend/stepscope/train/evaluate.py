"""Evaluate a saved model on task instances: sample, decode, score with the task suite's rule-based scorers.

Instances come from one split (data.SPLITS): `held-out` for what is reported, `validation` for
choosing between configurations, `training` (restricted to the pool's own tasks by `train_keys`)
to tell a model that cannot fit from one that cannot generalise. Each instance's starting noise is drawn exactly as
`stepscope.probe.initial_latents` draws it for a run with seed = the instance's seed, and the
model is loaded through `stepscope.models.load_model`, as the service loads it. Sampling is
`batched` (the pipeline's steps for many instances at once; tests/train check it against the
pipeline) or `pipeline` (one WanImageToVideoPipeline call per instance: exact, slow).
The success rate of each family has a 95% Wilson score interval (stepscope.stats).
"""

from __future__ import annotations

import functools
import json
import multiprocessing
import time
from dataclasses import dataclass

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor

from stepscope.stats import mean_interval
from stepscope.tasks import candidate_curves
from stepscope.train.config import TrainConfig
from stepscope.train.data import (
    HELD_OUT_SEEDS,
    SPLITS,
    TASK_PARTS,
    held_out_refs,
    instance_key,
    make_instance,
    split_refs,
    to_model_range,
    to_uint8,
)
from stepscope.train.flow import condition_latents, decode_normalized, sample_latents
from stepscope.train.transformer import prompt_embeddings


@dataclass
class FamilyResult:
    family: str
    n: int
    passed: int
    rate: float
    interval: tuple[float, float]
    mean_score: float
    overlap_with_training: int | None  # held-out instances equal to a training instance (None: not checked)
    vae_ceiling: float | None = None  # success rate of the VAE's reconstructions of the ground truth (None: not run)
    by_difficulty: dict | None = None  # difficulty → {"n", "passed", "success_rate", "ci95"}
    distinct_tasks: int | None = None  # instances of one task differ in their noise seed only

    def to_json(self) -> dict:
        return {
            "distinct_tasks": self.distinct_tasks,
            "by_difficulty": self.by_difficulty,
            "family": self.family,
            "n": self.n,
            "passed": self.passed,
            "success_rate": round(self.rate, 4),
            "ci95": [round(self.interval[0], 4), round(self.interval[1], 4)],
            "mean_score": round(self.mean_score, 4),
            "overlap_with_training": self.overlap_with_training,
            "vae_ceiling": None if self.vae_ceiling is None else round(self.vae_ceiling, 4),
        }


def initial_noise(model, seed: int, frames: int, size: int) -> torch.Tensor:
    """(1, C, F', h, w) float32 noise drawn as stepscope.probe.initial_latents draws it for `seed`."""
    info = model.info
    latent_frames = (frames - 1) // info.vae_temporal + 1
    side = size // info.vae_spatial
    generator = torch.Generator("cpu").manual_seed(seed)
    shape = (1, info.latent_channels, latent_frames, side, side)
    return randn_tensor(shape, generator=generator, device=torch.device(model.device), dtype=torch.float32)


def first_frame_batch(tasks, frames: int) -> torch.Tensor:
    """(N, 3, T, H, W) in [−1, 1]: each task's first frame, the rest zero (only frame 0 reaches the conditioning)."""
    first = np.stack([t.first_frame for t in tasks])
    x = torch.from_numpy(first).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    videos = torch.zeros(x.shape[0], 3, frames, x.shape[2], x.shape[3])
    videos[:, :, 0] = x
    return videos


def sample_batched(model, tasks, *, cfg: TrainConfig, steps: int, guidance: float, on_step=None) -> list[np.ndarray]:
    """Videos (T, H, W, 3) uint8 for `tasks`, all at once, with the pipeline's conditioning, sampler and CFG."""
    pipe = model.pipe
    device = torch.device(model.device)
    frames, size = tasks[0].canvas.frames, tasks[0].canvas.size
    condition = condition_latents(pipe.vae, first_frame_batch(tasks, frames).to(device))
    prompts = sorted({t.prompt for t in tasks})
    text_tokens = model.info.text_tokens
    table = prompt_embeddings(pipe, prompts, device, text_tokens)
    texts = table[torch.tensor([prompts.index(t.prompt) for t in tasks], device=device)]
    negative = prompt_embeddings(pipe, [""], device, text_tokens).expand_as(texts)
    noise = torch.cat([initial_noise(model, t.seed, frames, size) for t in tasks])
    latents = sample_latents(
        pipe.transformer,
        condition,
        texts,
        negative,
        noise,
        scheduler_like=pipe.scheduler,
        steps=steps,
        guidance=guidance,
        on_step=on_step,
    )
    videos = decode_normalized(pipe.vae, latents)
    return [to_uint8(v) for v in videos]


def chain_of_steps(
    model, *, cfg: TrainConfig, n: int, steps: int = 20, guidance: float = 5.0, batch: int = 50, workers: int = 0
) -> dict:
    """Issue 18's visible Chain-of-Steps on the first `n` held-out mazes with ≥ 2 candidate branches: the share whose
    per-step candidate measure (on the full VAE decode of each step's x̂₀) has ≥ 2 live branches in some step of the
    first half and exactly one at the last step (`CandidateCurves.explored_then_committed`), with a 95% interval."""
    frames, size = cfg.frames, cfg.size
    refs = held_out_refs(("maze",), cfg.difficulties, n)
    tasks = [t for t in (make_instance(r, size, frames) for r in refs) if len(t.candidates) >= 2]
    curves = []
    for start in range(0, len(tasks), batch):
        chunk = tasks[start : start + batch]
        estimates: list[torch.Tensor] = []
        keep = functools.partial(_keep_estimate, estimates)
        sample_batched(model, chunk, cfg=cfg, steps=steps, guidance=guidance, on_step=keep)
        step_videos = [[to_uint8(v) for v in decode_normalized(model.pipe.vae, x0)] for x0 in estimates]
        jobs = [(task, [videos[j] for videos in step_videos]) for j, task in enumerate(chunk)]
        curves.extend(_map(_curves, jobs, workers))
    explored = np.array([c.explored_then_committed() for c in curves], dtype=np.float64)
    lo, hi = mean_interval(explored)
    return {
        "n": len(curves),
        "explored_then_committed": int(explored.sum()),
        "fraction": round(float(explored.mean()), 4),
        "ci95": [round(lo, 4), round(hi, 4)],
        "mean_live_per_step": [round(float(np.mean([c.live[s] for c in curves])), 3) for s in range(steps)],
        "final_winner_is_answer": round(float(np.mean([c.final_winner == c.answer for c in curves])), 4),
    }


def _keep_estimate(store: list, step: int, x0: torch.Tensor) -> None:
    store.append(x0)


def _curves(args):
    task, videos = args
    return candidate_curves(task, videos)


def sample_with_pipeline(model, task, *, steps: int, guidance: float) -> np.ndarray:
    """One video (T, H, W, 3) uint8 from one pipeline call; its noise is a stepscope run's for the task's seed."""
    canvas = task.canvas
    out = model.pipe(
        image=task.first_frame_image(),
        prompt=task.prompt,
        height=canvas.size,
        width=canvas.size,
        num_frames=canvas.frames,
        num_inference_steps=steps,
        max_sequence_length=model.info.text_tokens,
        guidance_scale=guidance,
        latents=initial_noise(model, task.seed, canvas.frames, canvas.size),
        output_type="np",
    )
    return (np.clip(out.frames[0], 0.0, 1.0) * 255).round().astype(np.uint8)


def _score(args) -> tuple[float, bool]:
    task, video = args
    result = task.score(video)
    return result.score, result.passed


def _map(fn, jobs: list, workers: int) -> list:
    """`fn` over `jobs` in `workers` forked processes (CPU-only work; 0: in this process)."""
    if workers <= 0:
        return list(map(fn, jobs))
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        return pool.map(fn, jobs, chunksize=8)


def score_all(tasks, videos, workers: int = 0) -> list[tuple[float, bool]]:
    """(score, passed) of each video under its task's rule-based scorer; `workers` processes (0: this one)."""
    return _map(_score, list(zip(tasks, videos, strict=True)), workers)


@torch.no_grad()
def reconstructions(model_or_vae, tasks, truths: np.ndarray | None = None) -> list[np.ndarray]:
    """The VAE's decode of each task's encoded ground truth: what the model could show at best.

    Takes a loaded model (its pipeline's VAE) or an AutoencoderKLWan itself; `truths`, the tasks' ground truth
    stacked, when the caller has rendered it already."""
    vae = getattr(getattr(model_or_vae, "pipe", None), "vae", model_or_vae)
    device = next(vae.parameters()).device
    truths = np.stack([t.ground_truth() for t in tasks]) if truths is None else truths
    videos = to_model_range(truths, device)
    decoded = vae.decode(vae.encode(videos.to(next(vae.parameters()).dtype)).latent_dist.mode(), return_dict=False)[0]
    return [to_uint8(v) for v in decoded]


def split_tasks(cfg: TrainConfig, family: str, split: str, per_family: int, train_keys: set[str] | None = None):
    """The first `per_family` instances of `family` in `split` (data.split_refs: the split's seeds, its part's
    tasks); for "training" these are the first instances of a run's pool. `train_keys` is not used to choose."""
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {sorted(SPLITS)}, got {split!r}")
    refs = split_refs((family,), cfg.difficulties, per_family, split, cfg.size, cfg.frames)
    return [make_instance(r, cfg.size, cfg.frames) for r in refs]


def frame_max_error(truth: np.ndarray, video: np.ndarray) -> np.ndarray:
    """The largest absolute difference (0-255) between two uint8 (T, H, W, 3) videos in each frame: (T,) ints."""
    return np.abs(truth.astype(np.int16) - video.astype(np.int16)).max(axis=(1, 2, 3))


def rate_by_difficulty(tasks, passed: np.ndarray) -> dict:
    """Success rate with its 95% Wilson interval for each difficulty among `tasks`."""
    out = {}
    for difficulty in sorted({t.difficulty for t in tasks}):
        mask = np.array([t.difficulty == difficulty for t in tasks])
        lo, hi = mean_interval(passed[mask])
        out[str(difficulty)] = {
            "n": int(mask.sum()),
            "passed": int(passed[mask].sum()),
            "success_rate": round(float(passed[mask].mean()), 4),
            "ci95": [round(lo, 4), round(hi, 4)],
        }
    return out


def vae_ceiling(vae, *, cfg: TrainConfig, per_family: int, split: str, batch: int = 100, workers: int = 0, log=print):
    """Pass rate of the VAE's reconstructions of `per_family` ground-truth videos a family of `split`, with 95%
    Wilson intervals and per-difficulty rates: the VAE's gate (no model can pass where its VAE cannot).

    Each family also reports where the reconstructions are wrong: `frame_error`, the largest absolute error
    (0-255, any pixel and channel) of each frame, averaged over the videos (`mean`) and at its worst (`max`).
    A VAE that codes some frames of a chunk and not others shows it there at once."""
    started = time.perf_counter()
    families = []
    for family in cfg.families:
        tasks = split_tasks(cfg, family, split, per_family)
        passed, scores, frame_errors = [], [], []
        for start in range(0, len(tasks), batch):
            chunk = tasks[start : start + batch]
            truths = np.stack([t.ground_truth() for t in chunk])
            videos = reconstructions(vae, chunk, truths)
            for score, ok in score_all(chunk, videos, workers):
                passed.append(ok)
                scores.append(score)
            frame_errors += [frame_max_error(truth, video) for truth, video in zip(truths, videos, strict=True)]
        outcomes = np.array(passed, dtype=np.float64)
        lo, hi = mean_interval(outcomes)
        families.append(
            {
                "family": family,
                "n": len(tasks),
                "distinct_tasks": len({instance_key(t) for t in tasks}),  # a reconstruction depends on the task only
                "passed": int(outcomes.sum()),
                "pass_rate": round(float(outcomes.mean()), 4),
                "ci95": [round(lo, 4), round(hi, 4)],
                "mean_score": round(float(np.mean(scores)), 4),
                "by_difficulty": rate_by_difficulty(tasks, outcomes),
                "frame_error": {
                    "mean": np.round(np.mean(frame_errors, axis=0), 1).tolist(),
                    "max": np.max(frame_errors, axis=0).tolist(),
                },
            }
        )
        count = f"{int(outcomes.sum())}/{len(tasks)}"
        log(f"{family}: VAE reconstructions pass {outcomes.mean():.4f} [{lo:.4f}, {hi:.4f}] ({count})")
    record = {
        "event": "vae_ceiling",
        "split": split,
        "per_family": per_family,
        "families": families,
        "seconds": round(time.perf_counter() - started, 2),
    }
    log(json.dumps(record))
    return record


def evaluate(
    model,
    *,
    cfg: TrainConfig,
    per_family: int,
    steps: int = 20,
    guidance: float = 5.0,
    batch: int = 100,
    sampler: str = "batched",
    train_keys: set[str] | None = None,
    vae_ceiling: bool = False,
    chain_of_steps_mazes: int = 0,
    workers: int = 0,
    split: str = "held-out",
    log=print,
) -> dict:
    """Success rate per family on `per_family` instances of `split`; returns the JSON record (also logged)."""
    if sampler not in ("batched", "pipeline"):
        raise ValueError(f"sampler: expected 'batched' or 'pipeline', got {sampler!r}")
    started = time.perf_counter()
    results = []
    for family in cfg.families:
        tasks = split_tasks(cfg, family, split, per_family, train_keys)
        scores, ceiling = [], []
        for start in range(0, len(tasks), batch):
            chunk = tasks[start : start + batch]
            if sampler == "batched":
                videos = sample_batched(model, chunk, cfg=cfg, steps=steps, guidance=guidance)
            else:
                videos = [sample_with_pipeline(model, t, steps=steps, guidance=guidance) for t in chunk]
            scores.extend(score_all(chunk, videos, workers))
            if vae_ceiling:
                ceiling.extend(passed for _, passed in score_all(chunk, reconstructions(model, chunk), workers))
        passed = np.array([p for _, p in scores], dtype=np.float64)
        overlap = None if train_keys is None else sum(instance_key(t) in train_keys for t in tasks)
        distinct = len({instance_key(t) for t in tasks})
        result = FamilyResult(
            family=family,
            n=len(tasks),
            passed=int(passed.sum()),
            rate=float(passed.mean()),
            interval=tuple(mean_interval(passed)),
            mean_score=float(np.mean([s for s, _ in scores])),
            overlap_with_training=overlap,
            vae_ceiling=float(np.mean(ceiling)) if vae_ceiling else None,
            by_difficulty=rate_by_difficulty(tasks, passed),
            distinct_tasks=distinct,
        )
        lo, hi = result.interval
        summary = f"{result.rate:.3f} [{lo:.3f}, {hi:.3f}] ({result.passed}/{result.n})"
        ceiling_text = "" if result.vae_ceiling is None else f", VAE reconstructions pass {result.vae_ceiling:.3f}"
        log(f"{family}: {summary}, mean score {result.mean_score:.3f}{ceiling_text}")
        results.append(result)
    record = {
        "event": "evaluation",
        "model": model.name,
        "device": model.device,
        "dtype": model.dtype,
        "sampler": sampler,
        "steps": steps,
        "guidance": guidance,
        "per_family": per_family,
        "split": split,
        "split_seeds_start": SPLITS[split].start,
        "held_out_seeds_start": HELD_OUT_SEEDS.start,
        "task_parts_percent": dict(TASK_PARTS),
        "families": [r.to_json() for r in results],
    }
    if chain_of_steps_mazes > 0:
        cos = chain_of_steps(
            model, cfg=cfg, n=chain_of_steps_mazes, steps=steps, guidance=guidance, batch=batch, workers=workers
        )
        log(f"maze chain of steps: {cos['fraction']:.3f} {cos['ci95']} explored then committed ({cos['n']} mazes)")
        record["chain_of_steps"] = cos
    record["seconds"] = round(time.perf_counter() - started, 2)
    log(json.dumps(record))
    return record
