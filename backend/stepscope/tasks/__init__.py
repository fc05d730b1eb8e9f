"""Video-reasoning tasks with rule-based scorers: generate an instance, render its ground truth, score any video.

from stepscope.tasks import generate
task = generate("maze", difficulty=2, seed=7)
task.first_frame            # (64, 64, 3) uint8: the conditioning image
task.ground_truth()         # (17, 64, 64, 3) uint8: the solution
task.score(video).passed    # a rule-based verdict on any (T, H, W, 3) RGB video
candidate_curves(task, step_videos)   # live candidates per denoising step, and which one wins

No torch here: numpy and Pillow only. The picture format is in docs/tasks.md.
"""

from stepscope.tasks.core import (
    FAMILIES,
    PALETTE,
    CandidateMeasure,
    Canvas,
    Family,
    ScoreResult,
    TaskError,
    TaskInstance,
    family_names,
    generate,
    get_family,
    register,
)
from stepscope.tasks.curves import CandidateCurves, candidate_curves

__all__ = [
    "FAMILIES",
    "PALETTE",
    "CandidateCurves",
    "CandidateMeasure",
    "Canvas",
    "Family",
    "ScoreResult",
    "TaskError",
    "TaskInstance",
    "candidate_curves",
    "family_names",
    "generate",
    "get_family",
    "register",
]
