"""The ppyc import hook: serve modules from packs, exactly as the stock importer would.

``spec/IMPORT.md`` is the specification. In short: a path-entry hook placed just before the
stock ``FileFinder`` hook gives every directory that has a usable pack a :class:`PackFinder`,
a ``FileFinder`` that finds modules exactly as the stock one does (same files, same order,
same specs) and then, for a source module the pack holds, swaps in a :class:`PackLoader`.
The loader is a ``SourceFileLoader`` whose ``get_code`` takes the code from the pack when
the source is unchanged (one native call: the module's image in image mode, else
``marshal.loads`` of its payload), and otherwise does exactly what ``SourceFileLoader``
does. Whatever ppyc cannot be sure of falls back to the stock importer: ppyc never turns a
working import into an error.
"""

# Start-up matters (the hook is imported by every run through `ppyc.pth`): only modules
# that are built in or already imported before `site` runs are used here, no `typing`,
# `threading`, `types` or `importlib.machinery`.
import _frozen_importlib_external as _bootstrap_external
import _imp
import _thread
import os
import sys
from time import perf_counter_ns

TYPE_CHECKING = False
if TYPE_CHECKING:
    from importlib.machinery import ModuleSpec
    from types import ModuleType
    from typing import Any

    from ppyc import _native

FileFinder = _bootstrap_external.FileFinder
SourceFileLoader = _bootstrap_external.SourceFileLoader


_native_module = None
# Time spent importing `ppyc._native` from inside a phase, which that phase leaves out.
_nested_ns = 0


def _nat():  # noqa: ANN202 (the module's type exists only for type checkers)
    """`ppyc._native`, imported when first needed: a run that opens no pack never loads
    the extension."""
    global _native_module, _nested_ns
    if _native_module is None:
        t0 = perf_counter_ns()
        from ppyc import _native

        _native_module = _native
        # An import of its own (its own `-X importtime` row): not part of the phase that
        # needed it (see PackFinder.find_spec).
        _nested_ns += perf_counter_ns() - t0
    return _native_module


def _function() -> None:
    pass


CodeType = type(_function.__code__)

__all__ = ["PackFinder", "PackLoader", "install", "installed", "stats", "uninstall"]

_CHECKS = ("timestamp", "hash", "unchecked")
_PHASES = ("open", "find", "check", "read", "unmarshal", "relocate", "bind", "exec")
# `PPYC_CHECK` as `Pack.load` takes it.
_CHECK_CODES = {"timestamp": 0, "hash": 1, "unchecked": 2}

# `_ppyc_code` asks for a compilation of the source (not the stock path) with this.
_RECOMPILE = object()

_lock = _thread.RLock()
_installed = False
_warned: "set[str]" = set()
_verbose = False
_check = "timestamp"
_hash_pycs = "default"
_served = 0
_served_by_mode: "dict[str, int]" = {"image": 0, "marshal": 0}
_bytes = 0
_fallbacks: "dict[str, int]" = {}
_time_ns: "dict[str, int]" = dict.fromkeys(_PHASES, 0)
# Per-module phases when PPYC_PROFILE is set (module name -> record), else None.
_profile: "dict[str, dict[str, Any]] | None" = None
# Directory (absolute, as FileFinder holds it) -> the pack serving it, or None.
_dirs: "dict[str, _Entry | None]" = {}
# Every pack opened (or refused), by path: for stats() and `ppyc status`.
_packs: "dict[str, dict[str, Any]]" = {}


def _explain(message: str) -> None:
    if _verbose:
        sys.stderr.write(f"ppyc: {message}\n")


def _warn_once(key: str, message: str) -> None:
    """One warning per pack and process; stderr only (never `warnings`: -W error must not
    turn it into an exception)."""
    with _lock:
        if key in _warned:
            return
        _warned.add(key)
    try:
        sys.stderr.write(f"ppyc: warning: {message}; the stock importer is used instead\n")
    except Exception:  # a closed or broken stderr must not break imports
        pass


def _phase(phase: str, fullname: str, ns: int) -> None:
    """Adds `ns` to a phase's total and, under PPYC_PROFILE, to the module's own record."""
    _time_ns[phase] += ns
    if _profile is not None:
        record = _profile.get(fullname)
        if record is None:
            record = _profile[fullname] = {"module": fullname, "served": False}
        record[phase + "_ns"] = record.get(phase + "_ns", 0) + ns


def _json_str(text: str) -> str:
    out = text.replace("\\", "\\\\").replace('"', '\\"')
    if any(ord(c) < 0x20 for c in out):
        out = "".join(c if ord(c) >= 0x20 else f"\\u{ord(c):04x}" for c in out)
    return '"' + out + '"'


def _json_line(record: "dict[str, Any]") -> str:
    """One JSON line of a flat record (without importing `json` at exit, which would
    show in the profile of the very process it describes)."""
    items = []
    for key, value in record.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, int):
            text = str(value)
        else:
            text = _json_str(str(value))
        items.append(_json_str(key) + ": " + text)
    return "{" + ", ".join(items) + "}\n"


def _write_profile() -> None:
    """At exit: one JSON line per module this process looked for through ppyc, appended
    to the PPYC_PROFILE file (`ppyc importtime` reads it)."""
    path = os.environ.get("PPYC_PROFILE", "")
    if not path or not _profile:
        return
    try:
        pid = os.getpid()
        lines = "".join(_json_line({"pid": pid, **r}) for r in _profile.values())
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(lines)
    except Exception as exc:  # never fail the program's exit
        try:
            sys.stderr.write(f"ppyc: warning: cannot write PPYC_PROFILE ({exc!r})\n")
        except Exception:
            pass


def _fallback(reason: str, fullname: str, entry: "_Entry | None" = None) -> None:
    if _profile is not None:
        _profile.setdefault(fullname, {"module": fullname, "served": False})["reason"] = reason
    with _lock:
        _fallbacks[reason] = _fallbacks.get(reason, 0) + 1
        if entry is not None:
            per_pack = entry.info["fallbacks"]
            per_pack[reason] = per_pack.get(reason, 0) + 1
    if _verbose:
        _explain(f"{fullname}: stock import ({reason})")


class _Entry:
    """A usable pack and the directory it packs."""

    __slots__ = ("broken", "info", "pack", "path", "root")

    def __init__(self, pack: "_native.Pack", path: str, root: str, info: "dict[str, Any]") -> None:
        self.pack = pack
        self.path = path
        self.root = root
        self.broken = False
        self.info = info

    def damaged(self, fullname: str, error: "Exception | str") -> None:
        # One damaged record or payload: that module falls back; the pack stays in use for
        # the others (each is checked on its own), and the user hears about it once.
        _packs[self.path]["problems"] = _packs[self.path].get("problems", 0) + 1
        _warn_once(self.path, f"pack `{self.path}` is damaged ({fullname}: {error})")


def _pack_name() -> str:
    return _nat().pack_file_name(sys.implementation.cache_tag or "", sys.flags.optimize)


def in_tree_pack(directory: str) -> str:
    """Where `directory`'s own pack is, in the tree (spec/FORMAT.md section 2)."""
    return os.path.join(directory, "__pycache__", _pack_name())


def cache_pack(directory: str) -> "str | None":
    """Where `directory`'s pack is in the user cache, if there is a cache directory."""
    tag = sys.implementation.cache_tag or ""
    return _nat().cache_pack_path(os.path.realpath(directory), tag, sys.flags.optimize)


def check_pack(path: str, st: "os.stat_result") -> "tuple[_native.Pack | None, str | None]":
    """Opens the pack at `path` (whose stat is `st`) and applies the rules of
    spec/IMPORT.md: `(pack, None)` when usable, else `(pack or None, why not)`."""
    pack = None
    try:
        parent = os.stat(os.path.dirname(path))
        if st.st_uid != parent.st_uid:
            return None, "it is not owned by the owner of its directory"
        if st.st_mode & 0o022:
            return None, "it is writable by others than its owner"
        pack = _nat().Pack(path)
        magic = _bootstrap_external.MAGIC_NUMBER
        if pack.cache_tag != sys.implementation.cache_tag or pack.pyc_magic != magic:
            return pack, (
                f"it was built for another interpreter ({pack.cache_tag}, "
                f"magic {pack.pyc_magic.hex()}, this is {sys.implementation.cache_tag}, "
                f"magic {magic.hex()})"
            )
        if pack.optimize != sys.flags.optimize:
            return pack, f"it holds code for -O level {pack.optimize}, not {sys.flags.optimize}"
    except (OSError, ValueError) as exc:
        return pack, f"it cannot be read ({exc})"
    return pack, None


def _open(path: str, root: str) -> "_Entry | None":
    """Opens the pack at `path` for directory `root`, or says why not (None)."""
    t0 = perf_counter_ns()
    try:
        st = os.stat(path)
    except OSError:
        return None  # no pack here: nothing to say
    info: dict[str, Any] = {"path": path, "root": root, "usable": False}
    _packs[path] = info
    try:
        pack, reason = check_pack(path, st)
    finally:
        _time_ns["open"] += perf_counter_ns() - t0
    if pack is None or reason is not None:
        info["reason"] = reason
        _warn_once(path, f"ignoring pack `{path}`: {reason}")
        return None
    info["usable"] = True
    info["served"] = 0
    info["fallbacks"] = {}
    info["modules"] = len(pack)
    info["mode"], info["mode_reason"] = pack.mode_info()
    info["images_not_used"] = {}
    info["served_by_mode"] = {"image": 0, "marshal": 0}
    _explain(f"using pack `{path}` ({len(pack)} modules) for `{root}`")
    return _Entry(pack, path, root, info)


def _entry_for(directory: str) -> "_Entry | None":
    """The pack that serves `directory`: its own pack in the tree; else, when `directory`
    lies in a packed tree below a path made of identifiers (a package directory or a
    namespace portion), that tree's pack; else its own pack in the user cache. Which pack
    serves a directory never changes what is imported: every record is checked against
    the file the stock finder found."""
    with _lock:
        if directory in _dirs:
            return _dirs[directory]
        entry = _open(in_tree_pack(directory), directory)
        if entry is None:
            child, parent = directory, os.path.dirname(directory)
            while parent != child and os.path.basename(child).isidentifier():
                candidate = _entry_for(parent)
                if candidate is not None:
                    entry = candidate
                    break
                child, parent = parent, os.path.dirname(parent)
        if entry is None:
            cached = cache_pack(directory)
            if cached is not None:
                entry = _open(os.fspath(cached), directory)
        _dirs[directory] = entry
        return entry


class PackLoader(SourceFileLoader):
    """A ``SourceFileLoader`` whose code comes from a pack while the source is unchanged."""

    def __init__(
        self, fullname: str, path: str, entry: "_Entry", record: "tuple[Any, ...]"
    ) -> None:
        super().__init__(fullname, path)
        self._ppyc_entry = entry
        self._ppyc_record = record

    def _ppyc_code(self, fullname: str) -> "CodeType | object | None":
        global _served, _bytes
        entry = self._ppyc_entry
        # One native call: the record (checked again), the freshness of the source, the
        # code from the image or the payload, `co_filename` set to the path found.
        code, kind, nbytes, check_ns, read_ns, load_ns, bind_ns, note = entry.pack.load(
            self._ppyc_record[6], fullname, self.path, _CHECK_CODES[_check], _hash_pycs
        )
        _phase("check", fullname, check_ns)
        if code is None:
            if kind == "stale":
                _fallback("stale", fullname, entry)
                return _RECOMPILE if nbytes else None
            entry.damaged(fullname, note)
            _fallback("damaged", fullname, entry)
            return None
        _phase("read", fullname, read_ns)
        if kind == "image":
            _phase("relocate", fullname, load_ns)
            _phase("bind", fullname, bind_ns)
        else:
            _phase("unmarshal", fullname, load_ns)
        with _lock:
            _served += 1
            _served_by_mode[kind] += 1
            _bytes += nbytes
            entry.info["served"] += 1
            entry.info["served_by_mode"][kind] += 1
            if note is not None:
                not_used = entry.info["images_not_used"]
                not_used[note] = not_used.get(note, 0) + 1
        if _profile is not None:
            record = _profile[fullname]
            record["served"] = True
            record["mode"] = kind
            record.pop("reason", None)
        if sys.flags.verbose:
            sys.stderr.write(f"# code object from ppyc pack {entry.path!r} for {self.path!r}\n")
        if _verbose:
            _explain(f"{fullname}: served from `{entry.path}` ({kind})")
        return code

    def get_code(self, fullname: str) -> "CodeType | None":  # type: ignore[override]
        if fullname == self.name:
            try:
                code = self._ppyc_code(fullname)
            except Exception as exc:  # never let ppyc break an import
                _fallback(f"internal error: {exc!r}", fullname)
                code = None
            if code is _RECOMPILE:
                # The digest saw an edit that size and mtime can hide, so they may hide it
                # from the `.pyc` the stock loader would read: compile the source itself
                # (errors propagate, as when the stock loader compiles).
                return self.source_to_code(self.get_data(self.path), self.path)
            if isinstance(code, CodeType):
                return code
        return super().get_code(fullname)

    def exec_module(self, module: "ModuleType") -> None:
        t0 = perf_counter_ns()
        try:
            super().exec_module(module)
        finally:
            _phase("exec", module.__name__, perf_counter_ns() - t0)


class PackFinder(FileFinder):
    """A ``FileFinder`` for a directory with a pack: finds exactly what the stock finder
    finds, and loads the source modules the pack holds from the pack."""

    _ppyc_entry: "_Entry | None"
    _ppyc_resolved: bool

    def find_spec(self, fullname: str, target: "ModuleType | None" = None) -> "ModuleSpec | None":
        t0 = perf_counter_ns()
        nested = _nested_ns
        spec = super().find_spec(fullname, target)
        try:
            if spec is not None and type(spec.loader) is SourceFileLoader:
                spec = self._ppyc_adopt(spec, fullname)
            elif spec is not None and _profile is not None:
                kind = type(spec.loader).__name__ if spec.loader is not None else "namespace"
                record = _profile.setdefault(fullname, {"module": fullname, "served": False})
                record["reason"] = f"not a source module ({kind})"
        except Exception as exc:  # never let ppyc break an import
            _fallback(f"internal error: {exc!r}", fullname)
        _phase("find", fullname, perf_counter_ns() - t0 - (_nested_ns - nested))
        return spec

    def _ppyc_adopt(self, spec: "ModuleSpec", fullname: str) -> "ModuleSpec":
        if not self._ppyc_resolved:
            self._ppyc_entry = _entry_for(self.path)
            self._ppyc_resolved = True
        entry = self._ppyc_entry
        if entry is None:
            if _profile is not None:
                record = _profile.setdefault(fullname, {"module": fullname, "served": False})
                record["reason"] = "no pack for its directory"
            return spec
        origin = spec.origin or ""
        if not origin.startswith(entry.root + os.sep):
            _fallback("outside the packed directory", fullname, entry)
            return spec
        rel = origin[len(entry.root) + 1 :]
        if os.sep != "/":
            rel = rel.replace(os.sep, "/")
        try:
            record = entry.pack.find(fullname)
        except ValueError as exc:
            entry.damaged(fullname, exc)
            _fallback("damaged", fullname, entry)
            return spec
        if record is None:
            _fallback("not in the pack", fullname, entry)
            return spec
        if record[0] != rel or record[1] != (spec.submodule_search_locations is not None):
            _fallback("the pack holds another file for this name", fullname, entry)
            return spec
        spec.loader = PackLoader(fullname, origin, entry, record)
        return spec


_SUPPORTED_LOADERS = _bootstrap_external._get_supported_file_loaders()


def _path_hook(path: str) -> FileFinder:
    """The path-entry hook: a :class:`PackFinder` for every absolute directory (it finds
    exactly what a ``FileFinder`` finds and looks for a pack only when it first finds a
    source module); ``ImportError`` otherwise, so that the stock hooks decide."""
    if not path or not os.path.isabs(path) or not os.path.isdir(path):
        raise ImportError("not a directory ppyc serves", path=path)
    finder = PackFinder(path, *_SUPPORTED_LOADERS)
    finder._ppyc_entry = None
    finder._ppyc_resolved = False
    return finder


def _convert(finder: FileFinder) -> "PackFinder":
    """A PackFinder in the state of a stock `finder` (its directory listing included, so
    that nothing is listed twice)."""
    new = PackFinder.__new__(PackFinder)
    new.__dict__.update(finder.__dict__)
    new._ppyc_entry = None
    new._ppyc_resolved = False
    return new


def _configure() -> None:
    global _verbose, _check, _profile, _hash_pycs
    _hash_pycs = _imp.check_hash_based_pycs
    _verbose = os.environ.get("PPYC_VERBOSE", "") not in ("", "0")
    check = os.environ.get("PPYC_CHECK", "") or "timestamp"
    if check not in _CHECKS:
        _warn_once("PPYC_CHECK", f"PPYC_CHECK={check!r} is not one of {', '.join(_CHECKS)}")
        check = "timestamp"
    _check = check
    if os.environ.get("PPYC_PROFILE") and _profile is None:
        import atexit

        # Modules imported before the hook was installed are on record too, with why.
        _profile = {
            name: {"module": name, "served": False, "reason": "imported before ppyc started"}
            for name in list(sys.modules)
        }
        atexit.register(_write_profile)


def disabled_by_environment() -> bool:
    """Whether ``PPYC_DISABLE`` asks for the stock importer in this process."""
    return os.environ.get("PPYC_DISABLE", "") not in ("", "0")


def install() -> bool:
    """Installs the hook in this process (idempotent). Returns whether it is active:
    ``False`` when ``PPYC_DISABLE`` is set."""
    global _installed
    with _lock:
        if disabled_by_environment():
            _configure()
            _explain("disabled by PPYC_DISABLE")
            return False
        if _installed:
            return True
        _configure()
        hooks = sys.path_hooks
        position = len(hooks)
        for i, hook in enumerate(hooks):
            if getattr(hook, "__qualname__", "").startswith("FileFinder.path_hook"):
                position = i
                break
        hooks.insert(position, _path_hook)
        # Finders the stock hook made before ours was installed would keep serving their
        # directories: replace each by a PackFinder in the same state.
        for key, finder in list(sys.path_importer_cache.items()):
            if type(finder) is FileFinder and os.path.isabs(finder.path):
                sys.path_importer_cache[key] = _convert(finder)
        _installed = True
        _explain(f"hook installed (check={_check}, optimize={sys.flags.optimize})")
        return True


def uninstall() -> None:
    """Removes the hook from this process; modules already imported stay as they are."""
    global _installed
    with _lock:
        if _path_hook in sys.path_hooks:
            sys.path_hooks.remove(_path_hook)
        for key, finder in list(sys.path_importer_cache.items()):
            if isinstance(finder, PackFinder):
                del sys.path_importer_cache[key]
        _dirs.clear()
        _installed = False


def installed() -> bool:
    """Whether the hook is active in this process."""
    return _installed and _path_hook in sys.path_hooks


def _mode() -> "str | None":
    """`image` or `marshal` when every pack in use has that mode, `mixed` otherwise,
    `None` before any pack is opened."""
    modes = {p["mode"] for p in _packs.values() if p.get("usable")}
    if not modes:
        return None
    return modes.pop() if len(modes) == 1 else "mixed"


def stats() -> "dict[str, Any]":
    """Counters of this process: modules served, fallbacks by reason, payload bytes read,
    time per phase (nanoseconds; ``exec`` includes the imports a module makes), packs."""
    with _lock:
        return {
            "installed": installed(),
            "mode": _mode(),
            "served_by_mode": dict(_served_by_mode),
            "check": _check,
            "served": _served,
            "fallbacks": dict(_fallbacks),
            "bytes": _bytes,
            "time_ns": dict(_time_ns),
            "packs": [
                {k: dict(v) if isinstance(v, dict) else v for k, v in p.items()}
                for p in _packs.values()
            ],
        }
