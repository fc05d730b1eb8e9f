"""Reasoning-task instances (stepscope.tasks): the families, and one instance with its first frame as a PNG data URL."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BeforeValidator

from stepscope.api import errors
from stepscope.api.errors import ApiError
from stepscope.images import png_data_url
from stepscope.tasks import TaskError, family_names, generate, get_family
from stepscope.tasks.core import DIFFICULTIES

router = APIRouter(prefix="/api", tags=["tasks"])

# 2**31 − 1: a valid spec seed that a browser's Number holds exactly.
MAX_TASK_SEED = 2**31 - 1
_DIGITS = re.compile(r"[0-9]{1,19}")


def plain_integer(value: object) -> object:
    """Refuse what lax int parsing would accept from a query string ("1.0", " 1", "+1"): only decimal digits."""
    if isinstance(value, str) and not _DIGITS.fullmatch(value):
        raise ValueError("must be a non-negative integer written in decimal digits")
    return value


Difficulty = Annotated[
    int,
    BeforeValidator(plain_integer),
    Query(ge=min(DIFFICULTIES), le=max(DIFFICULTIES), description="1 (easy) to 3 (hard)"),
]
TaskSeed = Annotated[
    int, BeforeValidator(plain_integer), Query(ge=0, le=MAX_TASK_SEED, description=f"0 to {MAX_TASK_SEED}")
]


@router.get("/tasks", summary="Task families")
def list_tasks() -> dict:
    """Every task family: its name, the difficulties it has and a one-line description."""
    return {
        "families": [
            {"name": name, "difficulties": list(DIFFICULTIES), "description": get_family(name).description}
            for name in family_names()
        ]
    }


@router.get("/tasks/{family}", summary="One task instance", responses=errors.responses(404))
def task_instance(family: str, difficulty: Difficulty = 1, seed: TaskSeed = 0) -> dict:
    """The instance of `family` at `difficulty` for `seed` (deterministic): its prompt, canvas, first frame as a PNG
    data URL (the conditioning image of an image-to-video run) and the whole instance as JSON."""
    if family not in family_names():
        raise ApiError(404, f"family: unknown task family {family!r}; known: {', '.join(family_names())}", "family")
    try:
        instance = generate(family, difficulty=difficulty, seed=seed)
    except TaskError as exc:  # the checks above leave none; kept so a tasks-side rule still answers 422
        raise ApiError(422, str(exc), exc.field) from exc
    return {
        "family": instance.family,
        "difficulty": instance.difficulty,
        "seed": instance.seed,
        "prompt": instance.prompt,
        "height": instance.canvas.size,
        "width": instance.canvas.size,
        "frames": instance.canvas.frames,
        "image": png_data_url(instance.first_frame_image()),
        "instance": instance.to_json(),
    }
