"""ppyc: perfect pyc for CPython.

Packs the compiled code of whole directories (site-packages, the standard library) into one
file per directory, and serves imports from those packs. The command line lives in the
native extension (``ppyc._native.main``); this package only hands it ``sys.argv``.

- ``ppyc.install()`` enables the import hook for this process (``ppyc enable`` does it for
  every run of this interpreter through a ``.pth`` file).
- ``ppyc.stats()`` returns the hook's counters.
- ``ppyc.Pack(path)`` opens a pack.
"""

# No `from __future__ import annotations` and nothing imported but the small runtime
# extension: the command line (`ppyc._cli`) is never loaded by imports. At start-up the
# `.pth` line loads `ppyc._native` alone, without this package (`ppyc._status.pth_line`).
from ppyc import _native

__all__ = ["Pack", "__version__", "install", "installed", "main", "stats", "uninstall"]


def install() -> bool:
    """Installs the import hook in this process (idempotent); returns whether it is active
    (``False`` under ``PPYC_DISABLE``)."""
    return _native.install()


def uninstall() -> None:
    """Removes the import hook; modules already imported stay as they are."""
    _native.uninstall()


def installed() -> bool:
    """Whether the import hook is active in this process."""
    return _native.installed()


def stats() -> "dict[str, object]":
    """The import hook's counters in this process: modules served (by mode), fallbacks by
    reason, bytes read, time per phase (nanoseconds, measured only under ``PPYC_PROFILE``;
    ``exec`` includes the imports a module makes), and every pack looked at."""
    return _native.stats()


def _activate() -> None:
    """Called by the `.pth` line of ppyc versions before 0.1 (`ppyc.pth`): installs the
    hook. Nothing here may break start-up: a failure is reported on stderr and the stock
    importer runs."""
    try:
        install()
    except Exception as exc:
        import sys

        sys.stderr.write(f"ppyc: warning: import hook not installed ({exc!r})\n")


def __getattr__(name: str) -> object:
    if name in ("Pack", "__version__"):
        return getattr(_native, name)
    raise AttributeError(f"module 'ppyc' has no attribute {name!r}")


def main() -> None:
    """Entry point of the ``ppyc`` console script."""
    import sys

    from ppyc._cli import main as _main

    sys.exit(_main(sys.argv))
