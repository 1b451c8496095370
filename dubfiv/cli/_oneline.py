"""Shared pieces of the command-line tools: one-line errors and exit codes."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

__all__ = ["OneLineParser", "fail", "user_errors"]


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are a single line (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def fail(prog: str, error: BaseException | str, status: int = 1) -> int:
    """Print ``<prog>: error: <message>`` on one line to stderr; return ``status``."""
    text = " ".join(str(error).split("\n"))
    print(f"{prog}: error: {text}", file=sys.stderr)
    return status


def user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean bad input (printed as one line, no traceback)."""
    from dubfiv.config import ConfigError
    from dubfiv.data import DatasetError
    from dubfiv.train.checkpoint import CheckpointError
    from dubfiv.train.errors import TrainingError
    from two4two.pytorch import Two4TwoDatasetError

    return (ConfigError, DatasetError, TrainingError, CheckpointError, Two4TwoDatasetError)
