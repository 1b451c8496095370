"""Stop training cleanly on SIGTERM, SIGINT or SIGUSR1.

See ``docs/runs.md``, "Training: one trainer, nothing lost".

:class:`StopSignals` is a context manager: while it is active the first of
these signals only records a stop request, which the trainer reads at the end
of a step (the processes of a distributed run agree on it through the step's
all-reduce), writes a checkpoint and stops. A second SIGINT (Ctrl-C pressed
twice) interrupts at once with ``KeyboardInterrupt``. SLURM sends SIGTERM when
a job is cancelled and, with ``--signal=USR1@SECONDS``, SIGUSR1 before the
time limit.

Handlers are installed only in the main thread (Python allows no other) and
the previous ones are restored on exit, so a notebook that calls
:func:`dubfiv.train.train` keeps its own.
"""

from __future__ import annotations

import dataclasses
import signal
import threading
from types import FrameType
from typing import Any

import torch

__all__ = ["STOP_SIGNALS", "Control", "StopSignals", "signal_name"]

STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)
"""The signals that stop training after the current step, with a checkpoint."""


def signal_name(number: int) -> str:
    """``"SIGTERM"`` for 15 (``"signal N"`` for a number without a name)."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class StopSignals:
    """Records the first stop signal in :attr:`received` while active (see the module)."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def installed(self) -> bool:
        """Whether the handlers are in place (not outside the main thread)."""
        return bool(self._previous)

    def request(self, number: int) -> None:
        """Record a stop request as the signal ``number`` would (the first one counts)."""
        if self.received is None:
            self.received = number

    def _handle(self, number: int, frame: FrameType | None) -> None:
        if number == signal.SIGINT and self.received is not None:
            raise KeyboardInterrupt  # a second Ctrl-C: stop at once
        self.request(number)

    def __enter__(self) -> StopSignals:
        self.received = None
        if threading.current_thread() is threading.main_thread():
            for number in STOP_SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        previous, self._previous = self._previous, {}
        for number, handler in previous.items():
            signal.signal(number, handler if handler is not None else signal.SIG_DFL)


@dataclasses.dataclass(frozen=True)
class Control:
    """What the processes agreed on in a step's all-reduce (the entries after the
    statistics): ``stop`` on a signal (``signal_number``, as received), and
    ``checkpoint_due`` by rank 0's clock (``train.checkpoint_every_minutes``)."""

    stop: bool = False
    signal_number: int = 0
    checkpoint_due: bool = False

    N_ENTRIES = 3

    @classmethod
    def local(cls, signal_number: int | None, checkpoint_due: bool) -> torch.Tensor:
        """This process's entries: stop flag, signal number, checkpoint due."""
        return torch.tensor([float(signal_number is not None), float(signal_number or 0),
                             float(checkpoint_due)], dtype=torch.float64)

    @classmethod
    def agreed(cls, summed: torch.Tensor) -> Control:
        """The decision from the entries summed over all processes."""
        stops = float(summed[0])
        number = round(float(summed[1]) / stops) if stops > 0 else 0
        return cls(stops > 0, number, float(summed[2]) > 0)
