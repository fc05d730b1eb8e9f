"""Corruptions of a video, for validating scorers: the ones a scorer must fail and the ones it must survive."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter

from stepscope.tasks.core import TaskInstance


def shuffled(video: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The frames in a random order that moves the first frame (so the order really changed)."""
    order = rng.permutation(len(video))
    while order[0] == 0:
        order = rng.permutation(len(video))
    return video[order]


def noise(video: np.ndarray, rng: np.random.Generator, std: float = 64.0) -> np.ndarray:
    """Gaussian noise around mid-grey in place of the video (what a random-weight model tends to produce)."""
    return np.clip(rng.normal(128.0, std, size=video.shape), 0, 255).astype(np.uint8)


def added_noise(video: np.ndarray, rng: np.random.Generator, std: float) -> np.ndarray:
    """The video plus independent Gaussian noise of `std` (in 0-255 units) on every pixel."""
    return np.clip(video.astype(np.float32) + rng.normal(0.0, std, size=video.shape), 0, 255).astype(np.uint8)


def blank(video: np.ndarray, value: int = 255) -> np.ndarray:
    return np.full_like(video, value)


def frozen(video: np.ndarray) -> np.ndarray:
    """The first frame held for the whole clip (nothing happens)."""
    return np.repeat(video[:1], len(video), axis=0)


def jpeg(video: np.ndarray, quality: int = 75) -> np.ndarray:
    """Every frame through JPEG at `quality` (4:2:0 chroma, Pillow's default)."""
    out = []
    for frame in video:
        buf = io.BytesIO()
        Image.fromarray(frame).save(buf, format="JPEG", quality=quality)
        out.append(np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")))
    return np.stack(out)


def blurred(video: np.ndarray, radius: float = 0.8) -> np.ndarray:
    """Every frame through a Gaussian blur of `radius` pixels."""
    return np.stack([np.asarray(Image.fromarray(f).filter(ImageFilter.GaussianBlur(radius))) for f in video])


def wrong(instance: TaskInstance) -> np.ndarray:
    """The family's rule-breaking video: a path through a wall, the wrong landing place, the wrong orientation."""
    return instance.family_impl.wrong_video(instance)


MUST_FAIL = {
    "wrong": lambda inst, video, rng: wrong(inst),
    "shuffled": lambda inst, video, rng: shuffled(video, rng),
    "noise": lambda inst, video, rng: noise(video, rng),
    "blank": lambda inst, video, rng: blank(video),
    "black": lambda inst, video, rng: blank(video, 0),
    "frozen": lambda inst, video, rng: frozen(video),
}
MUST_PASS = {
    "jpeg75": lambda inst, video, rng: jpeg(video, 75),
    "blur0.8": lambda inst, video, rng: blurred(video, 0.8),
}
