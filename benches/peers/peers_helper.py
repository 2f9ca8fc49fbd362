"""Helpers of setup_peers.sh (run with the peer venv's interpreter, or any python3 for `emit`).

peers_helper.py ox-build OUT            pack the venv's site-packages and stdlib into an
                                        oxidized_importer packed-resources file
peers_helper.py loader MODULE CODE      run CODE, print the type of MODULE's __loader__
peers_helper.py emit KEY=STR KEY:=JSON  print one JSON object
"""

from __future__ import annotations

import json
import os
import sys
import sysconfig


def ox_build(out: str) -> None:
    """Everything importable from the venv, in memory, as the peer's docs show
    (docs/oxidized_importer_freezing_applications.rst): source + bytecode (opt level 0) +
    package data + dist-info of the venv's site-packages and the stdlib. Left out:
    extension modules (in-memory loading of a .so is Windows-only: the normal PathFinder
    keeps them), the stdlib's `test` package and the base interpreter's own site-packages
    (not on a venv's sys.path)."""
    import oxidized_importer as oi

    paths = sysconfig.get_paths()
    purelib, stdlib = paths["purelib"], paths["stdlib"]
    base_sp = os.path.join(stdlib, "site-packages")

    def key(r: object) -> str:
        return getattr(r, "module", None) or getattr(r, "package", None) or r.name

    hidden = set()
    if os.path.isdir(base_sp):
        hidden = {key(r) for r in oi.find_resources_in_path(base_sp)}
    collector = oi.OxidizedResourceCollector(allowed_locations=["in-memory"])
    count = 0
    for root, skip in ((purelib, set()), (stdlib, hidden)):
        for r in oi.find_resources_in_path(root):
            if isinstance(r, oi.PythonExtensionModule):
                continue
            if isinstance(r, oi.PythonModuleBytecode) and r.optimize_level != 0:
                continue
            k = key(r)
            if k in skip or k.split(".")[0] == "test":
                continue
            collector.add_in_memory(r)
            count += 1
    resources, _file_installs = collector.oxidize()
    finder = oi.OxidizedFinder()
    finder.add_resources(resources)
    data = finder.serialize_indexed_resources()
    tmp = out + ".tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, out)
    print(f"{len(resources)} resources, {len(data)} bytes -> {out}")


def main() -> None:
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "ox-build":
        ox_build(args[0])
    elif cmd == "loader":
        module, code = args
        exec(code, {"__name__": "__main__"})
        m = sys.modules[module]
        loader = type(getattr(m, "__loader__", None))
        print(f"{loader.__module__}.{loader.__qualname__}")
    elif cmd == "emit":
        obj = {}
        for arg in args:
            k, _, v = arg.partition("=")
            if k.endswith(":"):
                obj[k[:-1]] = json.loads(v)
            else:
                obj[k] = v
        print(json.dumps(obj))
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
