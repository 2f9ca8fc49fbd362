"""ppyc: perfect pyc for CPython.

Packs the compiled code of whole directories (site-packages, the standard library) into one
file per directory, and serves imports from those packs. The command line lives in the
native extension (``ppyc._native.main``); this package only hands it ``sys.argv``.

- ``ppyc.install()`` enables the import hook for this process (``ppyc enable`` does it for
  every run of this interpreter through a ``.pth`` file).
- ``ppyc.stats()`` returns the hook's counters.
- ``ppyc.Pack(path)`` opens a pack.
"""

# No `from __future__ import annotations` and no eager imports: this package is imported at
# every start-up by `ppyc.pth`, which then imports `ppyc._hook` (and the small runtime
# extension `ppyc._native`); the command line (`ppyc._cli`) is never loaded by imports.

__all__ = ["Pack", "__version__", "install", "installed", "main", "stats", "uninstall"]


def install() -> bool:
    """Installs the import hook in this process (idempotent); returns whether it is active
    (``False`` under ``PPYC_DISABLE``)."""
    from ppyc._hook import install as _install

    return _install()


def uninstall() -> None:
    """Removes the import hook; modules already imported stay as they are."""
    from ppyc._hook import uninstall as _uninstall

    _uninstall()


def installed() -> bool:
    """Whether the import hook is active in this process."""
    from ppyc._hook import installed as _installed

    return _installed()


def stats() -> "dict[str, object]":
    """The import hook's counters in this process (see ``ppyc._hook.stats``)."""
    from ppyc._hook import stats as _stats

    return _stats()


def _activate() -> None:
    """Called by the `ppyc.pth` line at start-up (unless PPYC_DISABLE is set): installs
    the hook. Nothing here may break start-up: a failure is reported on stderr and the
    stock importer runs."""
    try:
        install()
    except Exception as exc:
        import sys

        sys.stderr.write(f"ppyc: warning: import hook not installed ({exc!r})\n")


def __getattr__(name: str) -> object:
    if name in ("Pack", "__version__"):
        from ppyc import _native

        return getattr(_native, name)
    raise AttributeError(f"module 'ppyc' has no attribute {name!r}")


def main() -> None:
    """Entry point of the ``ppyc`` console script."""
    import sys

    from ppyc._cli import main as _main

    sys.exit(_main(sys.argv))
