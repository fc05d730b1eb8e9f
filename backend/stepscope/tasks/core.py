"""What every task family shares: the canvas, the palette, instances, scores, candidate measures, the registry.

A family is one class with four jobs: `generate` an instance's parameters from a seeded random
generator, `render` the ground-truth video, `score` any video, and `candidates` (how much of each
possible answer a video, e.g. one denoising step's x̂₀ decode, shows), with `candidate_regions` saying
where in the picture each candidate is read (so a viewer can draw it). The class also owns the family's
facts (`FAMILY_FACTS`: its prompt, which parameter carries the answer, which colours paint the objects
that carry it); training and the reproduction read them from the family (`get_family(name)`), never
from tables of their own. Families register themselves with `@register`, which refuses a class
that lacks a fact; `stepscope.tasks.families` imports every module in its folder, so adding a family is
one new file there plus its test.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np
from PIL import Image

CELL = 8  # pixels per grid cell: one latent pixel of an 8x-spatial VAE
MIN_SIZE, MAX_SIZE = 64, 256
MIN_FRAMES, MAX_FRAMES = 9, 81
DIFFICULTIES = (1, 2, 3)

# The palette: exact RGB values; docs/tasks.md says what each means in each family.
FLOOR = (255, 255, 255)  # open floor / background
WALL = (40, 40, 56)  # walls
AGENT = (220, 40, 40)  # the maze agent, the ball, the pattern's turn-count bar
TRAIL = (60, 110, 230)  # the maze agent's trail, the pattern's shape
GOAL = (40, 170, 70)  # the maze goal
SLOT = (250, 190, 40)  # a landing place on the floor (trajectory)
GHOST = (255, 180, 200)  # the ball's previous position (trajectory)
PALETTE = {"floor": FLOOR, "wall": WALL, "agent": AGENT, "trail": TRAIL, "goal": GOAL, "slot": SLOT, "ghost": GHOST}

LIKENESS_RADIUS = 60.0  # RGB distance at which a colour's likeness has fallen to 1/e
MIN_VALID_FRACTION = 0.9  # a passing video has at least this share of frames that follow the rules
LIVE_MASS = 0.2  # a candidate is live when its mass is at least this ...
LIVE_RELATIVE = 0.5  # ... and at least this fraction of the strongest candidate's mass


class TaskError(ValueError):
    """A bad task request; `field` names the offending argument."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class Canvas:
    """The picture format: square frames of `size` pixels on a grid of 8-pixel cells, `frames` frames."""

    size: int = 64
    frames: int = 17

    def __post_init__(self):
        if not (MIN_SIZE <= self.size <= MAX_SIZE) or self.size % 16:
            raise TaskError("canvas.size", f"must be a multiple of 16 in [{MIN_SIZE}, {MAX_SIZE}], got {self.size}")
        if not (MIN_FRAMES <= self.frames <= MAX_FRAMES) or (self.frames - 1) % 4:
            raise TaskError("canvas.frames", f"must be 4k+1 in [{MIN_FRAMES}, {MAX_FRAMES}], got {self.frames}")

    @property
    def grid(self) -> int:
        """Cells per side."""
        return self.size // CELL


@dataclass(frozen=True)
class TaskInstance:
    """One generated task: everything needed to render and score it, JSON-serialisable."""

    family: str
    difficulty: int
    seed: int
    canvas: Canvas
    prompt: str
    params: dict  # family-specific, JSON types only
    candidates: list[str]  # one label per possible answer (maze branch, landing place, orientation)
    answer: int  # index into `candidates` of the right one

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> TaskInstance:
        data = dict(data)
        data["canvas"] = Canvas(**data["canvas"])
        return cls(**data)

    def dumps(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True)

    @property
    def family_impl(self) -> Family:
        return get_family(self.family)

    @property
    def first_frame(self) -> np.ndarray:
        """The conditioning image, (H, W, 3) uint8: frame 0 of the ground truth."""
        return self.ground_truth()[0]

    def first_frame_image(self) -> Image.Image:
        return Image.fromarray(self.first_frame)

    def ground_truth(self) -> np.ndarray:
        """The solution video, (T, H, W, 3) uint8."""
        return self.family_impl.render(self)

    def score(self, video: np.ndarray) -> ScoreResult:
        """Score a video (T, H, W, 3) uint8 RGB; other sizes and frame counts are resampled first."""
        return self.family_impl.score(self, conform(video, self.canvas))

    def candidate_video(self, index: int) -> np.ndarray:
        """A video whose answer is candidate `index` (a wrong branch, landing place or orientation)."""
        if not 0 <= index < len(self.candidates):
            raise TaskError("index", f"candidate {index} is out of range (0..{len(self.candidates) - 1})")
        return self.family_impl.candidate_video(self, index)

    def measure_candidates(self, video: np.ndarray) -> CandidateMeasure:
        """How much of each candidate answer a video (e.g. one step's x̂₀ decode) shows."""
        return self.family_impl.candidates(self, conform(video, self.canvas))

    def candidate_regions(self) -> CandidateRegions:
        """Where each candidate answer is in the picture, and which frames its mass is read from."""
        return self.family_impl.candidate_regions(self)


@dataclass
class ScoreResult:
    """A scorer's verdict: `score` in [0, 1], `passed`, and what it saw in each frame."""

    score: float
    passed: bool
    reason: str  # what decided the verdict, in words
    frames: list[dict] = field(default_factory=list)  # per-frame diagnostics
    details: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class CandidateMeasure:
    """Mass on each candidate answer in one video; `live` counts the candidates still in play, `alive` says which."""

    labels: list[str]
    masses: list[float]
    answer: int
    live: int
    winner: int | None  # index of the strongest candidate, None when none is live
    alive: list[bool] = field(default_factory=list)  # alive[j]: candidate j passes the live rule

    def to_json(self) -> dict:
        return asdict(self)


def measure_from_masses(labels: list[str], masses: list[float], answer: int) -> CandidateMeasure:
    """Apply the live rule: mass ≥ LIVE_MASS and ≥ LIVE_RELATIVE × the strongest mass."""
    masses = [float(np.clip(m, 0.0, 1.0)) for m in masses]
    top = max(masses) if masses else 0.0
    live_flags = [m >= LIVE_MASS and m >= LIVE_RELATIVE * top for m in masses]
    winner = int(np.argmax(masses)) if any(live_flags) else None
    return CandidateMeasure(
        labels=labels, masses=masses, answer=answer, live=int(sum(live_flags)), winner=winner, alive=live_flags
    )


Cell = tuple[int, int]


@dataclass(frozen=True)
class CandidateRegions:
    """Where a family's `candidates` reads each candidate answer, in cells of the task's grid (row, column; cell
    (r, c) covers pixels [8r, 8r+8) × [8c, 8c+8) of the canvas, and the same fraction of any resized picture).

    `cells[j]`: the cells whose colour is candidate j's mass; `anchors[j]`: the cell that names it (a maze end, a
    landing place, a corner of the pattern's box); `area`: every cell the measure reads (a candidate's mass may
    also depend on area cells outside its own: the pattern's fit reads the whole box); `frames`: the canvas frames
    it reads. Pixels outside `area`, and frames outside `frames`, never change a mass."""

    grid: int
    cells: list[list[Cell]]
    anchors: list[Cell]
    area: list[Cell]
    frames: list[int]

    def to_json(self) -> dict:
        return {
            "grid": self.grid,
            "cells": [[list(c) for c in cells] for cells in self.cells],
            "anchors": [list(c) for c in self.anchors],
            "area": [list(c) for c in self.area],
            "frames": list(self.frames),
        }


class Family:
    """A task family: subclass, set every fact of `FAMILY_FACTS`, implement the methods, decorate with @register.

    The facts are class attributes with no default here, so a family that forgets one is refused at registration
    (and reading it from the base class fails) instead of inheriting a guess."""

    name: ClassVar[str]
    description: ClassVar[str]  # one line: what happens in the video and what the answer is
    prompt: ClassVar[str]  # the text prompt of every instance of the family (it names the family)
    # The key of `params` whose value is the answer: two instances with different values have different answers
    # (the reproduction's layer-swap partners differ in it).
    answer_param: ClassVar[str]
    # Palette names the ground truth paints the answer-bearing objects with: the reproduction's foreground tokens.
    foreground: ClassVar[tuple[str, ...]]

    def generate(self, difficulty: int, rng: np.random.Generator, canvas: Canvas) -> dict[str, Any]:
        """Return {"params", "candidates", "answer"} for a new instance (`params` holds `answer_param`)."""
        raise NotImplementedError

    def render(self, instance: TaskInstance) -> np.ndarray:
        raise NotImplementedError

    def score(self, instance: TaskInstance, video: np.ndarray) -> ScoreResult:
        raise NotImplementedError

    def candidates(self, instance: TaskInstance, video: np.ndarray) -> CandidateMeasure:
        raise NotImplementedError

    def candidate_regions(self, instance: TaskInstance) -> CandidateRegions:
        """Where `candidates` reads each candidate, and in which frames."""
        raise NotImplementedError

    def candidate_video(self, instance: TaskInstance, index: int) -> np.ndarray:
        """A video that gives candidate `index` as its answer (the ground truth for `instance.answer`)."""
        raise NotImplementedError

    def wrong_video(self, instance: TaskInstance) -> np.ndarray:
        """A plausible-looking video that breaks the family's rule (for scorer validation)."""
        raise NotImplementedError


FAMILIES: dict[str, Family] = {}

# Every fact a family states about itself, and its type: `register` checks them, tests/tasks/test_tasks.py reads them.
FAMILY_FACTS: dict[str, type] = {
    "name": str,
    "description": str,
    "prompt": str,
    "answer_param": str,
    "foreground": tuple,
}


def check_facts(cls: type[Family]) -> None:
    """Raise TypeError unless `cls` states every fact of FAMILY_FACTS with its type (foreground: palette names)."""
    label = getattr(cls, "name", cls.__name__)
    for fact, kind in FAMILY_FACTS.items():
        value = getattr(cls, fact, None)
        if not isinstance(value, kind) or not value:
            raise TypeError(f"task family {label!r}: {fact} must be a non-empty {kind.__name__}, got {value!r}")
    unknown = [c for c in cls.foreground if c not in PALETTE or c in ("floor", "wall")]
    if unknown:
        raise TypeError(f"task family {label!r}: foreground names {unknown}, not object colours of PALETTE")


def register(cls: type[Family]) -> type[Family]:
    """Class decorator: make a family available by its name (once it states every fact of FAMILY_FACTS)."""
    check_facts(cls)
    if cls.name in FAMILIES:
        raise ValueError(f"task family {cls.name!r} registered twice")
    FAMILIES[cls.name] = cls()
    return cls


def get_family(name: str) -> Family:
    from stepscope.tasks import families  # noqa: F401  (importing registers every family)

    if name not in FAMILIES:
        raise TaskError("family", f"unknown task family {name!r}; known: {', '.join(sorted(FAMILIES))}")
    return FAMILIES[name]


def family_names() -> list[str]:
    from stepscope.tasks import families  # noqa: F401

    return sorted(FAMILIES)


def instance_rng(family: str, difficulty: int, seed: int) -> np.random.Generator:
    """A generator that depends only on (family, difficulty, seed), stable across runs and platforms."""
    digest = hashlib.sha256(f"stepscope-task/{family}/{difficulty}/{seed}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def generate(family: str, difficulty: int = 1, seed: int = 0, canvas: Canvas | None = None) -> TaskInstance:
    """The instance of `family` at `difficulty` (1-3) for `seed`: the same arguments give the same instance."""
    impl = get_family(family)
    if difficulty not in DIFFICULTIES:
        raise TaskError("difficulty", f"must be one of {DIFFICULTIES}, got {difficulty}")
    if not isinstance(seed, int) or seed < 0:
        raise TaskError("seed", f"must be a non-negative integer, got {seed!r}")
    canvas = canvas or Canvas()
    made = impl.generate(difficulty, instance_rng(family, difficulty, seed), canvas)
    return TaskInstance(
        family=family,
        difficulty=difficulty,
        seed=seed,
        canvas=canvas,
        prompt=impl.prompt,
        params=made["params"],
        candidates=made["candidates"],
        answer=made["answer"],
    )


# -- pictures -------------------------------------------------------------------------------


def blank_video(canvas: Canvas, colour: tuple[int, int, int] = FLOOR) -> np.ndarray:
    video = np.empty((canvas.frames, canvas.size, canvas.size, 3), dtype=np.uint8)
    video[...] = colour
    return video


def fill_cell(frame: np.ndarray, row: int, col: int, colour: tuple[int, int, int]) -> None:
    frame[row * CELL : (row + 1) * CELL, col * CELL : (col + 1) * CELL] = colour


def conform(video: np.ndarray, canvas: Canvas) -> np.ndarray:
    """Bring a video to the canvas: (T, H, W, 3) uint8 with T frames resampled in time, H×W resized."""
    video = np.asarray(video)
    if video.ndim != 4 or video.shape[-1] != 3:
        raise TaskError("video", f"expected (frames, height, width, 3) RGB, got shape {video.shape}")
    if video.dtype != np.uint8:
        video = np.clip(np.round(video.astype(np.float64)), 0, 255).astype(np.uint8)
    if video.shape[1:3] != (canvas.size, canvas.size):
        video = np.stack(
            [np.asarray(Image.fromarray(f).resize((canvas.size, canvas.size), Image.BILINEAR)) for f in video]
        )
    if video.shape[0] != canvas.frames:
        video = video[conformed_frames(video.shape[0], canvas)]
    return video


def conformed_frames(source_frames: int, canvas: Canvas) -> np.ndarray:
    """For each canvas frame, the frame of a `source_frames`-frame video that `conform` puts there: the nearest in
    time (frame i of the canvas is at fraction i/(T-1) of the clip)."""
    if source_frames == canvas.frames:
        return np.arange(canvas.frames)
    return np.round(np.linspace(0, source_frames - 1, canvas.frames)).astype(int)


def likeness(pixels: np.ndarray, colour: tuple[int, int, int], background: tuple[int, int, int] = FLOOR) -> np.ndarray:
    """How much of `colour` each pixel shows, in [0, 1], on `background`.

    The pixel is projected on the segment background→colour (the share t of the colour in a
    blend) and discounted by its distance r from that segment: t·exp(−(r/60)²). A blur or a
    half-transparent blend of the colour gives a fraction; a different colour gives about 0.
    """
    b = np.asarray(background, dtype=np.float32)
    d = np.asarray(colour, dtype=np.float32) - b
    dd = float(d @ d)
    q = np.asarray(pixels, dtype=np.float32) - b
    qd = q @ d
    t = np.clip(qd / dd, 0.0, 1.0)
    # Squared distance from the nearest point b + t·d of the segment, without building that point.
    r2 = np.einsum("...c,...c->...", q, q) - 2.0 * t * qd + t * t * dd
    return t * np.exp(-np.maximum(r2, 0.0) / LIKENESS_RADIUS**2)


def cell_means(frames: np.ndarray, margin: int = 1) -> np.ndarray:
    """Mean colour of each cell's inside (a `margin`-pixel border left out): (..., rows, cols, 3) float."""
    *lead, h, w, channels = frames.shape
    cells = np.asarray(frames, dtype=np.float32).reshape(*lead, h // CELL, CELL, w // CELL, CELL, channels)
    inner = cells[..., margin : CELL - margin, :, margin : CELL - margin, :]
    return inner.mean(axis=(-4, -2))


def classify(means: np.ndarray, names: list[str]) -> np.ndarray:
    """Index into `names` of the palette colour nearest each mean colour."""
    colours = np.asarray([PALETTE[n] for n in names], dtype=np.float32)
    d = np.sum((means[..., None, :] - colours) ** 2, axis=-1)
    return np.argmin(d, axis=-1)
