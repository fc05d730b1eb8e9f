"""CKA, convergence and commitment against straightforward references."""

from __future__ import annotations

import numpy as np
import pytest

from stepscope.probe.metrics import (
    commitment_step,
    convergence,
    difference_map,
    linear_cka,
    norm_cka_distance,
)


def reference_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Textbook linear CKA: HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)) with K = XXᵀ, L = YYᵀ."""
    n = len(x)
    h = np.eye(n) - np.ones((n, n)) / n
    k, l_ = x @ x.T, y @ y.T

    def hsic(a, b):
        return np.trace(a @ h @ b @ h) / (n - 1) ** 2

    return hsic(k, l_) / np.sqrt(hsic(k, k) * hsic(l_, l_))


@pytest.mark.parametrize("shape", [(50, 8, 12), (20, 40, 60), (30, 1, 1)])
def test_linear_cka_matches_the_reference(shape):
    rng = np.random.default_rng(0)
    n, d1, d2 = shape
    x = rng.normal(size=(n, d1))
    y = x[:, :1] * 0.5 + rng.normal(size=(n, d2))
    assert linear_cka(x, y) == pytest.approx(reference_cka(x, y), rel=1e-9)


def test_cka_of_identical_inputs_is_one():
    x = np.random.default_rng(1).normal(size=(64, 16))
    assert linear_cka(x, x) == 1.0
    assert linear_cka(x, x.copy() + 0.0) == 1.0


def test_cka_is_invariant_to_orthogonal_transforms_and_isotropic_scaling():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(100, 12))
    y = rng.normal(size=(100, 12)) + x
    q, _ = np.linalg.qr(rng.normal(size=(12, 12)))
    base = linear_cka(x, y)
    assert linear_cka(x @ q, y) == pytest.approx(base, rel=1e-10)
    assert linear_cka(x, 7.5 * y) == pytest.approx(base, rel=1e-10)
    assert linear_cka(3 * x @ q, 0.01 * y) == pytest.approx(base, rel=1e-10)


def test_cka_of_unrelated_inputs_is_small_and_of_a_constant_is_zero():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(2000, 4)), rng.normal(size=(2000, 4))
    assert linear_cka(x, y) < 0.01
    assert linear_cka(x, np.ones((2000, 4))) == 0.0  # a constant centres to exact zeros, which the code maps to 0


def test_norm_cka_is_one_minus_squared_correlation():
    rng = np.random.default_rng(4)
    base = rng.normal(size=(3, 2, 50))
    var = base + rng.normal(size=(3, 2, 50))
    out = norm_cka_distance(base, var)
    assert out.shape == (2, 3)
    r = np.corrcoef(base[1, 0], var[1, 0])[0, 1]
    assert out[0, 1] == pytest.approx(1 - r**2, rel=1e-9)


def test_convergence_and_commitment():
    final = np.ones((4, 3, 2, 2))
    x0s = [final * 3, final * 1.5, final * 1.05, final * 0.98, final]
    dist = convergence(x0s)
    assert dist.shape == (5, 3)
    np.testing.assert_allclose(dist[:, 0], [2.0, 0.5, 0.05, 0.02, 0.0])
    assert commitment_step([0, 5, 10, 15, 20], dist) == 10
    assert commitment_step([0, 5, 10, 15, 20], dist, threshold=0.01) == 20
    # a run that leaves the threshold again has not committed until it comes back for good
    wobble = np.array([[0.5], [0.05], [0.3], [0.01], [0.0]])
    assert commitment_step([0, 1, 2, 3, 4], wobble) == 3


def test_difference_map_is_the_mean_absolute_channel_difference():
    a = np.zeros((4, 2, 3, 3))
    b = np.zeros((4, 2, 3, 3))
    b[:, 1, 0, 0] = [1, -1, 2, 0]
    out = difference_map(a, b)
    assert out.shape == (2, 3, 3)
    assert out[1, 0, 0] == 1.0 and out.sum() == 1.0
