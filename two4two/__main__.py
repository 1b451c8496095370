"""``python -m two4two CONFIG.toml``: render the datasets of a dataset TOML."""

import sys

from two4two.cli_tool import main

sys.exit(main())
