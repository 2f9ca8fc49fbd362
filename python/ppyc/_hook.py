"""The ppyc import hook: serve modules from packs, exactly as the stock importer would.

``spec/IMPORT.md`` is the specification. The hook lives in the native extension: one meta
path finder, just before the stock ``PathFinder``, finds modules with the stock
``FileFinder`` rules on the stock finders' own directory caches and returns the spec the
stock finder would return. When the file found is a source that its directory's pack
holds, the spec's loader is a :class:`PackLoader`: a ``SourceFileLoader`` (so every tool
that looks at loaders sees what it sees without ppyc) whose ``get_code`` makes one native
call for the freshness check and the code (the module's image, or ``marshal.loads`` of its
payload). Whatever ppyc cannot be sure of is left to the stock importer: ppyc never turns
a working import into an error.
"""

# Start-up matters (this module is imported by every run through `ppyc.pth`): only
# modules that are built in or already imported before `site` runs are used here.
import _frozen_importlib_external as _bootstrap_external
import os
import sys

from ppyc import _native

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import CodeType, ModuleType
    from typing import Any

__all__ = ["PackLoader", "install", "installed", "stats", "uninstall"]

SourceFileLoader = _bootstrap_external.SourceFileLoader


class PackLoader(SourceFileLoader):
    """A ``SourceFileLoader`` whose code comes from a pack while the source is unchanged.

    Everything but ``get_code`` is the stock loader's: ``get_source``, ``get_data``,
    ``get_resource_reader``, ``is_package``, ``exec_module``."""

    def __init__(self, fullname: str, path: str, served: "_native.Served") -> None:
        self.name = fullname
        self.path = path
        self._ppyc = served

    # Equal when the stock loaders of the same file would be (FileLoader compares
    # `name` and `path`; the pack record is not part of what the loader is).
    def __eq__(self, other: object) -> bool:
        return (
            self.__class__ == other.__class__
            and self.name == other.name  # type: ignore[attr-defined]
            and self.path == other.path  # type: ignore[attr-defined]
        )

    def __hash__(self) -> int:
        return hash(self.name) ^ hash(self.path)

    def get_code(self, fullname: str) -> "CodeType | None":  # type: ignore[override]
        if fullname == self.name:
            try:
                # One native call: the record, the freshness of the source, the code from
                # the image or the payload, `co_filename` set to the path found.
                code = self._ppyc.code(self.path)
            except Exception:  # never let ppyc break an import
                code = None
            if code is False:
                # Only a digest saw the edit, which size and mtime can hide from the `.pyc`
                # the stock loader would read as well: compile the source (errors
                # propagate, as when the stock loader compiles), and write its `.pyc` as
                # the stock loader does after compiling.
                return self._ppyc_compile()
            if code is not None:
                return code  # type: ignore[no-any-return]
        return super().get_code(fullname)

    def _ppyc_compile(self) -> "CodeType":
        data = self.get_data(self.path)
        code = self.source_to_code(data, self.path)
        if not sys.dont_write_bytecode:
            try:
                st = self.path_stats(self.path)
                bytecode_path = _bootstrap_external.cache_from_source(self.path)
                pyc = _bootstrap_external._code_to_timestamp_pyc(code, st["mtime"], st["size"])
                self._cache_bytecode(self.path, bytecode_path, pyc)
            except (NotImplementedError, OSError, ValueError):
                pass  # as SourceLoader.get_code: a .pyc that cannot be written is skipped
        return code  # type: ignore[no-any-return]


class ProfilingPackLoader(PackLoader):
    """The loader under ``PPYC_PROFILE``: also times the module's execution."""

    def exec_module(self, module: "ModuleType") -> None:
        t0 = _native.now_ns()
        try:
            super().exec_module(module)
        finally:
            self._ppyc.record_exec(_native.now_ns() - t0)


_profile_writer_registered = False


def install() -> bool:
    """Installs the hook in this process (idempotent). Returns whether it is active:
    ``False`` when ``PPYC_DISABLE`` is set."""
    global _profile_writer_registered
    active = _native.install(PackLoader, ProfilingPackLoader)
    if active and _native.profiling() and not _profile_writer_registered:
        import atexit

        atexit.register(_write_profile)
        _profile_writer_registered = True
    return active


def uninstall() -> None:
    """Removes the hook from this process; modules already imported stay as they are."""
    _native.uninstall()


def installed() -> bool:
    """Whether the hook is active in this process."""
    return _native.installed()


def stats() -> "dict[str, Any]":
    """Counters of this process: modules served (by mode), fallbacks by reason, bytes
    read, time per phase (nanoseconds, measured only under ``PPYC_PROFILE``; ``exec``
    includes the imports a module makes), and every pack looked at."""
    return _native.stats()


def disabled_by_environment() -> bool:
    """Whether ``PPYC_DISABLE`` asks for the stock importer in this process."""
    return _native.disabled_by_environment()


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
    if not path:
        return
    try:
        records = _native.profile_records()
        if not records:
            return
        pid = os.getpid()
        lines = "".join(_json_line({"pid": pid, **r}) for r in records)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(lines)
    except Exception as exc:  # never fail the program's exit
        try:
            sys.stderr.write(f"ppyc: warning: cannot write PPYC_PROFILE `{path}` ({exc!r})\n")
        except Exception:
            pass
