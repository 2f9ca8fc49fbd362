"""The soak (issue 12, RELIABILITY.md): fresh-process imports of the test corpus, stock and
ppyc side by side, each pair with the same random hash seed and the same random interpreter
flags, the modes (image, marshal) taking turns; every pair must succeed and give the same
result: the same modules, `__file__`, `__cached__`, spec, public attributes and code objects
(constants, names, bytecode: what `loader.get_code` returns).

`tests/python/test_soak.py` runs a bounded soak in `make test`; `make soak` runs the long
one on every interpreter:

    python tests/python/soak.py --corpus DIR --iterations 1000 [--seed N] [--json FILE]

`DIR` is a corpus installed with `pip install --target` (the tests' `corpus` fixture makes
`build/corpus-<cache_tag>-<digest>`); packs for optimisation levels 0, 1 and 2 are built in it
first, so that runs with `-O` and `-OO` are served too.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# The corpus's top-level packages and a few deep modules, imported in this order.
IMPORTS = (
    "attrs",
    "certifi",
    "charset_normalizer",
    "click",
    "idna",
    "jinja2",
    "markdown_it",
    "markupsafe",
    "mdurl",
    "networkx",
    "packaging.version",
    "pygments.lexers.python",
    "requests",
    "rich.console",
    "rich.table",
    "six",
    "urllib3",
)

# Flags drawn for a run, any subset of up to three (under `-E` and `-I`, PYTHONHASHSEED and
# PPYC_MODE are ignored, as Python ignores its own variables); not `-S`, without which
# site-packages, where ppyc is installed, is not on sys.path.
FLAGS: tuple[tuple[str, ...], ...] = (
    ("-O",),
    ("-OO",),
    ("-B",),
    ("-E",),
    ("-I",),
    ("-X", "importtime"),
    ("-X", "dev"),
    ("-X", "warn_default_encoding"),
    ("-X", "utf8"),
)
FLAGS_311 = (("-X", "frozen_modules=off"), ("-X", "no_debug_ranges"))

PROGRAM = r"""
import importlib, importlib.machinery, json, sys, warnings
warnings.simplefilter("ignore")
root, names, hook = sys.argv[1], sys.argv[2].split(","), sys.argv[3] == "1"
sys.path.insert(0, root)
if hook:
    import ppyc
    ppyc.install()

# Under -E (and -I) the hash seed is each process's own, so a set's iteration order is too (with or
# without ppyc): sets are then compared by their elements.
unordered = sys.flags.ignore_environment

def const(c):
    if hasattr(c, "co_code"):
        return canon(c)
    if unordered and isinstance(c, frozenset):
        return ["frozenset", sorted(map(repr, c))]
    return repr(c)

def canon(code):
    return [code.co_filename, code.co_name, getattr(code, "co_qualname", None),
            code.co_firstlineno, code.co_code.hex(), [const(c) for c in code.co_consts],
            list(code.co_names), list(code.co_varnames)]

for name in names:
    importlib.import_module(name)
out = {}
for name, m in sorted(sys.modules.items()):
    f = getattr(m, "__file__", None)
    if not isinstance(f, str) or not f.startswith(root + "/") or m.__name__ != name:
        continue  # not the corpus's, or an alias (requests.packages.chardet)
    s = m.__spec__
    entry = {"file": f, "cached": getattr(m, "__cached__", None),
             "spec": [s.name, s.origin, s.cached, s.parent,
                      list(s.submodule_search_locations or []) or None],
             "attrs": sorted(f"{a}:{type(v).__name__}" for a, v in vars(m).items()
                             if not a.startswith("_"))}
    if isinstance(s.loader, importlib.machinery.SourceFileLoader):
        entry["code"] = canon(s.loader.get_code(name))
    out[name] = entry
served = sys.modules["ppyc"].stats()["served_by_mode"] if hook else {}
print(json.dumps({"modules": out, "served": served, "optimize": sys.flags.optimize}))
"""


def flags_for(rng: random.Random) -> list[str]:
    pool = list(FLAGS) + (list(FLAGS_311) if sys.version_info >= (3, 11) else [])
    chosen = rng.sample(pool, rng.randint(0, 3))
    if ("-O",) in chosen and ("-OO",) in chosen:
        chosen.remove(("-O",))
    return [part for flag in chosen for part in flag]


def run(
    python: str, corpus: Path, flags: list[str], seed: int, mode: str, hook: bool
) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PPYC_", "PYTHON"))}
    env["PYTHONHASHSEED"] = str(seed)
    env["PPYC_NO_PROGRESS"] = "1"
    if mode == "marshal":
        env["PPYC_MODE"] = "marshal"
    if not hook:
        env["PPYC_DISABLE"] = "1"
    proc = subprocess.run(
        [python, *flags, "-c", PROGRAM, str(corpus), ",".join(IMPORTS), "1" if hook else "0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    if proc.returncode != 0:
        return {"error": f"exit {proc.returncode}: {proc.stderr[-3000:]}"}
    return json.loads(proc.stdout.splitlines()[-1])


def prepare(python: str, corpus: Path) -> None:
    """Packs of the corpus for optimisation levels 0, 1 and 2, and the `.pyc` files the
    stock side loads, as after a `pip install` (without them the stock importer compiles
    each source itself, and set constants may iterate in another order than the same code
    loaded by `marshal`). `--force`: a pack made without `--write-pyc` would otherwise be
    reused and no `.pyc` written."""
    for level in ("0", "1", "2"):
        subprocess.run(
            [
                *(python, "-m", "ppyc", "compile", "--quiet", "--force", "--write-pyc"),
                *("-O", level, str(corpus)),
            ],
            check=True,
            env={**os.environ, "PPYC_NO_PROGRESS": "1"},
        )


def soak(python: str, corpus: Path, iterations: int, seed: int, modes: list[str]) -> dict:
    """Runs the soak; returns a report (`failures` lists every failed or differing pair)."""
    rng = random.Random(seed)
    report: dict[str, Any] = {
        "python": python,
        "iterations": iterations,
        "seed": seed,
        "pairs": 0,
        "failures": [],
        "served": {m: 0 for m in modes},
        "modules_compared": 0,
    }
    started = time.monotonic()
    for i in range(iterations):
        flags = flags_for(rng)
        hash_seed = rng.randrange(0, 2**32)
        mode = modes[i % len(modes)]
        what = {"iteration": i, "flags": flags, "PYTHONHASHSEED": hash_seed, "mode": mode}
        sides = [False, True] if rng.random() < 0.5 else [True, False]
        got = {hook: run(python, corpus, flags, hash_seed, mode, hook) for hook in sides}
        stock, packed = got[False], got[True]
        report["pairs"] += 1
        if "error" in stock or "error" in packed:
            report["failures"].append(
                {**what, "stock": stock.get("error"), "ppyc": packed.get("error")}
            )
            continue
        if packed["modules"] != stock["modules"]:
            differ = sorted(
                n
                for n in set(stock["modules"]) | set(packed["modules"])
                if stock["modules"].get(n) != packed["modules"].get(n)
            )
            report["failures"].append({**what, "differ": differ[:20]})
            continue
        report["modules_compared"] += len(stock["modules"])
        for m, n in packed["served"].items():  # by the mode used (-E ignores PPYC_MODE)
            report["served"][m] = report["served"].get(m, 0) + n
    report["seconds"] = round(time.monotonic() - started, 1)
    return report


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--iterations", type=int, default=1000)
    p.add_argument("--seed", type=int, default=int(time.time()))
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    corpus = args.corpus.resolve()
    prepare(sys.executable, corpus)
    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import MODES

    report = soak(sys.executable, corpus, args.iterations, args.seed, MODES)
    text = json.dumps(report, indent=1)
    if args.json:
        args.json.write_text(text)
    print(text)
    sys.exit(1 if report["failures"] else 0)


if __name__ == "__main__":
    main()
