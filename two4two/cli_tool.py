"""``two4two_render_dataset CONFIG.toml`` / ``python -m two4two CONFIG.toml``: render datasets.

A thin command line over :func:`render_dataset`. User errors (bad config,
conflicting directory, missing bpy, a dead render worker) print one line
``error: ...`` to stderr and exit with status 1; Ctrl-C exits with 130 and
leaves a state that the same command resumes.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

from two4two.dataset import DatasetError, RenderFn, render_dataset_config
from two4two.dataset_config import DatasetConfigError, load_dataset_configs

__all__ = ["main", "render_dataset"]


def _check_bpy() -> None:
    if importlib.util.find_spec("bpy") is None:
        raise DatasetError(
            "bpy (Blender as a Python module) is not installed; install it with "
            "pip install 'bpy==4.5.*' (needs Python 3.11)"
        )


def render_dataset(config_path: str | os.PathLike, render_fn: RenderFn | None = None,
                   progress: bool = True) -> list[Path]:
    """Render every dataset of a dataset TOML (see ``TWO4TWO.md`` and ``config/*.toml``).

    The whole file is validated before anything is sampled or rendered.
    Interrupted runs resume: rerun with the same file.

    Args:
        config_path: the dataset TOML.
        render_fn: the renderer (default :func:`two4two.blender.render`).
        progress: show progress bars.

    Returns:
        the split and intervention directories, in render order.

    Raises:
        DatasetConfigError: the file is invalid (the message names the field).
        DatasetError: a directory conflicts with the config, or bpy is missing.
        two4two.blender.RenderError: a render worker failed.
    """
    configs = load_dataset_configs(config_path)
    if render_fn is None:
        _check_bpy()
    written: list[Path] = []
    for config in configs:
        written += render_dataset_config(config, render_fn=render_fn, progress=progress)
    return written


def _user_errors() -> tuple[type[BaseException], ...]:
    errors: tuple[type[BaseException], ...] = (DatasetConfigError, DatasetError)
    try:
        from two4two.blender import RenderError
    except ImportError:
        return errors
    return (*errors, RenderError)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``two4two_render_dataset``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="two4two_render_dataset",
        description="Render the Two4Two datasets described by a dataset TOML (resumable: "
                    "rerun the same command after an interruption).",
    )
    parser.add_argument("config", help="dataset TOML, e.g. config/dataset_small.toml")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    args = parser.parse_args(argv)
    try:
        written = render_dataset(args.config, progress=not args.no_progress)
    except _user_errors() as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume", file=sys.stderr)
        return 130
    for directory in written:
        print(directory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
