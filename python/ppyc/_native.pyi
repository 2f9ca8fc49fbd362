"""Typed stubs of the native extension."""

from collections.abc import Buffer
from os import PathLike
from types import CodeType
from typing import Any

__version__: str
build_profile: str
FORMAT_READ_VERSION: int

def main(argv: list[str]) -> int:
    """Run the ppyc command line with ``argv``; return the exit status."""

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
    def find(self, name: str) -> tuple[str, bool, int, int, int, bytes] | None: ...
    def payload_span(self, name: str) -> tuple[int, int]: ...
    def modules(self) -> list[str]: ...
    def info(self) -> dict[str, Any]: ...
    def record(self, name: str) -> dict[str, Any]: ...
    def payload(self, name: str) -> bytes: ...
    def get_code(self, name: str) -> CodeType: ...
    def verify(self) -> list[str]: ...
    def __len__(self) -> int: ...
    def __contains__(self, name: object) -> bool: ...
