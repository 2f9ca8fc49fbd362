"""The test corpus (tests/requirements-corpus.txt): every module imported through ppyc equals
the stock import: spec, __file__, __cached__, public attributes and code objects."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import MODES, mode_env

# Imports every module of the corpus in a fixed order and prints what must not change.
DUMP = r"""
import importlib, importlib.machinery, json, pkgutil, sys, warnings
warnings.simplefilter("ignore")
root = sys.argv[1]

def canon(code):
    return [code.co_filename, code.co_name, code.co_qualname if hasattr(code, "co_qualname")
            else None, code.co_firstlineno, code.co_code.hex(),
            [canon(c) if hasattr(c, "co_code") else repr(c) for c in code.co_consts],
            list(code.co_names), list(code.co_varnames)]

names = sorted({m.name for m in pkgutil.walk_packages([root], onerror=lambda n: None)})
out = {}
for name in names:
    try:
        m = importlib.import_module(name)
    except BaseException as exc:
        out[name] = {"error": f"{type(exc).__name__}: {exc}"}
        continue
    s = m.__spec__
    entry = {
        "file": getattr(m, "__file__", None), "cached": getattr(m, "__cached__", None),
        "spec": [s.name, s.origin, s.cached, s.has_location, s.parent,
                 list(s.submodule_search_locations or []) or None] if s else None,
        "attrs": sorted(f"{a}:{type(v).__name__}" for a, v in vars(m).items()
                        if not a.startswith("_")),
    }
    loader = getattr(s, "loader", None)
    if isinstance(loader, importlib.machinery.SourceFileLoader):
        entry["code"] = canon(loader.get_code(name))
    out[name] = entry
result = {"modules": out}
if "ppyc" in sys.modules and sys.modules["ppyc"].installed():
    result["stats"] = sys.modules["ppyc"].stats()
print(json.dumps(result))
"""


def dump(corpus: Path, hook: bool, mode: str = "marshal") -> dict:
    prelude = "import ppyc; ppyc.install()\n" if hook else ""
    env = {k: v for k, v in os.environ.items() if k != "PPYC_DISABLE"}
    env["PYTHONPATH"] = str(corpus)
    env["PYTHONHASHSEED"] = "0"  # set constants print in a stable order
    env.update(mode_env(mode))
    proc = subprocess.run(
        [sys.executable, "-c", prelude + DUMP, str(corpus)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    return json.loads(proc.stdout.splitlines()[-1])


@pytest.mark.parametrize("mode", MODES)
def test_every_corpus_module_is_identical_under_ppyc(corpus: Path, mode: str) -> None:
    stock = dump(corpus, hook=False)
    packed = dump(corpus, hook=True, mode=mode)
    assert "stats" not in stock
    stats = packed.pop("stats")
    assert sorted(packed["modules"]) == sorted(stock["modules"])
    for name, expected in stock["modules"].items():
        assert packed["modules"][name] == expected, name
    sources = [m for m in stock["modules"].values() if "code" in m]
    assert len(sources) > 1000
    # Every module imported from a source was served from the pack (each twice: import,
    # then the dump's get_code), and nothing fell back.
    (pack,) = [p for p in stats["packs"] if p["root"] == str(corpus)]
    assert pack["served"] >= 2 * len(sources), pack
    assert pack["fallbacks"] == {}, pack
    assert pack["mode"] == mode and stats["served_by_mode"][mode] == stats["served"]
    # Every module of the corpus has an image (none is refused by the snapshot).
    assert pack["images_not_used"] == {}, pack


@pytest.mark.skipif("image" not in MODES, reason="this interpreter has no image mode")
def test_every_corpus_image_is_what_marshal_loads(corpus: Path) -> None:
    # `ppyc verify --deep`: each module's image loaded in a child process and compared with
    # `marshal.loads` of its payload (every co_* attribute, constants deeply with their
    # types, co_positions, dis output).
    proc = subprocess.run(
        [sys.executable, "-m", "ppyc", "verify", "--deep", str(corpus)],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " 0 modules without an image" in proc.stdout, proc.stdout
    count = int(proc.stdout.split("OK: ")[1].split(" images identical")[0])
    assert count > 1000, proc.stdout
