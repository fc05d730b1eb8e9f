"""Candidate curves along the denoising steps: for each step's video estimate, the mass on every candidate answer.

"Several paths explored, then one" becomes numbers: `live[s]` candidates at step s and `winner[s]`. Beside them,
the chance level: how often a measure that cannot see the answer would name it (`chance_level`, `answer_win_shares`),
and where each candidate is in the picture (`regions`), so that a viewer can draw them over the measured video.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from stepscope.stats import mean_interval
from stepscope.tasks.core import TaskInstance, conformed_frames


def chance_level(candidate_count: int) -> float:
    """How often a winner is the answer by chance: 1 / the number of candidates (a winner picked at random)."""
    if candidate_count < 1:
        raise ValueError(f"candidate_count: need at least one candidate, got {candidate_count}")
    return 1.0 / candidate_count


@dataclass
class CandidateCurves:
    """Per-step candidate measures of one trajectory: `masses[s][j]` is candidate j's mass at step s."""

    steps: list[int]
    labels: list[str]
    answer: int
    masses: list[list[float]]
    live: list[int]
    winner: list[int | None]
    alive: list[list[bool]] | None = None  # alive[s][j]: candidate j is live at step s (None: stored before it was)
    # where each candidate is read (`CandidateRegions.to_json()`) and `measured_frames`, the frames of the measured
    # videos those canvas frames come from (None: stored before it was)
    regions: dict | None = None

    @property
    def chance(self) -> float:
        """The chance level of `winner[s] == answer` at a step with a winner: 1 / the number of candidates."""
        return chance_level(len(self.labels))

    def to_json(self) -> dict:
        """The fields and `chance` (a reader gets the chance level without knowing how it is computed)."""
        return {**asdict(self), "chance": self.chance}

    @classmethod
    def from_record(cls, record) -> CandidateCurves:
        """The curves of a stored record with the same fields (a manifest's trajectory `candidates`)."""
        values = {f.name: getattr(record, f.name, None) for f in fields(cls)}
        if values["regions"] is not None and not isinstance(values["regions"], dict):
            values["regions"] = values["regions"].model_dump(mode="json")
        return cls(**values)

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
    regions = instance.candidate_regions().to_json()
    # The frames of the measured videos (e.g. a preview's latent frames) that the measure's canvas frames come from.
    lengths = {int(np.shape(video)[0]) for video in step_videos}
    source = conformed_frames(lengths.pop(), instance.canvas) if len(lengths) == 1 else None
    regions["measured_frames"] = sorted({int(source[f]) for f in regions["frames"]}) if source is not None else None
    return CandidateCurves(
        steps=list(steps),
        labels=list(instance.candidates),
        answer=instance.answer,
        masses=[m.masses for m in measures],
        live=[m.live for m in measures],
        winner=[m.winner for m in measures],
        alive=[m.alive for m in measures],
        regions=regions,
    )


def answer_win_shares(winners: list[int | None], answers: list[int], counts: list[int]) -> dict:
    """How often the winner is the answer over a set of measures (one per video: its winner, answer and number of
    candidates), beside the chance level: what a winner picked at random among the candidates would score.

    * `answer_wins`: share of all measures whose winner is the answer; `chance`: the mean of [a winner exists] / K;
    * `answer_wins_when_winner`: the same share among the measures with a winner; `chance_when_winner`: the mean of
      1 / K over them (None without a winner).
    The shares carry their 95% Wilson score intervals (`*_interval`); `n` and `with_winner` count the measures."""
    if not (len(winners) == len(answers) == len(counts)) or not winners:
        raise ValueError(
            f"winners, answers, counts: need equal non-zero lengths, got {len(winners)}, {len(answers)}, {len(counts)}"
        )
    has = [w is not None for w in winners]
    wins = [float(w is not None and w == a) for w, a in zip(winners, answers, strict=True)]
    picked = [i for i, h in enumerate(has) if h]
    out = {
        "n": len(winners),
        "with_winner": len(picked),
        "answer_wins": float(np.mean(wins)),
        "answer_wins_interval": mean_interval(wins),
        "chance": float(np.mean([h * chance_level(k) for h, k in zip(has, counts, strict=True)])),
        "answer_wins_when_winner": None,
        "answer_wins_when_winner_interval": None,
        "chance_when_winner": None,
    }
    if picked:
        when = [wins[i] for i in picked]
        out.update(
            answer_wins_when_winner=float(np.mean(when)),
            answer_wins_when_winner_interval=mean_interval(when),
            chance_when_winner=float(np.mean([chance_level(counts[i]) for i in picked])),
        )
    return out
