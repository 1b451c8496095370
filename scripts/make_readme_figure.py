#!/usr/bin/env python
"""Make the README's figure: a baseline grid and a counterfactual grid of a real run.

Usage:
    python scripts/make_readme_figure.py --model RUN_DIR [--dataset_dir DIR]
        [--output docs/readme_figure.png] [--rows 3] [--width 1400]

Both grids come from :class:`dubfiv.analysis.Analysis` (validation split, seed 0);
the two figures are placed side by side and downscaled to ``--width`` pixels.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure
from PIL import Image

from dubfiv.analysis import Analysis


def _to_image(figure: Figure) -> Image.Image:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=150, bbox_inches="tight", facecolor="white")
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="run directory")
    parser.add_argument("--dataset_dir", type=Path, default=None)
    parser.add_argument("--output", type=Path, default=Path("docs/readme_figure.png"))
    parser.add_argument("--rows", type=int, default=3)
    parser.add_argument("--width", type=int, default=1400)
    args = parser.parse_args()
    analysis = Analysis.from_checkpoint(args.model, device="cpu", dataset_dir=args.dataset_dir,
                                        progress=False, output_dir=args.output.parent / ".tmp")
    left = _to_image(analysis.baseline(n_rows=args.rows, save=False).figure())
    right = _to_image(analysis.interpolation(n_rows=args.rows, save=False).figure())
    height = max(left.height, right.height)
    canvas = Image.new("RGB", (left.width + right.width, height), "white")
    canvas.paste(left, (0, (height - left.height) // 2))
    canvas.paste(right, (left.width, (height - right.height) // 2))
    scale = args.width / canvas.width
    canvas = canvas.resize((args.width, round(canvas.height * scale)), Image.LANCZOS)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    # a 128-colour palette keeps the committed PNG small (~100 KB)
    canvas = canvas.quantize(colors=128, method=Image.Quantize.MEDIANCUT,
                             dither=Image.Dither.NONE)
    canvas.save(args.output, optimize=True)
    print(f"wrote {args.output} ({canvas.width}x{canvas.height})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
