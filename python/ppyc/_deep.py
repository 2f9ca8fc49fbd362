"""`ppyc verify --deep`: every module's image, loaded in this (fresh) process, against
`marshal.loads` of the same payload.

Run as `python -m ppyc._deep PACK [ROOT]`. For each module of the pack that has an image,
the image's code object and the unmarshalled one (with `co_filename` fixed as the loader
fixes it) must agree on every `co_*` attribute, on their constants compared deeply with
their exact types (frozensets also in iteration order), on `co_positions()` and `co_lines()`,
on `dis` output, on `hash()` and `==`, and on which names are the interpreter's interned
strings. Prints one line per difference and a summary; exit status 0 when there is none,
1 otherwise, 2 for a usage error.
"""

from __future__ import annotations

import _imp
import dis
import io
import marshal
import os
import re
import sys
import warnings
from typing import Any

from ppyc import _native

CodeType = type(compile("", "", "exec"))

_METHODS = ("co_lines", "co_positions")


def _attrs(code: Any) -> list[str]:  # noqa: ANN401
    return sorted(a for a in dir(code) if a.startswith("co_") and a not in _METHODS)


def _describe(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _compare(a: object, b: object, where: str, out: list[str], b2: object = None) -> None:
    """Appends every difference between `a` (from the image) and `b` (unmarshalled);
    `b2` is a second unmarshalled copy of `b`: where even two loads of the payload are not
    `==` (a NaN constant compares by identity), `==` and `hash()` are not compared."""
    if type(a) is not type(b):
        out.append(f"{where}: type {type(a).__name__} != {type(b).__name__}")
        return
    if isinstance(a, CodeType) and isinstance(b, CodeType):
        _compare_code(a, b, where, out, b2)
    elif isinstance(a, tuple) and isinstance(b, tuple):
        if len(a) != len(b):
            out.append(f"{where}: length {len(a)} != {len(b)}")
            return
        seconds = b2 if isinstance(b2, tuple) and len(b2) == len(b) else (None,) * len(b)
        for i, (x, y, z) in enumerate(zip(a, b, seconds, strict=True)):
            _compare(x, y, f"{where}[{i}]", out, z)
    elif isinstance(a, frozenset) and isinstance(b, frozenset):
        if a != b or [type(x) for x in a] != [type(y) for y in b]:
            out.append(f"{where}: {_describe(a)} != {_describe(b)}")
        elif list(a) != list(b):
            out.append(f"{where}: iteration order {_describe(list(a))} != {_describe(list(b))}")
    elif isinstance(a, float) and isinstance(b, float):
        if a.hex() != b.hex() and not (a != a and b != b):
            out.append(f"{where}: {a!r} != {b!r}")
    elif isinstance(a, complex) and isinstance(b, complex):
        _compare(a.real, b.real, where + ".real", out)
        _compare(a.imag, b.imag, where + ".imag", out)
    elif a != b:
        out.append(f"{where}: {_describe(a)} != {_describe(b)}")


def _interned(s: object) -> bool:
    return isinstance(s, str) and sys.intern(s) is s


_ADDRESS = re.compile(r" at 0x[0-9a-f]+")


def _dis(code: Any) -> str:  # noqa: ANN401
    """`dis` output, with the addresses of nested code objects left out."""
    buffer = io.StringIO()
    dis.dis(code, file=buffer, depth=0)
    return _ADDRESS.sub(" at 0x...", buffer.getvalue())


def _compare_code(a: Any, b: Any, where: str, out: list[str], b2: Any) -> None:  # noqa: ANN401
    names_a, names_b = _attrs(a), _attrs(b)
    if names_a != names_b:
        out.append(f"{where}: attributes {names_a} != {names_b}")
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # co_lnotab
        for attr in names_a:
            second = getattr(b2, attr, None)
            _compare(getattr(a, attr), getattr(b, attr), f"{where}.{attr}", out, second)
    for method in _METHODS:
        if hasattr(a, method) and list(getattr(a, method)()) != list(getattr(b, method)()):
            out.append(f"{where}.{method}() differs")
    for attr in ("co_names", "co_varnames", "co_cellvars", "co_freevars"):
        flags_a = [_interned(n) for n in getattr(a, attr)]
        flags_b = [_interned(n) for n in getattr(b, attr)]
        if flags_a != flags_b:
            out.append(f"{where}.{attr}: interned {flags_a} != {flags_b}")
    comparable = b2 is None or b == b2
    if comparable and a != b:
        out.append(f"{where}: the code objects are not equal")
    if comparable and hash(a) != hash(b):
        out.append(f"{where}: hash {hash(a)} != {hash(b)}")
    if _dis(a) != _dis(b):
        out.append(f"{where}: dis output differs")


def check_pack(path: str, root: str) -> tuple[int, int, list[str]]:
    """(modules with an image checked, modules without one, differences)."""
    pack = _native.Pack(path)
    mode, reason = pack.mode_info()
    if mode != "image":
        raise ValueError(f"this process cannot load the pack's images: {reason}")
    checked = skipped = 0
    problems: list[str] = []
    for name in pack.modules():
        record = pack.record(name)
        filename = os.path.join(root, *record["source_path"].split("/"))
        try:
            image = pack.load_image(name, filename)
        except ValueError as exc:
            if "has no image" in str(exc):
                skipped += 1
                continue
            problems.append(f"{name}: the image cannot be loaded: {exc}")
            continue
        payload = pack.payload(name)
        ref, ref2 = marshal.loads(payload), marshal.loads(payload)
        _imp._fix_co_filename(ref, filename)
        _imp._fix_co_filename(ref2, filename)
        out: list[str] = []
        _compare(image, ref, name, out, ref2)
        problems.extend(out)
        checked += 1
    return checked, skipped, problems


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        sys.stderr.write("usage: python -m ppyc._deep PACK [ROOT]\n")
        return 2
    path = argv[1]
    root = argv[2] if len(argv) == 3 else os.path.dirname(os.path.dirname(path))
    try:
        checked, skipped, problems = check_pack(path, root)
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"error: {path}: {exc}\n")
        return 1
    for line in problems:
        print(line)
    state = "OK" if not problems else f"{len(problems)} differences"
    print(
        f"{path}: {state}: {checked} images identical to marshal.loads, "
        f"{skipped} modules without an image"
    )
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
