"""Small helpers of the generator: distributions, colour maps, atomic files, imports.

Randomness: every helper here draws from numpy's *global* random state
(``np.random``), directly or through scipy's ``rvs()`` without a
``random_state`` (scipy then uses the same global ``RandomState``). Seeding
with ``np.random.seed(s)`` therefore makes sampling reproducible.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import scipy.stats

RGBAColor = tuple[float, float, float, float]
"""An RGBA colour, four floats in [0, 1] (as matplotlib's colour maps return)."""

__all__ = [
    "RGBAColor",
    "TruncatedNormal",
    "atomic_write_bytes",
    "atomic_write_lines",
    "atomic_write_text",
    "color_from_cmap",
    "discrete",
    "get_cmap",
    "import_object",
    "rejection_sample",
    "sample_value",
    "seeded",
    "truncated_normal",
    "uniform",
]


# --------------------------------------------------------------------------- distributions


_FrozenContinuous: Any = type(scipy.stats.truncnorm(0.0, 1.0))


class TruncatedNormal(_FrozenContinuous):
    """A frozen ``scipy.stats.truncnorm`` whose ``rvs`` draws by rejection from the normal.

    Everything but ``rvs`` (pdf, cdf, mean, support, ...) is scipy's truncnorm.
    Rejection sampling (draw N(mean, std^2) until the value lies in
    ``[lower, upper]``) is how the original generator truncated, and it is much
    faster than scipy's inverse-CDF method for the wide intervals used here;
    for intervals with less than 1% of the normal's mass scipy's method is used.
    """

    def __init__(self, mean: float, std: float, lower: float, upper: float) -> None:
        if not std > 0:
            raise ValueError(f"truncated_normal: std must be > 0, got {std}")
        if not lower < upper:
            raise ValueError(f"truncated_normal: need lower < upper, got [{lower}, {upper}]")
        a, b = (lower - mean) / std, (upper - mean) / std
        super().__init__(scipy.stats.truncnorm, a, b, loc=mean, scale=std)
        self.bounds = (float(mean), float(std), float(lower), float(upper))
        self.mass = float(scipy.stats.norm.cdf(b) - scipy.stats.norm.cdf(a))

    def rvs(self, size: Any = None, random_state: Any = None) -> Any:
        """Draw ``size`` values (a float if ``size`` is None); global numpy RNG by default."""
        if self.mass < 0.01:
            return super().rvs(size=size, random_state=random_state)
        if random_state is None:
            normal = np.random.normal
        elif isinstance(random_state, int | np.integer):
            normal = np.random.RandomState(random_state).normal
        else:
            normal = random_state.normal
        mean, std, lower, upper = self.bounds
        n = int(np.prod(size)) if size is not None else 1
        accepted: list[np.ndarray] = []
        count = 0
        while count < n:
            batch = max(2 * int((n - count) / self.mass) + 1, 4) if n > 1 else 1
            draws = normal(mean, std, size=batch)
            draws = draws[(draws >= lower) & (draws <= upper)]
            accepted.append(draws)
            count += len(draws)
        values = np.concatenate(accepted)[:n]
        return float(values[0]) if size is None else values.reshape(size)


def truncated_normal(mean: float, std: float, lower: float, upper: float) -> Any:
    """A normal distribution N(mean, std^2) truncated to ``[lower, upper]``.

    Returns:
        a frozen ``scipy.stats.truncnorm`` (:class:`TruncatedNormal`: ``.pdf``,
        ``.cdf``, ... as scipy's; ``.rvs()`` by rejection sampling).
    """
    return TruncatedNormal(mean, std, lower, upper)


def uniform(lower: float, upper: float) -> Any:
    """The uniform distribution on ``[lower, upper]`` (a frozen ``scipy.stats.uniform``).

    scipy's own ``uniform(loc, scale)`` covers ``[loc, loc + scale]``; this
    helper takes the interval's ends to avoid that confusion.
    """
    if not lower < upper:
        raise ValueError(f"uniform: need lower < upper, got [{lower}, {upper}]")
    return scipy.stats.uniform(loc=lower, scale=upper - lower)


class _Discrete:
    """A discrete distribution over arbitrary values; call it (or ``.rvs()``) to draw."""

    def __init__(self, probabilities: Mapping[Any, float]) -> None:
        if not probabilities:
            raise ValueError("discrete: need at least one value")
        self.values = list(probabilities)
        weights = np.asarray(list(probabilities.values()), dtype=np.float64)
        if np.any(weights < 0) or not np.isfinite(weights).all() or weights.sum() <= 0:
            raise ValueError(f"discrete: invalid probabilities {dict(probabilities)}")
        self.probabilities = weights / weights.sum()

    def __call__(self) -> Any:
        index = np.random.choice(len(self.values), p=self.probabilities)
        return self.values[index]

    def rvs(self) -> Any:
        return self()

    def __repr__(self) -> str:
        pairs = ", ".join(
            f"{v!r}: {p:g}" for v, p in zip(self.values, self.probabilities, strict=True))
        return f"discrete({{{pairs}}})"


def discrete(probabilities: Mapping[Any, float]) -> Callable[[], Any]:
    """A callable that draws one of the keys with the given (normalised) probabilities."""
    return _Discrete(probabilities)


def _to_python(value: Any) -> Any:
    """Plain Python scalars instead of numpy scalars / 0-d or 1-element arrays."""
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(()).item()
    if isinstance(value, np.generic):
        value = value.item()
    return value


def sample_value(dist: Any) -> Any:
    """Draw one value from ``dist``: a scipy distribution, a callable or a constant."""
    if hasattr(dist, "rvs"):
        return _to_python(dist.rvs())
    if callable(dist):
        return _to_python(dist())
    return dist


def rejection_sample(
    dist: Any, accept: Callable[[Any], bool], max_tries: int = 100_000
) -> Any:
    """Draw from ``dist`` until ``accept(value)`` holds (truncation by rejection).

    Raises:
        RuntimeError: if no value was accepted in ``max_tries`` draws (the
            accepted region has (almost) no probability mass).
    """
    for _ in range(max_tries):
        value = sample_value(dist)
        if accept(value):
            return value
    raise RuntimeError(
        f"rejection sampling from {dist!r} accepted nothing in {max_tries} draws"
    )


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed numpy's global random state for a block; restore the previous state after it."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


# --------------------------------------------------------------------------- colours


@lru_cache(maxsize=32)
def get_cmap(name: str) -> Any:
    """The matplotlib colour map called ``name`` (e.g. ``coolwarm``, ``seismic``)."""
    import matplotlib

    try:
        return matplotlib.colormaps[name]
    except KeyError:
        raise ValueError(f"unknown matplotlib colour map {name!r}") from None


def color_from_cmap(name: str, value: float) -> RGBAColor:
    """RGBA of colour map ``name`` at ``value`` in [0, 1] (four Python floats)."""
    rgba = get_cmap(name)(float(value))
    return tuple(float(c) for c in rgba)  # type: ignore[return-value]


# --------------------------------------------------------------------------- imports


def import_object(dotted_path: str) -> Any:
    """Import ``package.module.Name`` and return ``Name``.

    Raises:
        ImportError: with a message naming the path if the module or the name
            cannot be found.
    """
    module_name, _, name = dotted_path.rpartition(".")
    if not module_name or not name:
        raise ImportError(f"{dotted_path!r} is not a dotted path like 'package.module.Name'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ImportError(f"cannot import module {module_name!r} of {dotted_path!r}: {error}"
                          ) from error
    try:
        return getattr(module, name)
    except AttributeError:
        raise ImportError(f"module {module_name!r} has no attribute {name!r}") from None


# --------------------------------------------------------------------------- files


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same folder + rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; use the usual permissions
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_write_bytes`)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_lines(path: str | os.PathLike, lines: Iterable[str]) -> Path:
    """Write ``lines`` (each without its newline) atomically, one per line."""
    return atomic_write_text(path, "".join(f"{line}\n" for line in lines))
