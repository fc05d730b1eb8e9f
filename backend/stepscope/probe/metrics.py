"""Comparisons between trajectories: linear CKA, convergence, commitment step, difference maps.

The first part takes numpy arrays on the host and works in float64. The last part, hidden-state
CKA, works in torch on the states' device: a baseline keeps a token sketch of each hidden state
it should be compared at (`HiddenStateSketcher`), and a variant compares its own states with
those as they are computed (`HiddenStateCKA`), so no full hidden state is ever stored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from stepscope.probe.hooks import wants_pass
from stepscope.probe.interventions import HiddenStateBank

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


def norm_map_r2_distance(base: np.ndarray, variant: np.ndarray) -> np.ndarray:
    """1 − r² per layer and step of the per-token hidden-state norm maps (not CKA of the states).

    base, variant: (S, L, N) per-token L2 norms. Each (step, layer) compares two vectors of N
    token norms, a one-feature representation, for which linear CKA is the squared Pearson
    correlation of the token norms: blind to changes of direction. Returns (L, S). For CKA of
    the hidden states themselves see `HiddenStateCKA`.
    """
    steps, layers = base.shape[:2]
    out = np.empty((layers, steps))
    for s in range(steps):
        for layer in range(layers):
            out[layer, s] = cka_distance(base[s, layer][:, None], variant[s, layer][:, None])
    return out


norm_cka_distance = norm_map_r2_distance  # the old name, kept for existing callers


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


# -- hidden-state CKA, on the states' device ------------------------------------------------

# Token rows a hidden state is sketched to; states with at most this many tokens are kept whole (exact).
DEFAULT_SKETCH_ROWS = 512
# Error bound of a sketched CKA with m rows: SKETCH_ERROR_FACTOR · (1 + √2·r/m) / √m, where
# r = ‖X̃‖²‖Ỹ‖² / (‖X̃ᵀX̃‖ ‖ỸᵀỸ‖) is the pair's effective rank. The estimator's standard deviation
# is about 2ρ/√m (ρ ≤ 1) plus √2·r/m^1.5; the factor was checked on synthetic states of rank 2–96
# (tests/probe/test_faithful_cka.py), where the largest error was under 0.3 of the bound.
SKETCH_ERROR_FACTOR = 2.0


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """float64 where it is cheap and exact enough to matter (CPU), float32 on accelerators."""
    return torch.float64 if x.device.type == "cpu" else torch.float32


def _centred(x: torch.Tensor) -> torch.Tensor:
    x = x.reshape(x.shape[0], -1).to(_compute_dtype(x))
    return x - x.mean(dim=0, keepdim=True)


def _frobenius_of_product_squared(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """‖aᵀb‖²_F for a (n, d1), b (n, d2), in the d×d form or the n×n form, whichever is smaller."""
    if a.shape[1] * b.shape[1] <= a.shape[0] * a.shape[0]:
        return (a.T @ b).square().sum()
    return ((a @ a.T) * (b @ b.T)).sum()


def hidden_state_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA of two hidden states (tokens × hidden dim) on their device.

    CKA = ‖ỸᵀX̃‖²_F / (‖X̃ᵀX̃‖_F ‖ỸᵀỸ‖_F) with features centred over tokens, in the d×d Gram form
    (the n×n form when there are fewer tokens than features).
    """
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"CKA needs the same tokens on both sides, got {x.shape[0]} and {y.shape[0]}")
    xc, yc = _centred(x), _centred(y)
    xx = _frobenius_of_product_squared(xc, xc).sqrt()
    yy = _frobenius_of_product_squared(yc, yc).sqrt()
    if float(xx) == 0.0 or float(yy) == 0.0:
        return 1.0 if float(xx) == float(yy) else 0.0
    return float(_frobenius_of_product_squared(xc, yc) / (xx * yy))


_SKETCH_MATRICES: dict[tuple[int, int, int, str], torch.Tensor] = {}


def token_sketch_matrix(tokens: int, rows: int, seed: int, device: torch.device) -> torch.Tensor | None:
    """A Gaussian (rows, tokens) matrix with entries N(0, 1/rows), the same for every run; None when tokens ≤ rows.

    Drawn on the CPU from `seed`, so baseline and variant (any device) use the same one; cached.
    """
    if tokens <= rows:
        return None
    key = (tokens, rows, seed, str(device))
    if key not in _SKETCH_MATRICES:
        gen = torch.Generator("cpu").manual_seed(seed)
        matrix = torch.randn(rows, tokens, generator=gen, dtype=torch.float32) / math.sqrt(rows)
        _SKETCH_MATRICES.clear()  # one shape at a time: a sketch matrix of a real model is large
        _SKETCH_MATRICES[key] = matrix.to(device)
    return _SKETCH_MATRICES[key]


@dataclass
class StateSketch:
    """What a hidden-state comparison needs of one state: T·X̃ (X̃ itself when exact), ‖X̃‖²_F, ‖X̃ᵀX̃‖²_F."""

    rows: torch.Tensor | None  # (m, d), or (n, d) when exact; None while kept in a bank
    frobenius2: torch.Tensor  # ‖X̃‖²_F, exact
    gram2: torch.Tensor  # ‖X̃ᵀX̃‖²_F: exact, or debiased from the sketch
    exact: bool


def sketch_state(x: torch.Tensor, rows: int = DEFAULT_SKETCH_ROWS, seed: int = 0) -> StateSketch:
    """Sketch one hidden state (tokens, d) on its device; exact (no sketch) when tokens ≤ rows."""
    xc = _centred(x)
    matrix = token_sketch_matrix(xc.shape[0], rows, seed, xc.device)
    frobenius2 = xc.square().sum()
    if matrix is None:
        return StateSketch(xc, frobenius2, _frobenius_of_product_squared(xc, xc), exact=True)
    sketched = matrix.to(xc.dtype) @ xc
    return StateSketch(sketched, frobenius2, _debiased(sketched, sketched, frobenius2, frobenius2, rows), exact=False)


def _debiased(a: torch.Tensor, b: torch.Tensor, fa: torch.Tensor, fb: torch.Tensor, m: int) -> torch.Tensor:
    """Unbiased ‖X̃ᵀỸ‖²_F from Gaussian sketches a = T·X̃, b = T·Ỹ: E‖aᵀb‖² = (1 + 1/m)‖X̃ᵀỸ‖² + ‖X̃‖²‖Ỹ‖²/m."""
    return (_frobenius_of_product_squared(a, b) - fa * fb / m) / (1.0 + 1.0 / m)


def sketched_cka(a: StateSketch, b: StateSketch) -> tuple[float, float]:
    """(CKA, error bound) of two sketched states; the bound is 0 when both are exact.

    Both must come from the same sketch matrix (same token count, rows and seed).
    """
    if a.exact != b.exact or a.rows.shape[0] != b.rows.shape[0]:
        raise ValueError("the two states were sketched differently")
    rows_b = b.rows.to(a.rows.device, a.rows.dtype)
    if a.exact:
        cross = _frobenius_of_product_squared(a.rows, rows_b)
    else:
        cross = _debiased(a.rows, rows_b, a.frobenius2, b.frobenius2.to(a.frobenius2.device), a.rows.shape[0])
    gram_a, gram_b = float(a.gram2), float(b.gram2)
    if gram_a <= 0.0 or gram_b <= 0.0:
        return (1.0 if gram_a == gram_b else 0.0), 0.0
    denominator = math.sqrt(gram_a * gram_b)
    cka = min(1.0, max(0.0, float(cross) / denominator))
    if a.exact:
        return cka, 0.0
    m = a.rows.shape[0]
    effective_rank = float(a.frobenius2) * float(b.frobenius2) / denominator
    return cka, SKETCH_ERROR_FACTOR * (1.0 + math.sqrt(2.0) * effective_rank / m) / math.sqrt(m)


class HiddenStateSketcher:
    """A block-output observer (a `BlockRewrite` that changes nothing) for the baseline of a comparison.

    Keeps, per (step, pass, layer) it is asked for, the sketch of batch member `member`'s hidden
    state: m × d numbers (the whole state when it has ≤ m tokens) in a `HiddenStateBank`, host
    memory up to its budget and files beyond. `close()` frees them.
    """

    def __init__(
        self,
        steps: set[int] | None,
        passes: str = "cond",
        rows: int = DEFAULT_SKETCH_ROWS,
        seed: int = 0,
        member: int = 0,
        bank: HiddenStateBank | None = None,
    ):
        self.steps = steps
        self.passes = passes
        self.rows = rows
        self.seed = seed
        self.member = member
        self.bank = bank if bank is not None else HiddenStateBank()  # an empty bank is falsy
        self.sketches: dict[tuple[int, str, int], StateSketch] = {}  # rows are in the bank, not here

    def wanted(self, step: int, pass_name: str | None) -> bool:
        return (self.steps is None or step in self.steps) and wants_pass(self.passes, pass_name)

    def __call__(self, step: int, expert: str, pass_name: str, layer: int, output: torch.Tensor):
        if self.wanted(step, pass_name):
            key = (step, pass_name, layer)
            sketch = sketch_state(output[self.member], self.rows, self.seed)
            self.bank.put(key, sketch.rows)
            self.sketches[key] = StateSketch(None, sketch.frobenius2.cpu(), sketch.gram2.cpu(), sketch.exact)
        return None

    def get(self, key: tuple[int, str, int], device: torch.device) -> StateSketch | None:
        """The stored sketch of `key` with its rows on `device`, or None if it was not kept."""
        sketch = self.sketches.get(key)
        if sketch is None:
            return None
        rows = self.bank.get(key, device)
        return StateSketch(rows, sketch.frobenius2.to(device), sketch.gram2, sketch.exact)

    def close(self) -> None:
        self.bank.close()
        self.sketches.clear()


class HiddenStateCKA:
    """A block-output observer for a variant: 1 − CKA of its hidden states against a baseline's sketches.

    Computed on the variant's device while its forward runs; only scalars are kept.
    """

    def __init__(self, baseline: HiddenStateSketcher, member: int = 0):
        self.baseline = baseline
        self.member = member
        self.results: dict[tuple[int, str, int], tuple[float, float]] = {}  # key → (1 − CKA, error bound)

    def __call__(self, step: int, expert: str, pass_name: str, layer: int, output: torch.Tensor):
        key = (step, pass_name, layer)
        stored = self.baseline.get(key, output.device)
        if stored is not None:
            mine = sketch_state(output[self.member], self.baseline.rows, self.baseline.seed)
            cka, bound = sketched_cka(stored, mine)
            self.results[key] = (1.0 - cka, bound)
        return None

    def table(self, layers: list[int], steps: list[int], pass_name: str) -> tuple[np.ndarray, np.ndarray]:
        """(1 − CKA, error bound), each (L, S); NaN where a (step, layer) was not compared."""
        distance = np.full((len(layers), len(steps)), np.nan)
        bound = np.full((len(layers), len(steps)), np.nan)
        for li, layer in enumerate(layers):
            for si, step in enumerate(steps):
                if (step, pass_name, layer) in self.results:
                    distance[li, si], bound[li, si] = self.results[(step, pass_name, layer)]
        return distance, bound
