"""Learning-rate schedules against closed-form identities (independent of the implementation)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dubfiv import schedules
from dubfiv.config import OptimizerConfig, ScheduleConfig

N = 2_500_000
S = np.linspace(0, N, 21)


@pytest.mark.parametrize("s", S)
def test_cosine_is_cos_squared(s: float) -> None:
    # (cos(x) + 1) / 2 == cos(x/2)^2
    assert schedules.cosine(0.3, s, N) == pytest.approx(0.3 * math.cos(math.pi * s / N / 2) ** 2)


@pytest.mark.parametrize("s", S)
def test_hill_is_sin_squared(s: float) -> None:
    # (cos(2x - pi) + 1) / 2 == sin(x)^2
    expected = 0.1 * math.sin(math.pi * s / N) ** 2
    assert schedules.hill(0.1, s, N) == pytest.approx(expected, abs=1e-15)


def test_endpoints_and_peaks() -> None:
    assert schedules.cosine(5e-5, 0, N) == 5e-5
    assert schedules.cosine(5e-5, N, N) == pytest.approx(0.0, abs=1e-20)
    assert schedules.cosine(5e-5, N / 2, N) == pytest.approx(2.5e-5)
    assert schedules.hill(0.1, 0, N) == pytest.approx(0.0, abs=1e-20)
    assert schedules.hill(0.1, N / 2, N) == pytest.approx(0.1)
    assert schedules.hill(0.1, N, N) == pytest.approx(0.0, abs=1e-20)
    # beyond the budget: clipped
    assert schedules.cosine(1.0, 2 * N, N) == pytest.approx(0.0, abs=1e-20)


def test_hill_mean_is_half_the_peak() -> None:
    s = np.linspace(0, N, 100_001)
    values = np.array([schedules.hill(2.0, x, N) for x in s])
    assert np.trapz(values, s) / N == pytest.approx(1.0, rel=1e-6)


def test_fade_in_cosine() -> None:
    fade = 200_000
    for s in [0, 1, 50_000, 100_000, 199_999, 200_000, 1_000_000, N]:
        expected = 5e-5 * (math.cos(math.pi * s / N) + 1) / 2 * min(1.0, s / fade)
        assert schedules.fade_in_cosine(5e-5, s, N, fade) == pytest.approx(expected, abs=1e-20)
    assert schedules.fade_in_cosine(1.0, 0, N, 0) == 1.0  # no warm-up
    # rising during the warm-up, falling afterwards
    values = [schedules.fade_in_cosine(1.0, s, N, fade) for s in range(0, N, 10_000)]
    peak = int(np.argmax(values))
    assert np.all(np.diff(values[: peak + 1]) > 0) and np.all(np.diff(values[peak:]) < 0)


def test_learning_rate_dispatch_and_optimizer() -> None:
    param = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([param], lr=123.0)
    config = OptimizerConfig(name="sgd", lr=0.1, schedule=ScheduleConfig(name="hill"))
    value = schedules.set_learning_rate(opt, config, N / 4, N)
    assert value == pytest.approx(0.05)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)
    assert schedules.learning_rate(ScheduleConfig(name="constant"), 0.7, 10, N) == 0.7
    with pytest.raises(ValueError, match="total samples"):
        schedules.cosine(1.0, 0, 0)
