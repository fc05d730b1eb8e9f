"""Candidate curves along the denoising steps: for each step's video estimate, the mass on every candidate answer.

"Several paths explored, then one" becomes numbers: `live[s]` candidates at step s and `winner[s]`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from stepscope.tasks.core import TaskInstance


@dataclass
class CandidateCurves:
    """Per-step candidate measures of one trajectory: `masses[s][j]` is candidate j's mass at step s."""

    steps: list[int]
    labels: list[str]
    answer: int
    masses: list[list[float]]
    live: list[int]
    winner: list[int | None]

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_record(cls, record) -> CandidateCurves:
        """The curves of a stored record with the same fields (a manifest's trajectory `candidates`)."""
        return cls(**{f.name: getattr(record, f.name) for f in fields(cls)})

    @property
    def final_winner(self) -> int | None:
        return self.winner[-1] if self.winner else None

    def explored_then_committed(self, early_fraction: float = 0.5) -> bool:
        """At least two live candidates in some step of the first `early_fraction` of steps, and one at the end."""
        if not self.live:
            return False
        early = self.live[: max(1, int(len(self.live) * early_fraction))]
        return max(early) >= 2 and self.live[-1] == 1


def candidate_curves(
    instance: TaskInstance, step_videos: list[np.ndarray], steps: list[int] | None = None
) -> CandidateCurves:
    """Measure every step's video estimate (e.g. each step's x̂₀ preview or decode, (T, H, W, 3) RGB, any size)."""
    if steps is None:
        steps = list(range(len(step_videos)))
    if len(steps) != len(step_videos):
        raise ValueError(f"steps: {len(steps)} step indices for {len(step_videos)} videos")
    measures = [instance.measure_candidates(video) for video in step_videos]
    return CandidateCurves(
        steps=list(steps),
        labels=list(instance.candidates),
        answer=instance.answer,
        masses=[m.masses for m in measures],
        live=[m.live for m in measures],
        winner=[m.winner for m in measures],
    )
