"""Inverse scale space: on sparse linear regression DessiLBI selects the true features first.

Γ's support grows along the iterations; a coordinate's entry time is inversely
related to its importance. With 5 true coefficients of decreasing size among 50
features, the true ones must enter before any noise feature, largest first.
"""
from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from growth.optim.dessilbi import DessiLBI

N_SAMPLES, N_FEATURES = 200, 50
TRUE_COEFFICIENTS = [3.0, 2.0, 1.4, 1.0, 0.7]  # decreasing size
NOISE_STD = 0.5
STEPS = 1000


def sparse_regression(seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """X (n×p, Gaussian), y = Xβ + noise, and the indices of β's support ordered by size."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N_SAMPLES, N_FEATURES, generator=g, dtype=torch.float64)
    support = torch.randperm(N_FEATURES, generator=g)[: len(TRUE_COEFFICIENTS)]
    beta = torch.zeros(N_FEATURES, dtype=torch.float64)
    beta[support] = torch.tensor(TRUE_COEFFICIENTS, dtype=torch.float64)
    y = x @ beta + NOISE_STD * torch.randn(N_SAMPLES, generator=g, dtype=torch.float64)
    return x, y, support


def entry_iterations(x: Tensor, y: Tensor, **hyper: float) -> tuple[Tensor, list[Tensor]]:
    """Full-batch DessiLBI on ½·mean squared error; first iteration each Γ_j ≠ 0 (−1: never)."""
    model = nn.Linear(N_FEATURES, 1, bias=False).double()
    nn.init.zeros_(model.weight)
    optimizer = DessiLBI(model.parameters(), lam=1.0, **hyper)
    first = torch.full((N_FEATURES,), -1)
    supports = []
    for step in range(STEPS):
        optimizer.zero_grad()
        loss = 0.5 * (model(x).squeeze(1) - y).pow(2).mean()
        loss.backward()
        optimizer.step()
        selected = optimizer.state[model.weight]["gamma"][0] != 0
        first[selected & (first < 0)] = step
        supports.append(selected.clone())
    return first, supports


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("hyper", [
    {"lr": 0.05, "kappa": 10.0, "nu": 1.0, "momentum": 0.0},
    {"lr": 0.02, "kappa": 10.0, "nu": 1.0, "momentum": 0.9},
    {"lr": 0.5, "kappa": 1.0, "nu": 10.0, "momentum": 0.0},
], ids=["plain", "momentum", "kappa1"])
def test_true_features_enter_first_and_largest_first(seed: int, hyper: dict[str, float]) -> None:
    x, y, support = sparse_regression(seed)
    first, supports = entry_iterations(x, y, **hyper)

    true_entries = first[support]
    assert (true_entries >= 0).all(), f"a true feature never entered: {true_entries.tolist()}"
    noise = torch.ones(N_FEATURES, dtype=torch.bool)
    noise[support] = False
    noise_entries = first[noise]
    entered_noise = noise_entries[noise_entries >= 0]
    assert len(entered_noise) > 0, "the path should reach noise features eventually; run longer"
    assert true_entries.max() < entered_noise.min(), (true_entries.tolist(), entered_noise.min().item())

    # larger coefficients enter earlier (ties allowed: two may cross λ in the same step)
    assert true_entries.tolist() == sorted(true_entries.tolist())
    assert true_entries[0] < true_entries[-1]

    # stopped between the last true and the first noise entry, Γ's support is exactly the truth
    early = supports[int(true_entries.max())]
    assert set(early.nonzero().flatten().tolist()) == set(support.tolist())
