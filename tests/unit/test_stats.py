"""Intervals against published values and a brute-force check."""

from __future__ import annotations

import numpy as np
import pytest

from stepscope.stats import bootstrap_interval, mean_interval, wilson_interval


def test_wilson_matches_published_values():
    # Newcombe (1998), Statistics in Medicine 17:857, Table I (95%): 0/10, 1/29, 81/263, 15/148.
    assert wilson_interval(0, 10) == pytest.approx([0.0, 0.2775], abs=1e-4)
    assert wilson_interval(1, 29) == pytest.approx([0.0061, 0.1718], abs=1e-4)
    assert wilson_interval(81, 263) == pytest.approx([0.2553, 0.3662], abs=1e-4)
    assert wilson_interval(15, 148) == pytest.approx([0.0624, 0.1605], abs=1e-4)
    assert wilson_interval(10, 10) == pytest.approx([0.7225, 1.0], abs=1e-4)


def test_wilson_covers_about_95_percent_of_binomial_draws():
    rng = np.random.default_rng(0)
    n, p = 40, 0.3
    draws = rng.binomial(n, p, size=4000)
    covered = np.mean([lo <= p <= hi for lo, hi in (wilson_interval(int(k), n) for k in draws)])
    assert 0.93 <= covered <= 0.97


def test_rates_use_wilson_and_other_means_the_bootstrap():
    assert mean_interval([0.0] * 10) == wilson_interval(0, 10)
    assert mean_interval([1, 0, 1, 1]) == wilson_interval(3, 4)
    scores = [0.2, 0.9, 0.5, 0.7]
    assert mean_interval(scores) == bootstrap_interval(scores)
    lo, hi = bootstrap_interval(scores)
    assert lo < np.mean(scores) < hi
    with pytest.raises(ValueError, match="n"):
        wilson_interval(0, 0)
    with pytest.raises(ValueError, match="values"):
        bootstrap_interval([])
