"""Hidden-state linear CKA: exact against a direct computation, sketched within its stated bound."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stepscope.probe import run_trajectory
from stepscope.probe.interventions import HiddenStateBank, LatentPerturbations
from stepscope.probe.metrics import (
    HiddenStateCKA,
    HiddenStateSketcher,
    hidden_state_cka,
    norm_map_r2_distance,
    sketch_state,
    sketched_cka,
)
from stepscope.spec import NoiseAtStep

from .helpers import BlockOutputs, inputs


def direct_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA written out in the n×n kernel (HSIC) form: tr(K̃_X K̃_Y) / (‖K̃_X‖ ‖K̃_Y‖), K̃ = H K H."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    n = x.shape[0]
    centring = np.eye(n) - np.ones((n, n)) / n
    kx, ky = centring @ (x @ x.T) @ centring, centring @ (y @ y.T) @ centring
    return float(np.trace(kx @ ky) / (np.linalg.norm(kx) * np.linalg.norm(ky)))


@pytest.mark.parametrize("tokens,features", [(50, 20), (20, 50)])
def test_hidden_state_cka_matches_the_kernel_form(tokens, features):
    g = torch.Generator().manual_seed(tokens)
    x = torch.randn(tokens, features, generator=g)
    y = x @ torch.randn(features, features, generator=g) + 0.5 * torch.randn(tokens, features, generator=g)
    assert hidden_state_cka(x, y) == pytest.approx(direct_cka(x.numpy(), y.numpy()), abs=1e-10)
    q, _ = torch.linalg.qr(torch.randn(features, features, generator=g, dtype=torch.float64))
    assert hidden_state_cka(x, 3.0 * x.double() @ q) == pytest.approx(1.0, abs=1e-10)  # rotation and scale


def test_a_state_with_few_tokens_is_kept_whole_and_exact():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(80, 24, generator=g), torch.randn(80, 24, generator=g)
    cka, bound = sketched_cka(sketch_state(x, rows=512), sketch_state(y, rows=512))
    assert bound == 0.0  # no sketching error to bound: the code sets it to 0 for a state kept whole
    assert cka == pytest.approx(direct_cka(x.numpy(), y.numpy()), abs=1e-12)


def _synthetic_pair(seed: int, rank: int, noise: float, tokens: int = 4096, features: int = 96):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(tokens, rank, generator=g) @ torch.randn(rank, features, generator=g)
    x = x + 0.1 * torch.randn(tokens, features, generator=g)
    return x, x + noise * x.std() * torch.randn(tokens, features, generator=g)


@pytest.mark.parametrize("rank", [2, 8, 32, 96])
@pytest.mark.parametrize("noise", [0.3, 1.0, 3.0])
def test_a_sketched_cka_is_within_its_stated_bound(rank, noise):
    x, y = _synthetic_pair(rank * 10 + int(noise * 10), rank, noise)
    exact = hidden_state_cka(x, y)
    cka, bound = sketched_cka(sketch_state(x, rows=512, seed=3), sketch_state(y, rows=512, seed=3))
    assert 0.0 < bound < 0.15  # 2·(1 + √2·r/m)/√m at m = 512: informative, not vacuous
    assert abs(cka - exact) <= bound, (cka, exact, bound)


def test_the_norm_map_distance_is_blind_to_direction_and_hidden_state_cka_is_not():
    g = torch.Generator().manual_seed(7)
    x = torch.randn(200, 32, generator=g)
    directions = torch.nn.functional.normalize(torch.randn(200, 32, generator=g), dim=1)
    y = directions * x.norm(dim=1, keepdim=True)  # every token keeps its norm, not its direction
    norms = x.norm(dim=1).numpy()[None, None, :]
    assert norm_map_r2_distance(norms, y.norm(dim=1).numpy()[None, None, :])[0, 0] == pytest.approx(0.0, abs=1e-9)
    assert 1.0 - hidden_state_cka(x, y) > 0.5


def test_hidden_state_cka_of_a_variant_on_the_tiny_model_is_exact(tiny):
    layers = list(range(tiny.info.num_layers))
    config = tiny.pipe.transformer.config
    state_bytes = 80 * config.num_attention_heads * config.attention_head_dim * 8  # 80 tokens, float64 on CPU
    bank = HiddenStateBank(memory_budget=5 * state_bytes)  # five states in memory, the rest spilled to files
    sketcher = HiddenStateSketcher(steps=None, passes="cond", bank=bank)
    with BlockOutputs(tiny) as base_states:
        run_trajectory(tiny, inputs(steps=4), rewrites=[(layers, sketcher)])
    comparison = HiddenStateCKA(sketcher)
    noise = LatentPerturbations([NoiseAtStep(steps=[2], strength=1.0)])
    with BlockOutputs(tiny) as variant_states:
        run_trajectory(tiny, inputs(steps=4), perturbations=noise, rewrites=[(layers, comparison)])
    base_forwards = base_states.per_forward(len(layers))
    variant_forwards = variant_states.per_forward(len(layers))
    assert len(comparison.results) == 4 * len(layers)
    for step in range(4):
        base, variant = base_forwards[2 * step][1], variant_forwards[2 * step][1]  # cond pass
        for layer in layers:
            expected = 1.0 - direct_cka(base[layer][0].numpy(), variant[layer][0].numpy())
            distance, bound = comparison.results[(step, "cond", layer)]
            assert bound == 0.0  # 80 tokens ≤ the sketch's rows: kept whole, no sketching error to bound
            assert distance == pytest.approx(expected, abs=1e-5)
            if step < 2:
                assert distance == pytest.approx(0.0, abs=1e-9)
    distance, _ = comparison.table(layers, [0, 1, 2, 3], "cond")
    assert distance.shape == (len(layers), 4) and distance[:, 2:].max() > 1e-3
    assert len(bank._memory) == 5 and len(bank._on_disk) == 4 * len(layers) - 5
    sketcher.close()
    assert len(bank) == 0
