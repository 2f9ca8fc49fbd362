"""What ``ppyc status`` reports (the Rust command line formats it)."""

from __future__ import annotations

import os
import site
import sys
import sysconfig
from typing import Any

from ppyc import _native

# `site` processes `.pth` files in the sorted order of their names: this one sorts before
# the usual ones (`_virtualenv.pth`, `a1_coverage.pth`, `distutils-precedence.pth`,
# `__editable__.*.pth`), so that their imports are served too.
PTH_NAME = "00-ppyc.pth"
# Names older versions of ppyc used.
LEGACY_PTH_NAMES = ("ppyc.pth",)


def pth_line() -> str:
    """The one line of the `.pth` file (site runs lines that start with `import`): unless
    PPYC_DISABLE is set (ignored under -E/-I, as Python ignores its own variables), it
    loads ppyc's small runtime extension by its path, without importing the `ppyc`
    package, and installs the hook. Silent if ppyc was uninstalled without `ppyc
    disable` (the extension is gone). It does nothing once the extension is loaded: in a
    venv, site processes the site-packages directory twice (3.10-3.13: `venv()` and then
    `main()` both call `addsitepackages`), and so every `.pth` line in it."""
    path = os.path.abspath(_native.__file__)
    p = repr(path)
    return (
        "import _imp, os, sys; "
        '"ppyc._native" not in sys.modules and '
        '(sys.flags.ignore_environment or os.environ.get("PPYC_DISABLE", "") in ("", "0")) '
        f"and os.path.isfile({p}) "
        # Under -X importtime the clock starts here, so that the line activate() writes in
        # CPython's format shows ppyc's whole start-up.
        'and ((t := __import__("time").perf_counter_ns() if "importtime" in sys._xoptions '
        "else 0), "
        "_imp.exec_dynamic(m := _imp.create_dynamic("
        f'type("spec", (), {{"name": "ppyc._native", "origin": {p}}}))), m.activate({p}, t))\n'
    )


def site_dirs() -> list[str]:
    """Every site-packages directory of this interpreter, purelib first, without repeats."""
    dirs = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    try:
        dirs += site.getsitepackages()
    except AttributeError:  # some virtualenv versions
        pass
    if site.ENABLE_USER_SITE and site.USER_SITE:
        dirs.append(site.USER_SITE)
    seen: list[str] = []
    for d in dirs:
        if d not in seen:
            seen.append(d)
    return seen


def pth_files() -> list[str]:
    """The ``.pth`` files that enable ppyc for this interpreter (also under the names
    older versions used)."""
    names = (PTH_NAME, *LEGACY_PTH_NAMES)
    return [p for d in site_dirs() for n in names if os.path.isfile(p := os.path.join(d, n))]


def _pack_candidates(directory: str, optimize: int) -> list[str]:
    return _native.pack_candidates(directory, optimize)


def _pack_status(path: str, directory: str, optimize: int) -> dict[str, Any]:
    info: dict[str, Any] = {"path": path, "usable": False}
    try:
        st = os.stat(path)
    except OSError as exc:
        info["reason"] = f"it cannot be read ({exc})"
        return info
    pack, reason = _native.check_pack(path, optimize)
    info["usable"] = reason is None
    if reason is not None:
        info["reason"] = reason
    info["size"] = st.st_size
    if pack is None:
        return info
    info["modules"] = len(pack)
    info["mode"], info["mode_reason"] = pack.mode_info()
    stale: list[str] = []
    missing: list[str] = []
    damaged: list[str] = []
    for name in pack.modules():
        try:
            record = pack.find(name)
        except ValueError:
            damaged.append(name)
            continue
        if record is None:
            damaged.append(name)
            continue
        source = os.path.join(directory, *record[0].split("/"))
        try:
            sst = os.stat(source)
        except OSError:
            missing.append(name)
            continue
        if sst.st_size != record[2] or sst.st_mtime_ns != record[3]:
            stale.append(name)
    info["stale"] = stale
    info["missing"] = missing
    info["damaged"] = damaged
    return info


def collect(optimize: int | None = None) -> dict[str, Any]:
    """Everything ``ppyc status`` shows, for this interpreter and process; the packs are
    those that runs at optimisation level `optimize` use (default: this run's
    ``sys.flags.optimize``)."""
    level = sys.flags.optimize if optimize is None else optimize
    entries = []
    for entry in sys.path:
        if not entry or not os.path.isdir(entry):
            continue
        directory = os.path.abspath(entry)
        packs = [
            _pack_status(p, directory, level)
            for p in _pack_candidates(directory, level)
            if os.path.exists(p)
        ]
        entries.append({"dir": directory, "packs": packs})
    stats = _native.stats()
    modes = {p["mode"] for e in entries for p in e["packs"] if p.get("usable")}
    supported, note, _ = _native.image_support()
    if not modes:
        mode = "none"
    else:
        mode = modes.pop() if len(modes) == 1 else "mixed"
    if supported:
        mode_reason = "this interpreter loads images; each pack's mode is listed below"
    else:
        mode_reason = f"this interpreter cannot use images: {note}"
    return {
        "python": sys.executable,
        "version": sys.version.split()[0],
        "cache_tag": sys.implementation.cache_tag,
        "optimize": level,
        "enabled": pth_files(),
        "site_dirs": site_dirs(),
        "disabled_by_env": _native.disabled_by_environment(),
        "installed": stats["installed"],
        "mode": mode,
        "mode_reason": mode_reason,
        "check": os.environ.get("PPYC_CHECK", "") or "timestamp",
        "sys_path": entries,
    }
