"""Start-up activation: ``ppyc.pth`` in site-packages runs ``import ppyc._pth``.

Installs the import hook unless ``PPYC_DISABLE`` is set. Nothing here may break the
interpreter's start-up: any failure is reported on stderr and the stock importer runs.
"""

from __future__ import annotations


def _activate() -> None:
    import os

    if os.environ.get("PPYC_DISABLE", "") not in ("", "0"):
        return
    try:
        from ppyc._hook import install

        install()
    except Exception as exc:  # never break start-up
        import sys

        sys.stderr.write(f"ppyc: warning: import hook not installed ({exc!r})\n")


_activate()
