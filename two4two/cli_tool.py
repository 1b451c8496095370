"""``two4two_render_dataset CONFIG.toml`` / ``python -m two4two CONFIG.toml``: render datasets.

A thin command line over :func:`render_dataset`. Every deliberate library
error (a :class:`~two4two.errors.Two4TwoError`: bad config, conflicting
directory, missing bpy, a dead render worker) prints one line
``two4two_render_dataset: error: ...`` to stderr and exits with status 1;
Ctrl-C exits with 130 and leaves a state that the same command resumes.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

from two4two import utils
from two4two.dataset import DatasetError, RenderFn, render_dataset_config
from two4two.dataset_config import load_dataset_configs
from two4two.errors import Two4TwoError
from two4two.files import describe_os_error

__all__ = ["PROG", "main", "render_dataset"]

PROG = "two4two_render_dataset"


def _check_bpy() -> None:
    if importlib.util.find_spec("bpy") is None:
        raise DatasetError(
            "bpy (Blender as a Python module) is not installed; install it with "
            "pip install 'bpy==4.5.*' (needs Python 3.11)"
        )


@utils.keyword_aliases(config_path="config_file")
def render_dataset(config_file: str | os.PathLike, render_fn: RenderFn | None = None,
                   progress: bool = True) -> list[Path]:
    """Render every dataset of a dataset TOML (``config/*.toml``; ``docs/two4two_api.md``
    for upstream's TOML form, which is read too).

    The whole file is validated before anything is sampled or rendered.
    Interrupted runs resume: rerun with the same file.

    Args:
        config_file: the dataset TOML (``config_path=`` works too).
        render_fn: the renderer (default :func:`two4two.blender.render`).
        progress: show progress bars.

    Returns:
        the split and intervention directories, in render order.

    Raises:
        DatasetConfigError: the file is invalid (the message names the field).
        DatasetError: a directory conflicts with the config, or bpy is missing.
        two4two.blender.RenderError: a render worker failed.
    """
    configs = load_dataset_configs(config_file)
    if render_fn is None:
        _check_bpy()
    written: list[Path] = []
    for config in configs:
        written += render_dataset_config(config, render_fn=render_fn, progress=progress)
    return written


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``two4two_render_dataset``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Render the Two4Two datasets described by a dataset TOML (resumable: "
                    "rerun the same command after an interruption).",
    )
    parser.add_argument("config", help="dataset TOML, e.g. config/dataset_small.toml")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    args = parser.parse_args(argv)
    try:
        written = render_dataset(args.config, progress=not args.no_progress)
    except Two4TwoError as error:
        message = " ".join(str(error).split()) or type(error).__name__  # one line
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 1
    except OSError as error:  # a full disk, a read-only folder
        print(f"{PROG}: error: {describe_os_error(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted: rerun the same command to resume", file=sys.stderr)
        return 130
    for directory in written:
        print(directory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
