"""ppyc: perfect pyc for CPython.

Packs the compiled code of whole directories (site-packages, the standard library) into one
file per directory so that imports read less and allocate less. The command line lives in the
native extension (``ppyc._native.main``); this package only hands it ``sys.argv``.
"""

from __future__ import annotations

from ppyc._native import Pack, __version__

__all__ = ["Pack", "__version__", "main"]


def main() -> None:
    """Entry point of the ``ppyc`` console script."""
    import sys

    from ppyc._native import main as _main

    sys.exit(_main(sys.argv))
