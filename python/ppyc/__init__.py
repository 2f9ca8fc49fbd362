"""ppyc: perfect pyc for CPython.

Packs the compiled code of whole directories (site-packages, the standard library) into one
file per directory, and serves imports from those packs. The command line lives in the
native extension (``ppyc._native.main``); this package only hands it ``sys.argv``.

- ``ppyc.install()`` enables the import hook for this process (``ppyc enable`` does it for
  every run of this interpreter through a ``.pth`` file).
- ``ppyc.stats()`` returns the hook's counters.
- ``ppyc.Pack(path)`` opens a pack.
"""

from __future__ import annotations

from ppyc._hook import install, installed, stats, uninstall
from ppyc._native import Pack, __version__

__all__ = ["Pack", "__version__", "install", "installed", "main", "stats", "uninstall"]


def main() -> None:
    """Entry point of the ``ppyc`` console script."""
    import sys

    from ppyc._native import main as _main

    sys.exit(_main(sys.argv))
