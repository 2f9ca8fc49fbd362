"""What ``ppyc status`` reports (the Rust command line formats it)."""

from __future__ import annotations

import json
import os
import site
import sys
import sysconfig
from typing import Any

from ppyc import _native, _refresh

# `site` processes `.pth` files in the sorted order of their names: this one sorts before
# the usual ones (`_virtualenv.pth`, `a1_coverage.pth`, `distutils-precedence.pth`,
# `__editable__.*.pth`), so that their imports are served too.
PTH_NAME = "00-ppyc.pth"
# Names older versions of ppyc used.
LEGACY_PTH_NAMES = ("ppyc.pth",)


def pth_line(auto_refresh: bool = True) -> str:
    """The one line of the `.pth` file (site runs lines that start with `import`): unless
    PPYC_DISABLE is set (ignored under -E/-I, as Python ignores its own variables), it
    loads ppyc's small runtime extension by its path, without importing the `ppyc`
    package, and installs the hook. Silent if ppyc was uninstalled without `ppyc
    disable` (the extension is gone). It does nothing once the extension is loaded: in a
    venv, site processes the site-packages directory twice (3.10-3.13: `venv()` and then
    `main()` both call `addsitepackages`), and so every `.pth` line in it. With
    ``auto_refresh=False`` (``ppyc enable --no-auto-refresh``) the hook starts no
    background refresh of stale packs."""
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
        f'type("spec", (), {{"name": "ppyc._native", "origin": {p}}}))), '
        f"m.activate({p}, t{'' if auto_refresh else ', False'}))\n"
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
    pack, reason = _native.check_pack(path, directory, optimize)
    info["usable"] = reason is None
    if reason is not None:
        info["reason"] = reason
    info["size"] = st.st_size
    if pack is None:
        return info
    info["modules"] = len(pack)
    info["mode"], info["mode_reason"] = pack.mode_info()
    pack_info = pack.info()
    info["delta"] = pack_info["delta"]
    info["delta_problem"] = pack_info["delta_problem"]
    # When the generation was written: its delta's time when it has one (spec/FORMAT.md §13).
    written_ns = st.st_mtime_ns
    if info["delta"] is not None and info["delta"]["mtime_ns"] is not None:
        written_ns = max(written_ns, info["delta"]["mtime_ns"])
    if reason is not None:
        return info  # not used: what its modules' sources look like does not matter
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
    # Modules a rebuild would pack that this pack lacks: new since it was built (modified
    # after the pack file), or left out when it was built (they did not compile, ...).
    known = set(pack.modules())
    try:
        excludes = json.loads(pack_info["meta"].get("exclude", "[]"))
    except ValueError:
        excludes = []
    new: list[str] = []
    left_out: list[str] = []
    for name, source in _native.walk_modules(directory, [str(x) for x in excludes]):
        if name in known:
            continue
        try:
            newer = os.stat(source).st_mtime_ns > written_ns
        except OSError:
            continue
        (new if newer else left_out).append(name)
    info["stale"] = stale
    info["missing"] = missing
    info["damaged"] = damaged
    info["new"] = new
    info["left_out"] = left_out
    return info


def _auto_refresh(stats: dict[str, Any]) -> dict[str, Any]:
    """Whether the hook rebuilds stale packs in the background: as the hook of this process
    decided, else as the `.pth` line and the environment would decide."""
    if stats["installed"]:
        return dict(stats["auto_refresh"])
    off = None
    for pth in pth_files():
        with open(pth, encoding="utf-8") as f:
            if ", False))" in f.read():
                off = "`ppyc enable --no-auto-refresh`"
    value = "" if sys.flags.ignore_environment else os.environ.get("PPYC_AUTO_REFRESH", "")
    if off is None and value.lower() in ("0", "off", "no", "false"):
        off = f"PPYC_AUTO_REFRESH={value}"
    return {"enabled": off is None, "off": off}


def _own_entry() -> str | None:
    """``sys.path[0]`` as Python set it for the ppyc command itself: the console script's
    directory (``bin/``), or the current directory under ``python -m ppyc``. Every program
    gets its own first entry, so status leaves this one out."""
    if not sys.path or getattr(sys.flags, "safe_path", False):
        return None
    first = sys.path[0]
    argv0 = sys.argv[0] if sys.argv else ""
    if not argv0:
        return None
    if os.path.basename(argv0) == "__main__.py" or argv0 == "-m":
        own = os.getcwd()
    else:
        own = os.path.dirname(os.path.abspath(argv0))
    return first if os.path.abspath(first or os.curdir) == own else None


def collect(optimize: int | None = None) -> dict[str, Any]:
    """Everything ``ppyc status`` shows, for this interpreter and process; the packs are
    those that runs at optimisation level `optimize` use (default: this run's
    ``sys.flags.optimize``)."""
    level = sys.flags.optimize if optimize is None else optimize
    entries = []
    own = _own_entry()
    for i, entry in enumerate(sys.path):
        if i == 0 and own is not None:
            continue
        if not entry or not os.path.isdir(entry):
            continue
        directory = os.path.abspath(entry)
        # In the order the hook tries them (the one written last first): the first usable
        # one serves the directory, any other is hidden by it.
        packs = [
            _pack_status(p, directory, level)
            for p in _pack_candidates(directory, level)
            if os.path.exists(p)
        ]
        serving = next((p["path"] for p in packs if p["usable"]), None)
        for p in packs:
            p["serving"] = p["path"] == serving
            if p["usable"] and not p["serving"]:
                p["hidden_by"] = serving
        base = _native.refresh_state_base(directory, level) if packs else None
        refresh = _refresh.read_state(base) if base else None
        entries.append({"dir": directory, "packs": packs, "refresh": refresh})
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
        "auto_refresh": _auto_refresh(stats),
        "sys_path": entries,
        "left_out_entry": os.path.abspath(own or os.curdir) if own is not None else None,
    }
