"""Confidence intervals for the numbers stepscope reports: success rates (Wilson) and means (percentile bootstrap).

A success rate is a mean of 0/1 outcomes. Its percentile bootstrap collapses to zero width at 0/n and n/n
("0.000 [0.000, 0.000]" reads as certainty); the Wilson score interval does not (0/10 → [0, 0.278]), so rates
use Wilson and other means (scores, paired differences) the bootstrap. `mean_interval` picks by the values.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 2000


def wilson_interval(successes: int, n: int, confidence: float = CONFIDENCE) -> list[float]:
    """Wilson score interval of a binomial proportion `successes`/`n`."""
    if n <= 0:
        raise ValueError("n: need at least one outcome")
    if not 0 <= successes <= n:
        raise ValueError(f"successes: {successes} is outside 0..{n}")
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return [max(0.0, centre - half), min(1.0, centre + half)]


def bootstrap_interval(
    values, confidence: float = CONFIDENCE, resamples: int = RESAMPLES, seed: int = 0
) -> list[float]:
    """Percentile bootstrap interval of the mean of `values` (deterministic for a given `seed`)."""
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        raise ValueError("values: need at least one value")
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(resamples, data.size))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    return [float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))]


def mean_interval(values, confidence: float = CONFIDENCE) -> list[float]:
    """Wilson for 0/1 outcomes (a success rate), else the percentile bootstrap of the mean."""
    data = np.asarray(values, dtype=np.float64)
    if data.size and np.isin(data, (0.0, 1.0)).all():
        return wilson_interval(int(data.sum()), int(data.size), confidence)
    return bootstrap_interval(data, confidence)
