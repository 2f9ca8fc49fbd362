# ppyc compile worker: run as `python -s -B worker.py [--native PATH]` by
# compiler/src/workers/, with PYTHONHASHSEED=0 and no other PYTHON* variable (isolated as -I
# would make it).
#
# One long-lived process serves many requests, one at a time: compiling a source exactly
# as `py_compile.compile` would (Lib/py_compile.py, 3.10-3.13: same loader calls, same pyc
# helpers, same atomic write), returning the pyc bytes and never raising on a bad source;
# or, started with `--native PATH` (ppyc's own extension, `ppyc._native`), making the image
# of a marshalled code object (image mode, spec/FORMAT.md section 11). A worker does one or
# the other: images load other processes' code, which changes what compiling writes.
#
# Protocol version 2 (all integers little-endian, both directions framed as
# `u32 length + payload`):
#   worker -> ppyc, once at startup:
#       b"R" protocol(u32 = 2) magic(bytes) hexversion(u32) cache_tag(str)
#       implementation(str) image_fingerprint(bytes: 32, or empty) image_note(str)
#   ppyc -> worker, per request, one of:
#       b"C" id(u64) optimize(u8) mode(u8: 0 timestamp, 1 checked hash, 2 unchecked hash)
#            source(bytes) has_cfile(u8) [cfile(bytes)]
#       b"I" id(u64) payload(bytes)            the image of this marshalled code object
#   worker -> ppyc, per "C" request, one of:
#       b"O" id written(u8) pyc(bytes) has_write_error(u8) [write_error(str)]
#            n_warnings(u32) warning(str)*
#       b"S" id exception(str) lineno(i64, -1 = none) offset(i64, -1 = none) message(str)
#       b"U" id exception(str) message(str)      unreadable source (OSError, UnicodeError)
#       b"E" id exception(str) message(str)      any other exception from compile()
#   worker -> ppyc, per "I" request, one of:
#       b"M" id image(bytes)                     ppyc_format::ModuleImage::to_wire
#       b"N" id reason(str)                      this code cannot have an image
#   and for either:
#       b"X" id traceback(str)                   a bug in this worker (request not handled)
# where bytes = u32 length + raw bytes and str = bytes holding UTF-8 (backslash-escaped
# where not encodable). Paths travel as raw bytes (os.fsdecode/os.fsencode), so any file
# name works, newlines included. EOF on stdin ends the worker with status 0.
from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import struct
import sys
import warnings
from importlib import _bootstrap_external
from types import ModuleType

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_COMPILE_HEAD = struct.Struct("<QBB")
PROTOCOL = 2

MODES = ("TIMESTAMP", "CHECKED_HASH", "UNCHECKED_HASH")


def _bytes(data: bytes) -> bytes:
    return _U32.pack(len(data)) + data


def _str(text: str) -> bytes:
    return _bytes(text.encode("utf-8", "backslashreplace"))


def _i64(value: int | None) -> bytes:
    return struct.pack("<q", -1 if value is None else int(value))


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError("truncated request")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def blob(self) -> bytes:
        (n,) = _U32.unpack(self.take(4))
        return self.take(n)


def _write_atomic(path: str, data: bytes, mode: int) -> None:
    """`importlib._bootstrap_external._write_atomic` (3.10-3.13: a temporary file beside
    `path`, then `os.replace`), but every byte written: that one makes a single `write`
    call, and a write cut short (a full disk) would leave a truncated `.pyc` that the stock
    importer then trusts (its header is right) and fails on with `EOFError`."""
    tmp = f"{path}.{id(path)}"
    fd = os.open(tmp, os.O_EXCL | os.O_CREAT | os.O_WRONLY, mode & 0o666)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def compile_one(source: str, cfile: str | None, optimize: int, mode: int) -> bytes:
    """Compile `source` (str path) like py_compile.compile; returns a response without id."""
    loader = importlib.machinery.SourceFileLoader("<py_compile>", source)
    try:
        # Stat before reading, as SourceLoader.get_code does: a source modified after the
        # stat gets a pyc that is stale (rejected), never one that is wrongly fresh.
        stats = loader.path_stats(source)
        source_bytes = loader.get_data(source)
    except OSError as exc:
        return b"U" + _str(type(exc).__name__) + _str(str(exc))

    with warnings.catch_warnings(record=True) as caught:
        # Record (instead of print) every warning the compiler emits, e.g. SyntaxWarning
        # for invalid escape sequences; "always" so none is deduplicated away.
        warnings.simplefilter("always")
        try:
            code = loader.source_to_code(source_bytes, source, _optimize=optimize)
        except SyntaxError as exc:
            msg = exc.msg if isinstance(exc.msg, str) else str(exc)
            return b"S" + _str(type(exc).__name__) + _i64(exc.lineno) + _i64(exc.offset) + _str(msg)
        except UnicodeError as exc:
            return b"U" + _str(type(exc).__name__) + _str(str(exc))
        except Exception as exc:  # what py_compile turns into PyCompileError
            return b"E" + _str(type(exc).__name__) + _str(str(exc))
    warning_texts = [f"{w.filename}:{w.lineno}: {w.category.__name__}: {w.message}" for w in caught]

    if MODES[mode] == "TIMESTAMP":
        data = _bootstrap_external._code_to_timestamp_pyc(code, stats["mtime"], stats["size"])
    else:
        source_hash = importlib.util.source_hash(source_bytes)
        data = _bootstrap_external._code_to_hash_pyc(
            code, source_hash, MODES[mode] == "CHECKED_HASH"
        )
    data = bytes(data)

    written = False
    write_error = None
    if cfile is not None:
        # py_compile refuses to replace a symlink or a non-regular file (it raises
        # FileExistsError); here that is a pyc not written, as is any OSError.
        if os.path.islink(cfile):
            write_error = (
                f"{cfile} is a symlink and will be changed into a regular file if "
                "import writes a byte-compiled file to it"
            )
        elif os.path.exists(cfile) and not os.path.isfile(cfile):
            write_error = (
                f"{cfile} is a non-regular file and will be changed into a regular "
                "one if import writes a byte-compiled file to it"
            )
        else:
            try:
                dirname = os.path.dirname(cfile)
                if dirname:
                    try:
                        os.makedirs(dirname)
                    except FileExistsError:
                        pass
                file_mode = _bootstrap_external._calc_mode(source)
                _write_atomic(cfile, data, file_mode)
                written = True
            except OSError as exc:
                write_error = f"{type(exc).__name__}: {exc}"

    response = b"O" + bytes([written]) + _bytes(data)
    if write_error is None:
        response += b"\x00"
    else:
        response += b"\x01" + _str(write_error)
    response += _U32.pack(len(warning_texts))
    for text in warning_texts:
        response += _str(text)
    return response


def load_native(path: str) -> ModuleType:
    """ppyc's extension at `path`, imported under its own name without importing the
    `ppyc` package (whose hook must stay off here)."""
    spec = importlib.util.spec_from_file_location("ppyc._native", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def handle(payload: bytes, native: ModuleType | None) -> bytes:
    reader = _Reader(payload)
    kind = payload[:1]
    id_bytes = payload[1:9].ljust(8, b"\x00")
    try:
        reader.take(1)
        if kind == b"C" and native is None:
            _, optimize, mode = _COMPILE_HEAD.unpack(reader.take(_COMPILE_HEAD.size))
            if optimize > 2 or mode >= len(MODES):
                raise ValueError(f"bad request: optimize={optimize} mode={mode}")
            source = os.fsdecode(reader.blob())
            cfile = os.fsdecode(reader.blob()) if reader.u8() else None
            response = compile_one(source, cfile, optimize, mode)
        elif kind == b"I" and native is not None:
            reader.take(_U64.size)
            code = reader.blob()
            try:
                response = b"M" + _bytes(native.snapshot(code))
            except ValueError as exc:
                response = b"N" + _str(str(exc))
        else:
            raise ValueError(f"bad request kind {kind!r} for this worker")
    except Exception:
        import traceback  # only for a bug: its imports cost a fifth of a worker's start

        return b"X" + id_bytes + _str(traceback.format_exc())
    return response[:1] + id_bytes + response[1:]


def main() -> None:
    native: ModuleType | None = None
    image_fingerprint = b""
    image_note = ""
    if sys.argv[1:2] == ["--native"]:
        try:
            native = load_native(sys.argv[2])
            ok, fingerprint, _ = native.image_support()
            if ok:
                image_fingerprint = bytes.fromhex(fingerprint)
            else:
                image_note = fingerprint
        except Exception as exc:  # reported in the handshake
            image_note = f"cannot load ppyc's extension: {exc!r}"
    stdin = sys.stdin.buffer
    stdout = sys.stdout.buffer
    # Nothing but frames may reach the real stdout.
    sys.stdout = sys.stderr

    def send(payload: bytes) -> None:
        stdout.write(_U32.pack(len(payload)) + payload)
        stdout.flush()

    send(
        b"R"
        + _U32.pack(PROTOCOL)
        + _bytes(importlib.util.MAGIC_NUMBER)
        + _U32.pack(sys.hexversion)
        + _str(sys.implementation.cache_tag or "")
        + _str(sys.implementation.name)
        + _bytes(image_fingerprint)
        + _str(image_note)
    )
    while True:
        head = stdin.read(4)
        if not head:
            return
        if len(head) != 4:
            raise SystemExit("ppyc worker: truncated request frame")
        (length,) = _U32.unpack(head)
        payload = stdin.read(length)
        if len(payload) != length:
            raise SystemExit("ppyc worker: truncated request frame")
        send(handle(payload, native))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
