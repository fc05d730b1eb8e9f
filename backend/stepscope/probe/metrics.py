"""Comparisons between trajectories: linear CKA, convergence, commitment step, difference maps.

All functions take numpy arrays on the host and work in float64.
"""

from __future__ import annotations

import numpy as np

COMMIT_THRESHOLD = 0.1  # relative L2 distance to the final x̂₀ under which a run has "committed"


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA of two representations of the same n samples: x (n, d1), y (n, d2).

    CKA = ‖Yᵀ X‖²_F / (‖Xᵀ X‖_F ‖Yᵀ Y‖_F) after centring each feature; 1 for identical inputs,
    invariant to orthogonal transforms and isotropic scaling of either side. Two constant
    representations count as identical (1.0); one constant and one not as unrelated (0.0).
    """
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"CKA needs the same samples on both sides, got {x.shape[0]} and {y.shape[0]}")
    if np.array_equal(x, y):
        return 1.0  # exactly, rather than 1 ± rounding of the two norms below
    x = x - x.mean(axis=0, keepdims=True)
    y = y - y.mean(axis=0, keepdims=True)
    # Work in the smaller of the feature-space and sample-space forms.
    if x.shape[1] + y.shape[1] <= 2 * x.shape[0]:
        cross = np.linalg.norm(y.T @ x) ** 2
        xx = np.linalg.norm(x.T @ x)
        yy = np.linalg.norm(y.T @ y)
    else:
        kx, ky = x @ x.T, y @ y.T
        cross = float((kx * ky).sum())
        xx, yy = np.linalg.norm(kx), np.linalg.norm(ky)
    if xx == 0.0 or yy == 0.0:
        return 1.0 if xx == yy else 0.0
    return float(cross / (xx * yy))


def cka_distance(x: np.ndarray, y: np.ndarray) -> float:
    """1 − linear CKA, clipped at 0 (rounding can put CKA of identical inputs a hair above 1)."""
    return max(0.0, 1.0 - linear_cka(x, y))


def latent_tokens(x0: np.ndarray) -> np.ndarray:
    """(C, F, H, W) latent → (F·H·W, C): latent positions as samples, channels as features."""
    return x0.reshape(x0.shape[0], -1).T


def cka_distance_per_step(base: list[np.ndarray], variant: list[np.ndarray]) -> list[float]:
    """1 − CKA between two runs' x̂₀ at each captured step (tokens × channels)."""
    return [cka_distance(latent_tokens(b), latent_tokens(v)) for b, v in zip(base, variant, strict=True)]


def norm_cka_distance(base: np.ndarray, variant: np.ndarray) -> np.ndarray:
    """1 − CKA per layer and step on hidden-state norm maps.

    base, variant: (S, L, N) per-token L2 norms. Each (step, layer) compares two vectors of N
    token norms, a one-feature representation, for which linear CKA is the squared Pearson
    correlation of the token norms. Returns (L, S).
    """
    steps, layers = base.shape[:2]
    out = np.empty((layers, steps))
    for s in range(steps):
        for layer in range(layers):
            out[layer, s] = cka_distance(base[s, layer][:, None], variant[s, layer][:, None])
    return out


def convergence(x0s: list[np.ndarray]) -> np.ndarray:
    """Relative L2 distance of each captured x̂₀ to the last one, per latent frame: (S, F)."""
    final = x0s[-1]
    out = np.empty((len(x0s), final.shape[1]))
    denom = np.sqrt((final.astype(np.float64) ** 2).sum(axis=(0, 2, 3))) + 1e-12
    for s, x0 in enumerate(x0s):
        diff = (x0.astype(np.float64) - final) ** 2
        out[s] = np.sqrt(diff.sum(axis=(0, 2, 3))) / denom
    return out


def commitment_step(steps: list[int], distances: np.ndarray, threshold: float = COMMIT_THRESHOLD) -> int | None:
    """First captured step from which the mean-over-frames distance stays under `threshold`."""
    mean = distances.mean(axis=1)
    committed = None
    for step, d in zip(steps, mean, strict=True):
        if d < threshold:
            committed = step if committed is None else committed
        else:
            committed = None
    return committed


def difference_map(base: np.ndarray, variant: np.ndarray) -> np.ndarray:
    """Mean absolute difference over channels of two x̂₀ (C, F, H, W): (F, H, W)."""
    return np.abs(base.astype(np.float32) - variant.astype(np.float32)).mean(axis=0)
