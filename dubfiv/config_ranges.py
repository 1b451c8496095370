"""The allowed values of the numeric config fields (:class:`Range`) and the common ones.

Each numeric field of :mod:`dubfiv.config` declares its range next to its help
text; :func:`dubfiv.config.validate` checks a config against them and the
configuration reference (``scripts/config_reference.py``) prints them.
"""

from __future__ import annotations

import dataclasses
import math

__all__ = ["AT_LEAST_1", "BETA", "NON_NEGATIVE", "POSITIVE", "PROBABILITY", "Range"]


@dataclasses.dataclass(frozen=True)
class Range:
    """The allowed values of a numeric field: finite, and within ``[low, high]``
    (``low_open`` / ``high_open`` exclude that end; ``None`` means unbounded)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def describe(self) -> str:
        """``"at least 1"``, ``"positive"``, ``"in [0, 1)"`` ..."""
        low, high = _number(self.low), _number(self.high)
        if self.high is None:
            if self.low is None:
                return "finite"
            if self.low_open:
                return "positive" if self.low == 0 else f"greater than {low}"
            return f"at least {low}"
        if self.low is None:
            return f"less than {high}" if self.high_open else f"at most {high}"
        return (f"in {'(' if self.low_open else '['}{low}, {high}"
                f"{')' if self.high_open else ']'}")

    def problem(self, value: float) -> str | None:
        """``None`` if ``value`` is allowed, else what is wrong (``must be ..., got ...``)."""
        if not math.isfinite(value):
            return f"must be a finite number, got {value!r}"
        too_low = self.low is not None and (value <= self.low if self.low_open
                                            else value < self.low)
        too_high = self.high is not None and (value >= self.high if self.high_open
                                              else value > self.high)
        return f"must be {self.describe()}, got {value!r}" if too_low or too_high else None


def _number(value: float | None) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


NON_NEGATIVE = Range(0)
AT_LEAST_1 = Range(1)
POSITIVE = Range(0, low_open=True)
PROBABILITY = Range(0, 1)
BETA = Range(0, 1, high_open=True)
