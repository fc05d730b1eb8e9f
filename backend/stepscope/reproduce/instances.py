"""Which task instances the reproduction runs, their swap partners, and which latent tokens are foreground.

Instances are the held-out ones of `stepscope.train.data` (seeds from 1,000,000,000, difficulties in
turn, tasks of the held-out part: `split_refs`), so a trained model is measured on tasks it never
saw. The foreground of an instance is where its ground-truth video paints the task's objects (the
family's `foreground` colours); a token is foreground when any pixel it covers, in any video frame it
covers, is painted. What carries an instance's answer is its family's `answer_param`: the family
classes own both facts (stepscope.tasks.core.Family).
"""

from __future__ import annotations

from itertools import islice

import numpy as np

from stepscope.tasks import Canvas, TaskInstance
from stepscope.tasks.core import DIFFICULTIES, PALETTE, TaskError
from stepscope.train.data import InstanceRef, iter_split

# Instances and swap partners come from the first 1000 held-out instances of a family.
UNSEEN_PER_FAMILY = 1000


def held_out_instances(family: str, n: int, canvas: Canvas) -> list[TaskInstance]:
    """The first `n` held-out instances of a family (difficulty 1, 2, 3 in turn)."""
    if not 1 <= n <= UNSEEN_PER_FAMILY // 2:
        raise TaskError("n", f"must be in 1..{UNSEEN_PER_FAMILY // 2}, got {n}")
    return [task for _, task in _held_out(family, n, canvas)]


def _held_out(family: str, n: int, canvas: Canvas):
    """The first `n` held-out (ref, instance) pairs of a family, generated as they are read."""
    return iter_split(family, DIFFICULTIES, n, "held-out", canvas.size, canvas.frames)


def answer_of(instance: TaskInstance) -> str:
    """A comparable description of the instance's answer: its family's `answer_param` (the goal cell, landing
    column or number of turns)."""
    return repr(instance.params[instance.family_impl.answer_param])


def swap_partners(instances: list[TaskInstance], canvas: Canvas) -> list[TaskInstance]:
    """For each instance, a held-out instance of the same family and difficulty with a different answer.

    Partners come from the held-out instances after the first len(instances) (so no partner is also a
    measured instance), in order, each used once.
    """
    if not instances:
        return []
    family = instances[0].family
    after_measured = islice(_held_out(family, UNSEEN_PER_FAMILY, canvas), len(instances), None)
    pool: list[tuple[InstanceRef, TaskInstance]] = []  # generated as far as a search has read

    def pool_in_order():
        yield from pool
        for pair in after_measured:
            pool.append(pair)
            yield pair

    used: set[int] = set()
    partners = []
    for instance in instances:
        for k, (ref, candidate) in enumerate(pool_in_order()):
            if k in used or ref.difficulty != instance.difficulty:
                continue
            if answer_of(candidate) != answer_of(instance):
                used.add(k)
                partners.append(candidate)
                break
        else:
            raise TaskError("tasks", f"no held-out {family} instance with another answer than seed {instance.seed}")
    return partners


def foreground_pixels(instance: TaskInstance) -> np.ndarray:
    """(T, S, S) bool: the pixels the ground-truth video paints in a foreground colour."""
    video = instance.ground_truth()
    mask = np.zeros(video.shape[:3], dtype=bool)
    for name in instance.family_impl.foreground:
        mask |= np.all(video == np.asarray(PALETTE[name], dtype=np.uint8), axis=-1)
    return mask


def latent_frame_video_frames(latent_frame: int, vae_temporal: int) -> range:
    """The video frames a latent frame holds: the first alone, then groups of `vae_temporal` (Wan's causal VAE)."""
    if latent_frame == 0:
        return range(0, 1)
    return range((latent_frame - 1) * vae_temporal + 1, latent_frame * vae_temporal + 1)


def token_foreground(
    pixels: np.ndarray,
    token_grid: tuple[int, int, int],
    patch: tuple[int, int, int],
    vae_spatial: int,
    vae_temporal: int,
) -> np.ndarray:
    """(F', H', W') bool: a token is foreground when any pixel of any video frame it covers is.

    Token (f', h', w') covers latent frames f'·p_t … (f'+1)·p_t − 1 and pixels
    [h'·p_h·s, (h'+1)·p_h·s) × [w'·p_w·s, (w'+1)·p_w·s) for the VAE's spatial factor s.
    """
    frames, height, width = token_grid
    p_t, p_h, p_w = patch
    tile_h, tile_w = p_h * vae_spatial, p_w * vae_spatial
    if pixels.shape[1] != height * tile_h or pixels.shape[2] != width * tile_w:
        raise ValueError(f"pixels {pixels.shape[1:]} do not tile into {height}×{width} tokens of {tile_h}×{tile_w}")
    spatial = pixels.reshape(pixels.shape[0], height, tile_h, width, tile_w).any(axis=(2, 4))  # (T, H', W')
    out = np.zeros((frames, height, width), dtype=bool)
    for f in range(frames):
        video_frames = [v for lf in range(f * p_t, (f + 1) * p_t) for v in latent_frame_video_frames(lf, vae_temporal)]
        video_frames = [v for v in video_frames if v < pixels.shape[0]]
        out[f] = spatial[video_frames].any(axis=0)
    return out
