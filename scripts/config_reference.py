#!/usr/bin/env python
"""Write (or check) the configuration reference in README.md from dubfiv.config's dataclasses.

Usage: python scripts/config_reference.py [--check] [--readme README.md]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dubfiv.config_docs import replace_reference


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", type=Path, default=Path(__file__).parents[1] / "README.md")
    parser.add_argument("--check", action="store_true", help="exit 1 if README is out of date")
    args = parser.parse_args()
    text = args.readme.read_text(encoding="utf-8")
    fresh = replace_reference(text)
    if args.check:
        if fresh != text:
            print(f"{args.readme}: configuration reference is out of date; "
                  "run python scripts/config_reference.py", file=sys.stderr)
            return 1
        print(f"{args.readme}: configuration reference is current")
        return 0
    args.readme.write_text(fresh, encoding="utf-8")
    print(f"wrote the configuration reference into {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
