"""Limits and choices of the collector, in one dataclass."""

from __future__ import annotations

import dataclasses

from dubfiv.errors import ParameterError

__all__ = ["CollectorSettings"]


@dataclasses.dataclass(frozen=True)
class CollectorSettings:
    """How the collector treats requests.

    ``max_body_bytes``: largest request body in bytes (checked on ``Content-Length`` and
    while the body streams in; larger requests get 413 and store nothing).
    ``max_records_per_page``: most trial records one page save may carry.
    ``require_pages_to_finish``: ``end: finished`` needs the attribute page and every
    ``task_<n>`` page stored (so the completion code is not handed out for nothing).
    ``seed``: seed of the tie-breaking between arms (``None``: the system's randomness).
    """

    max_body_bytes: int = 256 * 1024
    max_records_per_page: int = 500
    require_pages_to_finish: bool = True
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.max_body_bytes < 1024:
            raise ParameterError(f"max_body_bytes {self.max_body_bytes} must be at least 1024",
                                 "max_body_bytes")
        if self.max_records_per_page < 1:
            raise ParameterError(f"max_records_per_page {self.max_records_per_page} must be "
                                 "at least 1", "max_records_per_page")
