"""Dumps the code objects of an interpreter's own stdlib .pyc files as canonical JSON.

Used by marshal_conformance.rs: one JSON object per line, {"pyc": path, "code": canon,
"redump": hex of marshal.dumps of the loaded code}, for every stdlib `.py` that has a
`__pycache__/<stem>.<cache_tag>.pyc`. The Rust side
parses the same files with ppyc's marshal reader and must produce the same canonical form.
"""

from __future__ import annotations

import json
import marshal
import os
import struct
import sys
import sysconfig
from types import CodeType
from typing import Any


def canon(o: object) -> Any:
    if o is None:
        return ["None"]
    if o is True or o is False:
        return ["bool", o]
    if o is StopIteration:
        return ["StopIteration"]
    if o is Ellipsis:
        return ["Ellipsis"]
    if isinstance(o, int):
        return ["int", str(o)]
    if isinstance(o, float):
        return ["float", struct.pack("<d", o).hex()]
    if isinstance(o, complex):
        return ["complex", struct.pack("<d", o.real).hex(), struct.pack("<d", o.imag).hex()]
    if isinstance(o, bytes):
        return ["bytes", o.hex()]
    if isinstance(o, str):
        return ["str", o.encode("utf-8", "surrogatepass").hex()]
    if isinstance(o, tuple):
        return ["tuple", [canon(x) for x in o]]
    if isinstance(o, frozenset):
        # Iteration order depends on the process's hash seed: compare as sorted.
        return ["frozenset", sorted((canon(x) for x in o), key=json.dumps)]
    if isinstance(o, slice):
        return ["slice", canon(o.start), canon(o.stop), canon(o.step)]
    if isinstance(o, CodeType):
        fields: dict[str, Any] = {
            "argcount": o.co_argcount,
            "posonlyargcount": o.co_posonlyargcount,
            "kwonlyargcount": o.co_kwonlyargcount,
            "stacksize": o.co_stacksize,
            "flags": o.co_flags,
            "code": o.co_code.hex(),
            "consts": [canon(c) for c in o.co_consts],
            "names": [canon(n) for n in o.co_names],
            "varnames": [canon(n) for n in o.co_varnames],
            "cellvars": [canon(n) for n in o.co_cellvars],
            "freevars": [canon(n) for n in o.co_freevars],
            "filename": canon(o.co_filename),
            "name": canon(o.co_name),
            "firstlineno": o.co_firstlineno,
            "linetable": o.co_linetable.hex(),
        }
        if sys.version_info >= (3, 11):
            fields["qualname"] = canon(o.co_qualname)
            fields["exceptiontable"] = o.co_exceptiontable.hex()
        return ["code", fields]
    raise TypeError(f"unexpected constant {o!r}")


def main() -> None:
    stdlib = sysconfig.get_paths()["stdlib"]
    tag = sys.implementation.cache_tag
    out = sys.stdout
    for dirpath, dirnames, filenames in os.walk(stdlib):
        dirnames[:] = sorted(d for d in dirnames if d not in ("site-packages", "__pycache__"))
        for name in sorted(filenames):
            if not name.endswith(".py"):
                continue
            pyc = os.path.join(dirpath, "__pycache__", f"{name[:-3]}.{tag}.pyc")
            if not os.path.exists(pyc):
                continue
            with open(pyc, "rb") as f:
                data = f.read()
            code = marshal.loads(data[16:])
            # The same code marshalled again by this process: other bytes (reference flags
            # follow this process's reference counts, interning differs) for the same code.
            redump = marshal.dumps(code).hex()
            line = json.dumps({"pyc": pyc, "code": canon(code), "redump": redump}, sort_keys=True)
            out.write(line + "\n")


if __name__ == "__main__":
    main()
