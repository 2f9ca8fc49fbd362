"""Typed stubs of the native extension."""

from collections.abc import Buffer, Sequence
from importlib.machinery import ModuleSpec
from os import PathLike
from types import CodeType, ModuleType
from typing import Any

__version__: str
build_profile: str
FORMAT_READ_VERSION: int

def file_digest(path: str | PathLike[str]) -> bytes:
    """BLAKE3 of a file's bytes."""

def cache_pack_path(real_dir: str, cache_tag: str, optimize: int) -> str | None:
    """The user-cache location of a directory's pack (``spec/FORMAT.md`` section 2)."""

def pack_file_name(cache_tag: str, optimize: int) -> str:
    """``__ppyc__.<cache_tag>[.opt-N].ppyc``."""

class Pack(Buffer):
    """A pack, opened and header-checked (raises ``OSError`` or ``ValueError``).

    ``memoryview(pack)`` is a read-only view of the whole mapped file."""

    cache_tag: str
    pyc_magic: bytes
    optimize: int
    path: str | None

    def __init__(self, path: str | PathLike[str]) -> None: ...
    def __buffer__(self, flags: int, /) -> memoryview: ...
    def find(self, name: str) -> tuple[str, bool, int, int, int, bytes, int] | None:
        """``(source_path, is_package, source_size, source_mtime_ns, pyc_flags,
        source_blake3, index)`` of a module, ``None`` when absent."""
    def load(
        self, index: int, name: str, path: str, check: int, hash_pycs: str
    ) -> tuple[CodeType | None, str, Any, int, int, int, int, str | None]:
        """Loads a module as the import hook does (``check``: 0 timestamp, 1 hash, 2
        unchecked; ``hash_pycs``: ``_imp.check_hash_based_pycs``)."""
    def mode_info(self) -> tuple[str, str | None]: ...
    def listing(self, rel: str) -> tuple[int, int, list[bytes]] | None:
        """The recorded listing of a directory (relative to the root): mtime seconds,
        nanoseconds and names, ``None`` when not recorded."""
    def load_image(self, name: str, filename: str) -> CodeType: ...
    def payload_span(self, name: str) -> tuple[int, int]:
        """``(start, end)`` of a module's payload in ``memoryview(pack)``, its digest
        checked; raises ``KeyError`` when absent, ``ValueError`` when damaged or for a
        module served by the pack's delta (its payload is in the delta file,
        spec/FORMAT.md §13)."""
    def modules(self) -> list[str]:
        """The modules of the generation (the pack and its delta)."""
    def info(self) -> dict[str, Any]:
        """The header fields, ``mode``, ``mode_reason``, ``sections``, ``meta`` (the
        generation's), ``modules`` (the generation's count), ``delta`` (``None``, or
        ``path``, ``module_count``, ``file_size``, ``deleted``, ``mtime_ns`` of the delta
        in use) and ``delta_problem`` (why a delta beside the pack is not used, or
        ``None``)."""
    def record(self, name: str) -> dict[str, Any]: ...
    def payload(self, name: str) -> bytes: ...
    def get_code(self, name: str) -> CodeType: ...
    def verify(self) -> list[str]: ...
    def __len__(self) -> int: ...
    def __contains__(self, name: object) -> bool: ...

class Served:
    """What a ``PackLoader`` holds: a pack and the record of its module."""

    def code(self, path: str) -> CodeType | bool | None:
        """The module's code; ``None``: load it with the stock loader; ``False``: compile
        its source (only a digest saw the change)."""
    def record_exec(self, ns: int) -> None: ...

class Finder:
    """The meta path finder of the import hook."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None: ...
    def invalidate_caches(self) -> None: ...

def install() -> bool: ...
def uninstall() -> None: ...
def installed() -> bool: ...
def image_mappings() -> list[tuple[int, int]]: ...
def stats() -> dict[str, Any]: ...
def profile_records() -> list[dict[str, Any]]: ...
def profiling() -> bool: ...
def disabled_by_environment() -> bool: ...
def now_ns() -> int: ...
def pack_candidates(directory: str, optimize: int | None = None) -> list[str]: ...
def walk_modules(directory: str, excludes: list[str] = ...) -> list[tuple[str, str]]: ...
def refresh_state_base(directory: str, optimize: int | None = None) -> str | None: ...
def check_pack(
    path: str, directory: str | None = None, optimize: int | None = None
) -> tuple[Pack | None, str | None]: ...
def image_support() -> tuple[bool, str, bytes | None]: ...
def snapshot(payload: bytes) -> bytes: ...
