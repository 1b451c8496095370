"""Small helpers of the generator: distributions, colour maps, atomic files, imports.

Randomness: every helper here draws from numpy's *global* random state
(``np.random``), directly or through scipy's ``rvs()`` without a
``random_state`` (scipy then uses the same global ``RandomState``). Seeding
with ``np.random.seed(s)`` therefore makes sampling reproducible.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import math
from collections.abc import Callable, Iterator, Mapping
from functools import lru_cache
from typing import Any, TypeVar

import numpy as np
import scipy.stats

from two4two.files import (  # re-exported: two4two's modules write through utils
    append_line,
    atomic_write_bytes,
    atomic_write_lines,
    atomic_write_text,
)

RGBAColor = tuple[float, float, float, float]
"""An RGBA colour, four floats in [0, 1] (as matplotlib's colour maps return)."""

T = TypeVar("T")
"""A generic type variable (upstream two4two exports it from here)."""

FULL_CIRCLE: float = 2 * math.pi
"""A full turn in radians."""
QUARTER_CIRCLE: float = math.pi / 2
"""A quarter turn in radians."""

__all__ = [
    "FULL_CIRCLE",
    "QUARTER_CIRCLE",
    "RGBAColor",
    "T",
    "TruncatedNormal",
    "append_line",
    "atomic_write_bytes",
    "atomic_write_lines",
    "atomic_write_text",
    "color_from_cmap",
    "discrete",
    "get",
    "get_cmap",
    "import_class",
    "import_object",
    "keyword_aliases",
    "numpy_to_python_scalar",
    "random_source",
    "rejection_sample",
    "sample_value",
    "seeded",
    "split_class",
    "supports_iteration",
    "truncated_normal",
    "uniform",
]


# --------------------------------------------------------------------------- distributions


_FrozenContinuous: Any = type(scipy.stats.truncnorm(0.0, 1.0))



def random_source(random_state: Any = None) -> Any:
    """What draws the numbers, following scipy's ``random_state`` convention.

    ``None``: numpy's global RNG (:mod:`numpy.random`); an int: a new
    ``RandomState`` seeded with it; otherwise the given ``RandomState`` /
    ``Generator`` itself.
    """
    if random_state is None:
        return np.random
    if isinstance(random_state, int | np.integer):
        return np.random.RandomState(random_state)
    return random_state

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
        normal = random_source(random_state).normal
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


def truncated_normal(mean: float = 0.0, std: float = 1.0, lower: float = -3.0,
                     upper: float = 2.0) -> Any:
    """A normal distribution N(mean, std^2) truncated to ``[lower, upper]``.

    The defaults (N(0, 1) on [-3, 2]) are upstream two4two's.

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


class discrete:  # lower case: upstream two4two's public name
    """A discrete distribution over arbitrary values, built from ``{value: probability}``.

    Probabilities are normalised to sum to 1. Like a frozen scipy
    distribution it has :meth:`rvs`, :meth:`pmf` and :meth:`logpmf`; calling
    it draws one value. Draws use numpy's global random state unless
    ``random_state`` is given.
    """

    def __init__(self, value_to_probs: Mapping[Any, float]) -> None:
        if not value_to_probs:
            raise ValueError("discrete: need at least one value")
        self.values = list(value_to_probs)
        weights = np.asarray(list(value_to_probs.values()), dtype=np.float64)
        if np.any(weights < 0) or not np.isfinite(weights).all() or weights.sum() <= 0:
            raise ValueError(f"discrete: invalid probabilities {dict(value_to_probs)}")
        self.probabilities = weights / weights.sum()
        self.value_to_probs = dict(zip(self.values, self.probabilities.tolist(), strict=True))

    def __call__(self) -> Any:
        return self.rvs()

    def rvs(self, size: int | tuple[int, ...] | None = None, random_state: Any = None) -> Any:
        """One value (``size=None``) or a numpy array of ``size`` values (dtype object
        unless the values are numbers)."""
        choice = random_source(random_state).choice
        index = choice(len(self.values), p=self.probabilities, size=size)
        if size is None:
            return self.values[int(index)]
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool)
                      for v in self.values)
        return np.asarray(self.values, dtype=None if numeric else object)[index]

    def _pmf_one(self, k: Any) -> float:
        try:
            return float(self.value_to_probs.get(k, 0.0))
        except TypeError:  # unhashable
            return 0.0

    def pmf(self, k: Any) -> Any:
        """Probability of value ``k`` (0 for a value not in the table); element-wise for a
        list/array of values."""
        if isinstance(k, list | tuple | np.ndarray):
            return np.array([self._pmf_one(v) for v in k], dtype=np.float64)
        return self._pmf_one(k)

    def logpmf(self, k: Any) -> Any:
        """``log(pmf(k))`` (-inf for a value not in the table)."""
        with np.errstate(divide="ignore"):
            return np.log(self.pmf(k))

    def __repr__(self) -> str:
        pairs = ", ".join(
            f"{v!r}: {p:g}" for v, p in zip(self.values, self.probabilities, strict=True))
        return f"discrete({{{pairs}}})"


def numpy_to_python_scalar(x: Any) -> Any:
    """Plain Python scalars instead of numpy scalars / 0-d or 1-element arrays; other
    values are returned unchanged."""
    if isinstance(x, np.ndarray) and x.size == 1:
        x = x.reshape(()).item()
    if isinstance(x, np.generic):
        x = x.item()
    return x


_to_python = numpy_to_python_scalar


def get(maybe_none: T | None, default: T) -> T:
    """``maybe_none`` unless it is None, else ``default``."""
    return default if maybe_none is None else maybe_none


def supports_iteration(value: Any) -> bool:
    """Whether ``iter(value)`` works (lists, tuples, arrays, strings, generators, ...)."""
    try:
        iter(value)
    except TypeError:
        return False
    return True


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


def color_from_cmap(cmap: Any, value: float) -> RGBAColor:
    """RGBA of colour map ``cmap`` (a matplotlib colour map or its name) at ``value`` in
    [0, 1] (four Python floats)."""
    if isinstance(cmap, str):
        cmap = get_cmap(cmap)
    elif not callable(cmap):
        raise ValueError(f"expected a matplotlib colour map or its name, got {cmap!r}")
    rgba = cmap(float(value))
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


def split_class(module_dot_class: str) -> tuple[str, str]:
    """``'package.module.Name'`` -> ``('package.module', 'Name')``."""
    module, _, name = module_dot_class.rpartition(".")
    return module, name


def import_class(module: str, cls_name: str) -> Any:
    """``cls_name`` from module ``module`` (see :func:`import_object` for the errors)."""
    return import_object(f"{module}.{cls_name}")


# --------------------------------------------------------------------------- keyword names


def keyword_aliases(**aliases: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Let a function also accept old keyword names: ``@keyword_aliases(attr="attribute")``.

    A call with ``attr=x`` becomes ``attribute=x``; passing both is a TypeError.
    """

    def decorate(function: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> T:
            for alias, name in aliases.items():
                if alias in kwargs:
                    if name in kwargs:
                        raise TypeError(f"{function.__qualname__}() got both {name!r} and its "
                                        f"alias {alias!r}; pass only {name!r}")
                    kwargs[name] = kwargs.pop(alias)
            return function(*args, **kwargs)

        return wrapper

    return decorate


# --------------------------------------------------------------------------- files
