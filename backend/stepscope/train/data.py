"""Training data from the task suite, generated when a run starts; the split between training and evaluation.

Splits are made twice over. By seed: training draws seeds from `TRAIN_SEEDS`, evaluation from
`HELD_OUT_SEEDS` (what is reported) and `VALIDATION_SEEDS` (what configurations are chosen on), and
the ranges do not meet. And by task: two seeds can give the same task (the trajectory family has 160
distinct tasks at 64×64×17, pattern a few thousand), so every task belongs to one part by the hash of
its key (`task_part`: 20% held-out, 10% validation, 70% training), and a split's instances are only
those of its own part. No held-out or validation task is ever trained on, however many instances
are drawn; a small family simply has few distinct held-out tasks (evaluation says how many).
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from stepscope.tasks import Canvas, TaskInstance, generate


@dataclass(frozen=True)
class SeedRange:
    """Seeds `start` … `stop − 1`."""

    name: str
    start: int
    stop: int

    def seed(self, index: int) -> int:
        """The `index`-th seed of the range; an index past its end is an error, never a seed of the other split."""
        if not 0 <= index < self.stop - self.start:
            raise ValueError(f"{self.name} seed index {index} is outside 0..{self.stop - self.start - 1}")
        return self.start + index

    def __contains__(self, seed: int) -> bool:
        return self.start <= seed < self.stop


TRAIN_SEEDS = SeedRange("training", 0, 1_000_000_000)
HELD_OUT_SEEDS = SeedRange("held-out", 1_000_000_000, 1_100_000_000)
# Model selection (which VAE or transformer configuration to go on with) looks at these, never at held-out ones.
VALIDATION_SEEDS = SeedRange("validation", 1_100_000_000, 1_200_000_000)
SPLITS = {"training": TRAIN_SEEDS, "held-out": HELD_OUT_SEEDS, "validation": VALIDATION_SEEDS}


@dataclass(frozen=True)
class InstanceRef:
    """Which instance: family, difficulty and seed (the task suite makes the rest deterministic)."""

    family: str
    difficulty: int
    seed: int


# Parts of the task-key space, in percent: a task's part is its key's hash (first 8 hex digits) mod 100.
TASK_PARTS = (("held-out", 20), ("validation", 10), ("training", 70))
MAX_SCAN_FACTOR = 50  # a split's instances are searched among at most this many seeds per instance (+ 10,000)


def task_part(key: str) -> str:
    """Which split a task belongs to, from its instance key alone (the same on every machine and run)."""
    bucket = int(key[:8], 16) % 100
    for name, share in TASK_PARTS:
        if bucket < share:
            return name
        bucket -= share
    raise AssertionError("TASK_PARTS must add up to 100")


def instance_refs(
    families: tuple[str, ...], difficulties: tuple[int, ...], per_family: int, seeds: SeedRange
) -> list[InstanceRef]:
    """`per_family` instances of each family, difficulties taken in turn; the k-th of a family has seed index k."""
    return [
        InstanceRef(family, difficulties[k % len(difficulties)], seeds.seed(k))
        for family in families
        for k in range(per_family)
    ]


def training_refs(families: tuple[str, ...], difficulties: tuple[int, ...], per_family: int) -> list[InstanceRef]:
    """The first `per_family` training seeds of each family, all tasks (`split_refs` keeps the training part)."""
    return instance_refs(families, difficulties, per_family, TRAIN_SEEDS)


def iter_split(
    family: str, difficulties: tuple[int, ...], per_family: int, split: str, size: int, frames: int
) -> Iterator[tuple[InstanceRef, TaskInstance]]:
    """The first `per_family` instances of `family` in `split` (see `split_refs`), one by one with the task each
    was generated as: a caller that needs only the first few generates only the tasks up to them, and once."""
    seeds = SeedRange(split, SPLITS[split].start, SPLITS[split].stop)
    limit = MAX_SCAN_FACTOR * per_family + 10_000
    index = 0
    for k in range(per_family):
        difficulty = difficulties[k % len(difficulties)]
        while True:
            if index >= limit:
                raise ValueError(f"{split}: only {k} {family} instances of that part among {limit} seeds")
            ref = InstanceRef(family, difficulty, seeds.seed(index))
            index += 1
            task = make_instance(ref, size, frames)
            if task_part(instance_key(task)) == split:
                yield ref, task
                break


def split_refs(
    families: tuple[str, ...], difficulties: tuple[int, ...], per_family: int, split: str, size: int, frames: int
) -> list[InstanceRef]:
    """The first `per_family` instances of each family of `split`, difficulties in turn: the k-th has difficulty
    `difficulties[k % len]` and the first seed of the split (after the (k−1)-th's) whose task at that difficulty
    belongs to the split's part. Raises when MAX_SCAN_FACTOR·n + 10,000 seeds hold too few."""
    return [ref for family in families for ref, _ in iter_split(family, difficulties, per_family, split, size, frames)]


def held_out_refs(
    families: tuple[str, ...], difficulties: tuple[int, ...], per_family: int, size: int = 64, frames: int = 17
) -> list[InstanceRef]:
    """The first `per_family` held-out instances of each family (seeds and tasks of the held-out part)."""
    return split_refs(families, difficulties, per_family, "held-out", size, frames)


def make_instance(ref: InstanceRef, size: int, frames: int) -> TaskInstance:
    return generate(ref.family, ref.difficulty, ref.seed, Canvas(size=size, frames=frames))


def instance_key(task: TaskInstance) -> str:
    """What the picture and answer depend on, without the seed: equal keys mean the same task."""
    blob = f"{task.family}/{task.difficulty}/{task.canvas}/{sorted(task.params.items())}/{task.answer}"
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _key(args: tuple[InstanceRef, int, int]) -> str:
    ref, size, frames = args
    return instance_key(make_instance(ref, size, frames))


def instance_keys(refs: list[InstanceRef], size: int, frames: int, workers: int = 0) -> list[str]:
    """The instance key of each reference (no rendering)."""
    jobs = [(ref, size, frames) for ref in refs]
    if workers <= 0:
        return list(map(_key, jobs))
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        return pool.map(_key, jobs, chunksize=64)


def _render(args: tuple[InstanceRef, int, int]) -> tuple[np.ndarray, str]:
    ref, size, frames = args
    task = make_instance(ref, size, frames)
    return task.ground_truth(), instance_key(task)


def worker_count(requested: int | None) -> int:
    """Processes for rendering: `requested`, or all CPUs but one; 0 renders in this process."""
    if requested is not None:
        return requested
    return max(0, (os.cpu_count() or 1) - 1)


def render_videos(
    refs: list[InstanceRef], size: int, frames: int, workers: int = 0, chunk: int = 64
) -> Iterator[tuple[np.ndarray, str]]:
    """Ground-truth videos (T, H, W, 3) uint8 and instance keys, in the order of `refs`."""
    jobs = [(ref, size, frames) for ref in refs]
    if workers <= 0:
        yield from map(_render, jobs)
        return
    # fork keeps start-up cheap; rendering is numpy and Pillow only (no torch state in the children).
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        yield from pool.imap(_render, jobs, chunksize=chunk)


def render_all(refs: list[InstanceRef], size: int, frames: int, workers: int = 0) -> tuple[np.ndarray, list[str]]:
    """All videos stacked (N, T, H, W, 3) uint8, and their instance keys."""
    videos = np.empty((len(refs), frames, size, size, 3), dtype=np.uint8)
    keys = []
    for i, (video, key) in enumerate(render_videos(refs, size, frames, workers)):
        videos[i] = video
        keys.append(key)
    return videos, keys


def to_model_range(videos: np.ndarray, device=None):
    """uint8 (N, T, H, W, 3) → float32 torch (N, 3, T, H, W) in [−1, 1] on `device`, the VAE's input.

    The bytes travel as uint8 and are converted on the device (a quarter of the copy, no host float pass).
    """
    import torch

    return model_range(torch.from_numpy(np.ascontiguousarray(videos)).to(device))


def model_range(videos):
    """A uint8 torch tensor (N, T, H, W, 3) → float32 (N, 3, T, H, W) in [−1, 1] on its device (the VAE's input)."""
    return videos.permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0


def to_uint8(video) -> np.ndarray:
    """A VAE output (3, T, H, W) in [−1, 1] → (T, H, W, 3) uint8, rounded as the pipeline's postprocess does."""
    frames = (video.float().clamp(-1, 1) + 1.0) / 2.0
    return (frames.permute(1, 2, 3, 0).cpu().numpy() * 255).round().astype(np.uint8)
