"""Small statistics toolbox: seeded percentile bootstrap and vectorised estimators.

Every estimator here works along the **last axis** of its inputs, so the same
function gives the point estimate (inputs ``[n]`` -> scalar) and all bootstrap
replicates at once (inputs ``[B, n]`` -> ``[B]``). Everything is computed in
float64.

The bootstrap resamples the ``n`` observations (or, for inputs ``[n, m]``, the
``n`` rows as clusters of ``m`` observations each) with replacement, ``B``
times, from ``numpy.random.default_rng(seed)``, and reports the percentile
interval: the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the
replicates. Replicates that are undefined (e.g. a correlation of a resample
with no variance) are ignored; their share is reported.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import numpy as np

from dubfiv.errors import ParameterError

__all__ = [
    "Estimate",
    "LinearFit",
    "Statistic",
    "bootstrap",
    "bootstrap_indices",
    "linear_fit",
    "mean",
    "mean_abs",
    "pearson",
    "slope",
]

Statistic = Callable[..., np.ndarray]
"""A vectorised estimator: arrays ``[..., n]`` -> values ``[...]`` (along the last axis)."""

_MAX_CHUNK_VALUES = 5_000_000  # values gathered per input and chunk of replicates


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A point estimate with a bootstrap interval.

    Attributes:
        value: the statistic on the full sample.
        low, high: the percentile interval at ``level``.
        level: the interval's nominal coverage (0.95).
        n: number of observations (clusters for clustered data).
        n_bootstrap: number of replicates drawn.
        undefined_share: share of replicates where the statistic was NaN.
    """

    value: float
    low: float
    high: float
    level: float
    n: int
    n_bootstrap: int
    undefined_share: float = 0.0

    def covers(self, x: float) -> bool:
        """``low <= x <= high``."""
        return self.low <= x <= self.high

    def to_dict(self) -> dict[str, float | int]:
        """Plain JSON-able dict (NaN becomes ``None``)."""
        out: dict[str, float | int] = {}
        for key, value in dataclasses.asdict(self).items():
            out[key] = None if isinstance(value, float) and math.isnan(value) else value
        return out


# --------------------------------------------------------------------------- estimators


def mean(x: np.ndarray) -> np.ndarray:
    """Mean along the last axis."""
    return np.mean(x, axis=-1)


def mean_abs(x: np.ndarray) -> np.ndarray:
    """Mean of ``|x|`` along the last axis."""
    return np.mean(np.abs(x), axis=-1)


def _centred(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    return x - x.mean(axis=-1, keepdims=True), y - y.mean(axis=-1, keepdims=True)


def pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation of ``x`` and ``y`` along the last axis (NaN if one is constant)."""
    dx, dy = _centred(x, y)
    sxy = np.sum(dx * dy, axis=-1)
    sxx = np.sum(dx * dx, axis=-1)
    syy = np.sum(dy * dy, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = sxy / np.sqrt(sxx * syy)
    return np.where((sxx > 0) & (syy > 0), np.clip(r, -1.0, 1.0), np.nan)


def slope(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares slope of ``y`` on ``x`` along the last axis (NaN if ``x`` is constant)."""
    dx, dy = _centred(x, y)
    sxx = np.sum(dx * dx, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        b = np.sum(dx * dy, axis=-1) / sxx
    return np.where(sxx > 0, b, np.nan)


@dataclasses.dataclass(frozen=True)
class LinearFit:
    """Ordinary least squares ``y ~ intercept + slope * x`` (float64).

    Attributes:
        slope: dy/dx in the units of y per unit of x.
        intercept: y at x = 0.
        r: Pearson correlation of x and y.
        r2: coefficient of determination (``r**2`` for a simple regression).
        slope_stderr: standard error of the slope (n - 2 degrees of freedom).
        n: number of points.
    """

    slope: float
    intercept: float
    r: float
    r2: float
    slope_stderr: float
    n: int

    def to_dict(self) -> dict[str, float | int | None]:
        return {k: None if isinstance(v, float) and math.isnan(v) else v
                for k, v in dataclasses.asdict(self).items()}


def linear_fit(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> LinearFit:
    """Fit ``y ~ a + b x`` by least squares in closed form (x, y: ``[n]``).

    NaN where undefined (``x`` constant: everything; ``y`` constant: ``r``).
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"x {x.shape} and y {y.shape} differ in length")
    n = int(x.size)
    b = float(slope(x, y)) if n >= 2 else math.nan
    a = float(y.mean() - b * x.mean()) if n >= 1 else math.nan
    r = float(pearson(x, y)) if n >= 2 else math.nan
    dx = x - x.mean() if n else x
    residuals = y - (a + b * x)
    sxx = float(np.sum(dx * dx))
    syy = float(np.sum((y - y.mean()) ** 2)) if n else 0.0
    if n >= 2 and syy > 0 and math.isfinite(b):
        r2 = 1.0 - float(np.sum(residuals ** 2)) / syy
    else:
        r2 = math.nan
    if n > 2 and sxx > 0:
        stderr = math.sqrt(float(np.sum(residuals ** 2)) / (n - 2) / sxx)
    else:
        stderr = math.nan
    return LinearFit(slope=b, intercept=a, r=r, r2=r2, slope_stderr=stderr, n=n)


# --------------------------------------------------------------------------- bootstrap


def bootstrap_indices(n: int, n_bootstrap: int, seed: int) -> np.ndarray:
    """Resampling indices ``int64 [n_bootstrap, n]`` drawn from ``default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(n_bootstrap, n), dtype=np.int64)


def _flatten_clusters(a: np.ndarray, clustered: bool) -> np.ndarray:
    """``[..., n, m]`` -> ``[..., n * m]`` for clustered data; else the identity."""
    return a.reshape(*a.shape[:-2], -1) if clustered else a


def bootstrap(
    statistic: Statistic,
    arrays: Sequence[np.ndarray],
    n_bootstrap: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> Estimate:
    """Percentile bootstrap interval of ``statistic(*arrays)``.

    Args:
        statistic: a vectorised estimator working along the last axis
            (``[n] -> scalar`` and ``[B, n] -> [B]``), e.g. :func:`mean_abs`.
        arrays: the data, all ``[n]`` (independent observations) or all
            ``[n, m]`` (``n`` clusters of ``m`` observations; clusters are
            resampled whole and the statistic sees ``[.., n * m]``).
        n_bootstrap: number of replicates ``B`` (>= 1).
        seed: seed of ``numpy.random.default_rng`` (the same seed, data and
            ``B`` give the same interval).
        level: nominal coverage of the interval, in (0, 1).

    Returns:
        :class:`Estimate` (value on the full data; interval from the replicates).

    Raises:
        ValueError: empty data, mismatched lengths, ``level`` outside (0, 1) or
            ``n_bootstrap < 1``.
    """
    arrays = [np.asarray(a, dtype=np.float64) for a in arrays]
    if not arrays:
        raise ParameterError("bootstrap needs at least one array")
    n = arrays[0].shape[0] if arrays[0].ndim else 0
    shapes = {a.shape for a in arrays}
    if n == 0 or len(shapes) != 1 or arrays[0].ndim not in (1, 2):
        raise ParameterError(f"bootstrap needs non-empty arrays of one shape [n] or [n, m]; "
                         f"got {sorted(shapes)}")
    if not 0.0 < level < 1.0:
        raise ParameterError(f"`level` must be in (0, 1), got {level}")
    if n_bootstrap < 1:
        raise ParameterError(f"`n_bootstrap` must be >= 1, got {n_bootstrap}")
    clustered = arrays[0].ndim == 2
    value = float(statistic(*[_flatten_clusters(a, clustered) for a in arrays]))
    indices = bootstrap_indices(n, n_bootstrap, seed)
    per_replicate = arrays[0][0].size
    chunk = max(1, _MAX_CHUNK_VALUES // max(1, n * per_replicate))
    replicates = np.empty(n_bootstrap, dtype=np.float64)
    for start in range(0, n_bootstrap, chunk):
        idx = indices[start:start + chunk]
        gathered = [_flatten_clusters(a[idx], clustered) for a in arrays]
        replicates[start:start + chunk] = statistic(*gathered)
    defined = replicates[np.isfinite(replicates)]
    undefined = 1.0 - defined.size / n_bootstrap
    if defined.size == 0:
        low = high = math.nan
    else:
        low, high = np.quantile(defined, [(1 - level) / 2, (1 + level) / 2])
    return Estimate(value=value, low=float(low), high=float(high), level=level, n=int(n),
                    n_bootstrap=n_bootstrap, undefined_share=float(undefined))
