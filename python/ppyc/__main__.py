"""``python -m ppyc``: the ppyc command line."""

from __future__ import annotations

import sys

from ppyc._cli import main

if __name__ == "__main__":
    sys.argv[0] = "ppyc"
    sys.exit(main(sys.argv))
