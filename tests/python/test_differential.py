"""Differential test of the import hook's finder (runtime/src/hook/finder.rs): ppyc finds
exactly what the stock importer finds.

For every name looked up, the spec returned by ppyc's meta path finder (the object of
`sys.meta_path` whose repr is `<ppyc import hook>`) must equal, field by field, the spec
returned by the stock `importlib.machinery.PathFinder`: name, origin, cached, parent,
has_location, submodule_search_locations, loader type (ppyc's `PackLoader`, a
`SourceFileLoader` subclass, counts as a `SourceFileLoader`; every other type must be the
same) and loader.name / loader.path. When ppyc returns None, the stock answer must be None,
a namespace package, or a module that a stock `FileFinder` finds only after an entry that
ppyc leaves to `PathFinder` (a finder of another kind, a bytes entry, a path that is not
UTF-8, `-vv`): which of these is recorded and asserted. `PathFinder`, which runs next in
`sys.meta_path`, must then find what the stock importer finds.

One child interpreter per scenario, with the hook installed (HARNESS). The child keeps two
import states: ppyc's (the real `sys.path_importer_cache`, which the hook reads) and the
stock importer's (its own path-entry finders, swapped into `sys.path_importer_cache` around
each stock call). So a directory cache that ppyc fills or dates wrongly is not hidden by a
stock call reusing it, and after every step the `FileFinder`s of both states must hold the
same directory listing and the same mtime (`_path_cache`, `_path_mtime`).

Submodules are looked up in the search locations of their parent's stock spec (what the
parent's `__path__` is once imported) rather than by importing every parent: importing
the whole standard library would run its modules (`antigravity`, `this`, `idlelib`, the test
suites...). While a submodule is looked up without its parent imported, a module object
holding only `__path__` stands in for the parent in `sys.modules` (a namespace spec's
`_NamespacePath` reads its parent's `__path__` there). The scenario tests import their
parents for real (namespace packages, editable installs) and the end-to-end tests import
everything twice, with ppyc and with PPYC_DISABLE=1.

The random orders of `sys.path` use a seed printed on failure; PPYC_DIFF_SEED=N reruns one.
"""

from __future__ import annotations

import importlib.machinery
import json
import os
import py_compile
import random
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import pytest
from conftest import MODES, mode_env, run_ppyc, write

EXT = importlib.machinery.EXTENSION_SUFFIXES[0]
STDLIB = Path(os.__file__).parent

# The child's side: two import states and the comparison (see the module docstring).
HARNESS = r'''
import importlib, importlib.machinery as M, importlib.metadata, importlib.util
import json, os, sys, types, zipimport
from importlib import _bootstrap_external as BE

PF = M.PathFinder
HOOK = next(f for f in sys.meta_path if repr(f) == "<ppyc import hook>")
STOCK_LOADERS = [(s, ld) for ld, suffixes in BE._get_supported_file_loaders() for s in suffixes]
SUFFIXES = sorted(M.all_suffixes(), key=len, reverse=True)
SOURCE_LOADER = f"{M.SourceFileLoader.__module__}.{M.SourceFileLoader.__qualname__}"
STOCK_CACHE = {}
COMPARED = set()
REPORT = {"compared": 0, "kinds": {}, "results": {}, "mismatches": [], "state": []}
STEP = [""]


class Stock:
    """The stock importer's own path-entry finders in sys.path_importer_cache for the
    duration of the block; ppyc's are put back after."""

    def __enter__(self):
        self.mine = dict(sys.path_importer_cache)
        sys.path_importer_cache.clear()
        sys.path_importer_cache.update(STOCK_CACHE)

    def __exit__(self, *exc):
        STOCK_CACHE.clear()
        STOCK_CACHE.update(sys.path_importer_cache)
        sys.path_importer_cache.clear()
        sys.path_importer_cache.update(self.mine)


def step(label):
    STEP[0] = label


def is_pack_loader(loader):
    return type(loader).__module__ == "ppyc._native" and type(loader).__name__ == "PackLoader"


def describe(spec, ppyc=False):
    if spec is None:
        return None
    loader = spec.loader
    kind = None if loader is None else f"{type(loader).__module__}.{type(loader).__qualname__}"
    if ppyc and is_pack_loader(loader):
        kind = SOURCE_LOADER if isinstance(loader, M.SourceFileLoader) else "not a SourceFileLoader"
    locations = spec.submodule_search_locations
    return {
        "name": spec.name, "origin": spec.origin, "cached": spec.cached,
        "parent": spec.parent, "has_location": spec.has_location,
        "submodule_search_locations": None if locations is None else list(locations),
        "loader": kind,
        "loader.name": getattr(loader, "name", None),
        "loader.path": getattr(loader, "path", None),
        "loader.archive": getattr(loader, "archive", None),
        "loader.prefix": getattr(loader, "prefix", None),
    }


def attempt(call):
    try:
        return call(), None
    except Exception as exc:
        return None, {"raises": [type(exc).__name__, str(exc)]}


def decline_reason(name, path):
    """Why ppyc may leave `name` to PathFinder although PathFinder finds a module with a
    loader (finder.rs, Hook::find_spec): an entry it does not search comes before the one
    a stock FileFinder finds the module in. None: ppyc had to find it."""
    if sys.flags.verbose >= 2:
        return "-vv"
    try:
        name.encode()
    except UnicodeEncodeError:
        return "name not UTF-8"
    for entry in sys.path if path is None else path:
        if isinstance(entry, bytes):
            return "bytes entry"
        if not isinstance(entry, str):
            continue
        finder = PF._path_importer_cache(entry)
        if finder is None:
            continue
        if type(finder) is not M.FileFinder or finder._loaders != STOCK_LOADERS:
            return getattr(finder, "__name__", type(finder).__name__) + " entry"
        try:
            finder.path.encode()
        except UnicodeEncodeError:
            return "entry not UTF-8"
        spec = finder.find_spec(name)
        if spec is not None and spec.loader is not None:
            return None
    return None


def compare(name, path=None):
    """ppyc's finder against PathFinder for `name` in `path` (else sys.path); returns the
    stock spec, described."""
    parent = name.rpartition(".")[0]
    stub = path is not None and parent and parent not in sys.modules
    if stub:
        sys.modules[parent] = types.ModuleType(parent)
        sys.modules[parent].__path__ = path
    try:
        return _compare(name, path)
    finally:
        if stub:
            del sys.modules[parent]


def _compare(name, path):
    got, got_error = attempt(lambda: HOOK.find_spec(name, path))
    with Stock():
        want, want_error = attempt(lambda: PF.find_spec(name, path))
        stock = want_error or describe(want)
        reason = None
        if got is None and got_error is None and want is not None and want.loader is not None:
            reason = decline_reason(name, path)
    problem = None
    if got_error:
        kind, mine = "raises", got_error
    elif got is not None:
        kind = "PackLoader" if is_pack_loader(got.loader) else "found"
        mine = describe(got, ppyc=True)
    else:
        # What the import system does next: PathFinder, on ppyc's state.
        effective, effective_error = attempt(lambda: PF.find_spec(name, path))
        mine = effective_error or describe(effective)
        if want_error:
            kind = "raises"
        elif want is None:
            kind = "miss"
        elif want.loader is None:
            kind = "namespace"
        elif reason:
            kind = "left: " + reason
        else:
            kind = "declined"
            problem = "ppyc returned None for a module that a stock FileFinder finds"
    if problem is None and mine != stock:
        problem = "ppyc's spec differs from the stock spec"
    if problem:
        REPORT["mismatches"].append({
            "step": STEP[0], "name": name, "path": None if path is None else list(path),
            "problem": problem, "ppyc": mine, "stock": stock,
        })
    REPORT["compared"] += 1
    REPORT["kinds"][kind] = REPORT["kinds"].get(kind, 0) + 1
    REPORT["results"][f"{STEP[0]}|{name}"] = kind
    COMPARED.add(name)
    return stock


def children(locations):
    """The names a lookup in `locations` may find: every entry, without module suffix."""
    names = set()
    for d in locations:
        try:
            entries = os.listdir(d)
        except (OSError, TypeError, ValueError):
            continue
        for n in entries:
            for s in SUFFIXES:
                if n.endswith(s):
                    n = n[: -len(s)]
                    break
            if n and "." not in n:
                names.add(n)
    return sorted(names)


def walk(name, path=None, limit=8):
    """Compares `name`, then, if the stock importer finds a package, every name in it
    and one that does not exist."""
    stock = compare(name, path)
    locations = (stock or {}).get("submodule_search_locations")
    if locations is not None and limit > 0:
        for child in children(locations) + ["ppyc_no_such_module"]:
            walk(f"{name}.{child}", locations, limit - 1)


def compare_dotted(name):
    """Compares `name` and each of its parents, each in its parent's stock locations."""
    path = None
    parts = name.split(".")
    for i in range(len(parts)):
        stock = compare(".".join(parts[: i + 1]), path)
        path = (stock or {}).get("submodule_search_locations")
        if path is None:
            return


def check_state():
    """ppyc's and the stock importer's FileFinders for the same entry must be alike."""
    for key in sorted(sys.path_importer_cache.keys() & STOCK_CACHE.keys(), key=repr):
        a, b = sys.path_importer_cache[key], STOCK_CACHE[key]
        if type(a) is not type(b):
            REPORT["state"].append({"step": STEP[0], "entry": repr(key),
                                    "ppyc": repr(a), "stock": repr(b)})
        elif type(a) is M.FileFinder and (a.path, a._path_mtime, a._path_cache) != (
            b.path, b._path_mtime, b._path_cache
        ):
            REPORT["state"].append({
                "step": STEP[0], "entry": repr(key),
                "ppyc": [a.path, a._path_mtime, sorted(a._path_cache - b._path_cache)],
                "stock": [b.path, b._path_mtime, sorted(b._path_cache - a._path_cache)],
            })


def invalidate_both():
    """importlib.invalidate_caches() in both states (the hook's own caches included)."""
    importlib.invalidate_caches()
    with Stock():
        importlib.invalidate_caches()


def same_tick(directory, change):
    """Runs `change` in `directory`, then gives the directory its mtime back."""
    st = os.stat(directory)
    change()
    os.utime(directory, ns=(st.st_atime_ns, st.st_mtime_ns))


def later(directory, ns):
    st = os.stat(directory)
    os.utime(directory, ns=(st.st_atime_ns, st.st_mtime_ns + ns))


def emit():
    print("REPORT=" + json.dumps(REPORT))
'''

# Imports NAMES (pairs of a module name and an expression of `m` giving a value of it) and
# prints what must be the same with and without ppyc.
E2E = r"""
import importlib, importlib.machinery as M, json, sys
import ppyc

def canon_loader(loader):
    kind = type(loader)
    served = kind.__module__ == "ppyc._native" and isinstance(loader, M.SourceFileLoader)
    if served:
        kind = M.SourceFileLoader
    return f"{kind.__module__}.{kind.__qualname__}", served

out = {"installed": ppyc.installed(), "modules": {}, "served": []}
for name, expr in NAMES:
    try:
        m = importlib.import_module(name)
        value = repr(eval(expr))
    except Exception as exc:
        out["modules"][name] = {"raises": [type(exc).__name__, str(exc)]}
        continue
    s = m.__spec__
    kind, served = canon_loader(s.loader)
    if served:
        out["served"].append(name)
    locations = s.submodule_search_locations
    out["modules"][name] = {
        "__file__": getattr(m, "__file__", None),
        "__cached__": getattr(m, "__cached__", None),
        "__path__": list(m.__path__) if hasattr(m, "__path__") else None,
        "__package__": m.__package__,
        "spec": [s.name, s.origin, s.cached, s.parent, s.has_location,
                 None if locations is None else list(locations)],
        "loader": [kind, getattr(s.loader, "name", None), getattr(s.loader, "path", None)],
        "value": value,
    }
print("E2E=" + json.dumps(out))
"""


def child(
    code: str,
    paths: list[Path | str] | tuple[()] = (),
    *,
    env: dict[str, str] | None = None,
    flags: tuple[str, ...] = (),
    cwd: Path | None = None,
    hook: bool = True,
    marker: str = "REPORT=",
) -> dict:
    """Runs `code` (after HARNESS when `hook`) in a fresh interpreter with `paths` as
    PYTHONPATH; returns the JSON it printed after `marker`."""
    full_env = dict(os.environ)
    full_env.pop("PPYC_DISABLE", None)
    full_env.pop("PYTHONPYCACHEPREFIX", None)
    full_env["PYTHONPATH"] = os.pathsep.join(map(str, paths))
    # Nothing is written into the trees: their directory mtimes are the test's to set.
    full_env["PYTHONDONTWRITEBYTECODE"] = "1"
    full_env.update(env or {})
    prelude = "import ppyc; ppyc.install()\n" + (HARNESS if hook else "")
    proc = subprocess.run(
        [sys.executable, *flags, "-c", prelude + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-6000:]
    lines = [x for x in proc.stdout.splitlines() if x.startswith(marker)]
    assert lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(lines[-1][len(marker) :])


def assert_same(report: dict, context: str = "") -> None:
    problems = report["mismatches"] + report["state"]
    shown = "\n".join(json.dumps(p, ensure_ascii=False) for p in problems[:8])
    assert not problems, f"{context}{len(problems)} differences from the stock importer:\n{shown}"
    assert report["compared"] > 0


def kinds_of(report: dict, step: str = "") -> dict[str, str]:
    """name -> kind of result, for the lookups of `step`."""
    return {k.split("|", 1)[1]: v for k, v in report["results"].items() if k.startswith(step + "|")}


def compile_pack(root: Path, *args: str) -> None:
    # Some trees are `sys.path` entries with an `__init__.py` (d1): packed all the same.
    result = run_ppyc("compile", "--sys-path-entry", *args, root)
    assert result.code == 0, result


def age(root: Path, seconds: float = 3600) -> None:
    """Dates every directory of `root` `seconds` back (as if built long ago: a pack then
    may record their listings, spec/FORMAT.md section 12)."""
    past = time.time_ns() - int(seconds * 1e9)
    for d in [root, *(p for p in root.rglob("*") if p.is_dir() and not p.is_symlink())]:
        os.utime(d, ns=(past, past))


def sourceless(root: Path, name: str, text: str) -> None:
    """`root/name.pyc`, a legacy bytecode file without source."""
    src = root / f"{name}_src.py"
    src.write_text(text)
    py_compile.compile(str(src), cfile=str(root / f"{name}.pyc"), doraise=True)
    src.unlink()


def zip_tree(path: Path, files: dict[str, str]) -> None:
    with zipfile.ZipFile(path, "w") as z:
        dirs = {str(Path(rel).parent) + "/" for rel in files if "/" in rel}
        for d in sorted(dirs):
            z.writestr(d, "")
        for rel, text in files.items():
            z.writestr(rel, text)


def e2e(
    names: list[tuple[str, str]], paths: list[Path | str], setup: str = "", **kw: object
) -> tuple[dict, dict]:
    """Imports `names` (after `setup`) with ppyc and without (PPYC_DISABLE=1); both
    results, checked to be the same and to come from an active and an inactive hook."""
    code = setup + f"NAMES = {names!r}\n" + E2E
    env = dict(kw.pop("env", None) or {})  # type: ignore[call-overload]
    packed = child(code, paths, hook=False, marker="E2E=", env=env, **kw)  # type: ignore[arg-type]
    stock = child(
        code,
        paths,
        hook=False,
        marker="E2E=",
        env={**env, "PPYC_DISABLE": "1"},
        **kw,  # type: ignore[arg-type]
    )
    assert packed["installed"] and not stock["installed"]
    assert stock["served"] == []
    for name, _ in names:
        assert packed["modules"][name] == stock["modules"][name], name
    return packed, stock


# --- The standard library and the corpus ---------------------------------------------------

ODD_NAMES = [
    "ppyc_no_such_module",
    "",
    " ",
    "x\x00y",
    "\udcff",
    "caf\u00e9",
    "cafe\u0301",
    "__pycache__",
    "__init__",
    "__main__",
    "site-packages",
    "lib-dynload",
    "JSON",
    "os.path",
    "json.decoder",
    "a" * 300,
]


def test_stdlib_and_corpus_find_what_stock_finds(corpus: Path, tmp_path: Path) -> None:
    # Every name the stock importer can find from sys.path (the standard library,
    # lib-dynload, the test venv's site-packages and the packed corpus on PYTHONPATH):
    # every directory entry at every level of every package, without sampling (about
    # 6 000 lookups, a second), every module the standard library's pack holds where it has
    # one, a name that does not exist in each package, and odd names.
    report = child(
        f"""
        import pkgutil, ppyc
        stdlib = {str(STDLIB)!r}
        step("sys.path")
        tops = set()
        for entry in sys.path:
            tops.update(children([entry or "."]))
        for top in sorted(tops) + {ODD_NAMES!r}:
            walk(top)
        pack = os.path.join(stdlib, "__pycache__", ppyc._native.pack_file_name(
            sys.implementation.cache_tag, sys.flags.optimize))
        held = ppyc.Pack(pack).modules() if os.path.exists(pack) else []
        REPORT["stdlib_pack"] = len(held)
        REPORT["pack_names_not_walked"] = sorted(set(held) - COMPARED)
        for name in held:
            if name not in COMPARED:
                compare_dotted(name)
        REPORT["iter_modules_not_walked"] = sorted(
            {{m.name for m in pkgutil.iter_modules([stdlib])}} - COMPARED)
        check_state()
        emit()
        """,
        [corpus],
        cwd=tmp_path,
    )
    assert_same(report)
    kinds = report["kinds"]
    assert kinds.get("declined", 0) == 0
    assert report["pack_names_not_walked"] == [] and report["iter_modules_not_walked"] == []
    assert report["compared"] > 5000, kinds
    assert kinds["namespace"] > 100 and kinds["miss"] > 500, kinds
    # Every source module of the corpus is found with a PackLoader (its pack is fresh).
    results = kinds_of(report, "sys.path")
    corpus_sources = [
        ".".join(p.relative_to(corpus).with_suffix("").parts).removesuffix(".__init__")
        for p in corpus.rglob("*.py")
        if "-" not in p.relative_to(corpus).parts[0]
        and p.relative_to(corpus).parts[0] != "bin"
        # (an extension module of the same name comes first: charset_normalizer.md)
        and not any(
            p.with_name(p.stem + s).exists() for s in importlib.machinery.EXTENSION_SUFFIXES
        )
    ]
    assert len(corpus_sources) > 1000
    not_served = sorted(n for n in corpus_sources if results[n] != "PackLoader")
    assert not_served == [], {n: results[n] for n in not_served[:20]}
    if report["stdlib_pack"]:
        assert results["json"] == results["email.mime.text"] == "PackLoader"


# --- Synthetic trees ----------------------------------------------------------------------


def synthetic(tmp_path: Path) -> dict[str, Path]:
    """Directories with the same names as modules, packages, namespace portions,
    extension modules and sourceless files; d1 and d2 packed, d3 not."""
    d1, d2, d3 = tmp_path / "d1", tmp_path / "d2", tmp_path / "d3"
    write(
        d1,
        {
            "shadow.py": "VALUE = 'd1 shadow module'\n",
            "only1.py": "VALUE = 'only1'\n",
            "pkg/__init__.py": "VALUE = 'd1 pkg'\n",
            "pkg/sub.py": "VALUE = 'd1 pkg.sub'\n",
            "pkg/inner/__init__.py": "VALUE = 'inner'\n",
            "pkg/inner/leaf.py": "VALUE = 'leaf'\n",
            "pkg/data.txt": "data\n",
            "split/a.py": "VALUE = 'split.a'\n",
            "split/deep/x.py": "VALUE = 'split.deep.x'\n",
            "modwins.py": "VALUE = 'module, not the directory'\n",
            "modwins/x.py": "VALUE = 'x'\n",
            "pkgwins.py": "VALUE = 'module'\n",
            "pkgwins/__init__.py": "VALUE = 'package, not the module'\n",
            f"extwins{EXT}": "",
            "extwins.py": "VALUE = 'source, not the extension'\n",
            "portion_then_module/p.py": "VALUE = 'p'\n",
            "colorsys.py": "VALUE = 'not the stdlib colorsys'\n",
            "__init__.py": "VALUE = '__init__ of d1'\n",
            ".py": "VALUE = 'empty name'\n",
            "bad-name.py": "VALUE = 'bad-name'\n",
            "caf\u00e9.py": "VALUE = 'caf\u00e9'\n",
            "Case.py": "VALUE = 'Case'\n",
            "notapkg/readme.txt": "text\n",
            "stale.py": "VALUE = 'stale'\n",
        },
    )
    sourceless(d1, "sourceless", "VALUE = 'sourceless'\n")
    (d1 / os.fsdecode(b"\xff.py")).write_text("VALUE = 'surrogate'\n")
    write(
        d2,
        {
            "shadow/__init__.py": "VALUE = 'd2 shadow package'\n",
            "shadow/part.py": "VALUE = 'd2 shadow.part'\n",
            "only2.py": "VALUE = 'only2'\n",
            "split/b.py": "VALUE = 'split.b'\n",
            "split/deep/y.py": "VALUE = 'split.deep.y'\n",
            "pkg/__init__.py": "VALUE = 'd2 pkg'\n",
            "pkg/sub.py": "VALUE = 'd2 pkg.sub'\n",
            "pkg/only_d2.py": "VALUE = 'only in d2 pkg'\n",
            "portion_then_module.py": "VALUE = 'module after a portion'\n",
        },
    )
    write(
        d3,
        {
            "shadow.py": "VALUE = 'd3 shadow, unpacked'\n",
            "only3.py": "VALUE = 'only3'\n",
            "split.py": "VALUE = 'split module'\n",
        },
    )
    sourceless(d3, "only3c", "VALUE = 'only3c'\n")
    compile_pack(d1)
    compile_pack(d2)
    (d1 / "stale.py").write_text("VALUE = 'stale, edited after the pack was built'\n")
    zipped = tmp_path / "lib.zip"
    zip_tree(
        zipped,
        {
            "zmod.py": "VALUE = 'zmod'\n",
            "shadow.py": "VALUE = 'zip shadow'\n",
            "zpkg/__init__.py": "VALUE = 'zpkg'\n",
            "zpkg/zsub.py": "VALUE = 'zpkg.zsub'\n",
            "split/z.py": "VALUE = 'split.z'\n",
        },
    )
    cwd = tmp_path / "cwd"
    write(
        cwd,
        {
            "cwdmod.py": "VALUE = 'cwd'\n",
            "rel/relmod.py": "VALUE = 'relative entry'\n",
            "rel/shadow.py": "VALUE = 'relative shadow'\n",
        },
    )
    nonutf = Path(os.fsdecode(bytes(tmp_path) + b"/\xff-dir"))
    write(nonutf, {"nonutf.py": "VALUE = 'in a directory whose name is not UTF-8'\n"})
    (tmp_path / "link").symlink_to(d2)
    (tmp_path / "afile.txt").write_text("a file, not a directory\n")
    return {
        "d1": d1,
        "d2": d2,
        "d3": d3,
        "zip": zipped,
        "cwd": cwd,
        "nonutf": nonutf,
        "link": tmp_path / "link",
        "file": tmp_path / "afile.txt",
        "missing": tmp_path / "missing",
    }


STDLIB_SAMPLE = [
    "colorsys",
    "json",
    "os",
    "string",
    "email",
    "collections",
    "importlib",
    "http",
    "xml",
]
SPECIAL = [
    "bad-name",
    "zmod",
    "zpkg",
    "ppyc_no_such_module",
    "case",
    "",
    "x\x00y",
    "\udcff",
    "cafe\u0301",
    "__pycache__",
]


def entries(tree: dict[str, Path]) -> list[str]:
    """Every kind of sys.path entry the synthetic tree offers."""
    d1 = str(tree["d1"])
    return [
        d1,
        d1 + "/",
        d1.replace("/d1", "//d1"),
        str(tree["d2"]),
        str(tree["d3"]),
        str(tree["zip"]),
        "",
        "rel",
        "./rel",
        "rel/",
        str(tree["nonutf"]),
        str(tree["link"]),
        str(tree["file"]),
        str(tree["missing"]),
    ]


RANDOM_ORDERS = r"""
import random
base = list(sys.path)
pool = ENTRIES + [e for e in base if e]
tops = sorted({n for e in ENTRIES for n in children([e or "."])} | set(SPECIAL))
def lookups():
    for top in tops:
        walk(top, limit=3)
    for top in STDLIB_SAMPLE:
        walk(top, limit=2)
# Order 0 fixed (every kind of result), then random ones.
orders = [ENTRIES + base]
rng = random.Random(SEED)
for i in range(ORDERS):
    order = [e for e in pool if rng.random() < 0.8] + rng.sample(pool, 2)
    rng.shuffle(order)
    if rng.random() < 0.3:
        order.insert(rng.randrange(len(order) + 1), ENTRIES[0].encode())
    orders.append(order)
for i, order in enumerate(orders):
    step(f"order {i}")
    sys.path[:] = order
    REPORT.setdefault("orders", []).append(repr(order) if i else "fixed")
    lookups()
    check_state()
    if i % 5 == 4:
        invalidate_both()
sys.path[:] = base
emit()
"""


def test_random_sys_path_orders(tmp_path: Path) -> None:
    tree = synthetic(tmp_path)
    seed = int(os.environ.get("PPYC_DIFF_SEED") or random.randrange(1 << 32))
    code = (
        f"ENTRIES = {entries(tree)!r}\nSEED = {seed}\nORDERS = 20\n"
        f"STDLIB_SAMPLE = {STDLIB_SAMPLE!r}\nSPECIAL = {SPECIAL!r}\n" + RANDOM_ORDERS
    )
    report = child(code, cwd=tree["cwd"])
    assert_same(report, f"seed={seed} (rerun with PPYC_DIFF_SEED={seed}): ")
    fixed = kinds_of(report, "order 0")
    expected = {
        "shadow": "PackLoader",  # d1's module, before d2's package and d3's module
        "pkg.sub": "PackLoader",
        "modwins": "PackLoader",
        "pkgwins": "PackLoader",
        "extwins": "found",  # ExtensionFileLoader
        "sourceless": "found",  # SourcelessFileLoader
        "stale": "PackLoader",  # found as usual; the pack falls back when loading
        "": "found",  # d1/.py; not in the pack
        "bad-name": "PackLoader",  # any file name FileFinder finds is packed
        "__init__": "found",  # d1/__init__.py: d1 is no package, its pack does not hold it
        "split": "found",  # d3/split.py (unpacked) after two portions, before the zip
        "portion_then_module": "PackLoader",  # d2's module after d1's namespace portion
        "notapkg": "namespace",
        "__pycache__": "namespace",
        "\udcff": "left: name not UTF-8",
        "case": "miss",
        "cafe\u0301": "miss",
        "zmod": "left: zipimporter entry",
        "zpkg": "left: zipimporter entry",
        "cwdmod": "left: zipimporter entry",
        "relmod": "left: zipimporter entry",
        "nonutf": "left: zipimporter entry",
        "colorsys": "PackLoader",  # d1/colorsys.py, before the standard library
        "json": "left: zipimporter entry",
        "os": "left: zipimporter entry",
        "ppyc_no_such_module": "miss",
    }
    assert {n: fixed.get(n) for n in expected} == expected
    kinds = report["kinds"]
    assert kinds.get("declined", 0) == 0
    assert kinds["PackLoader"] > 100 and kinds["found"] > 100 and kinds["namespace"] > 20
    # The random orders put the zip, the directory that is not UTF-8 and bytes entries
    # before modules that the stock importer finds after them.
    assert kinds["left: zipimporter entry"] > 20
    assert sum(v for k, v in kinds.items() if k.startswith("left: ")) > 100


def test_pythonpath_and_the_working_directory(tmp_path: Path) -> None:
    tree = synthetic(tmp_path)
    # PYTHONPATH as users write it: relative entries, trailing slashes, empty elements,
    # a zip, entries that do not exist; sys.path as the interpreter makes it from there.
    paths: list[Path | str] = [
        tree["d2"],
        "rel",
        str(tree["d1"]) + "/",
        "",
        tree["missing"],
        tree["d3"],
        tree["zip"],
        tree["link"],
    ]
    other = tmp_path / "elsewhere"
    write(other, {"cwdmod.py": "VALUE = 'other cwd'\n", "shadow.py": "VALUE = 'x'\n"})
    gone = tmp_path / "gone"
    gone.mkdir()
    tops = sorted({n for e in entries(tree) for n in children_of(e, tree["cwd"])} | set(SPECIAL))
    report = child(
        f"""
        step("start")
        for top in {tops!r}:
            walk(top)
        check_state()
        # '' is the working directory of the moment.
        os.chdir({str(other)!r})
        if "" not in sys.path:
            sys.path.insert(0, "")
        step("chdir")
        for top in {tops!r}:
            walk(top)
        check_state()
        # A working directory that no longer exists: '' is skipped.
        os.chdir({str(gone)!r})
        os.rmdir({str(gone)!r})
        step("cwd gone")
        for top in {tops!r}:
            walk(top)
        check_state()
        invalidate_both()
        step("cwd gone, invalidated")
        for top in {tops!r}:
            walk(top)
        check_state()
        emit()
        """,
        paths,
        cwd=tree["cwd"],
    )
    assert_same(report)
    assert kinds_of(report, "start")["shadow"] == "PackLoader"  # d2's package
    assert kinds_of(report, "start")["relmod"] == "found"
    chdir = kinds_of(report, "chdir")
    assert chdir["cwdmod"] == "found" and chdir["shadow"] == "found"  # elsewhere/shadow.py
    # (PYTHONPATH's empty element is the start directory, made absolute: cwdmod stays.)
    assert kinds_of(report, "cwd gone")["shadow"] == "PackLoader"


def children_of(entry: str, cwd: Path) -> list[str]:
    """The names directly in a sys.path entry (relative to `cwd`)."""
    path = cwd / entry if not os.path.isabs(entry) else Path(entry)
    if not path.is_dir():
        return []
    return sorted({p.name.split(".")[0] for p in path.iterdir()} - {""})


# --- Changes after `ppyc compile` ------------------------------------------------------------

LIVE = {
    "a.py": "VALUE = 'a'\n",
    "gone.py": "VALUE = 'gone'\n",
    "old.py": "VALUE = 'old'\n",
    "swap.py": "VALUE = 'module, to become a package'\n",
    "pkg/__init__.py": "VALUE = 'pkg'\n",
    "pkg/sub.py": "VALUE = 'pkg.sub'\n",
    "tonamespace/__init__.py": "",
    "tonamespace/m.py": "VALUE = 'm'\n",
    "edited.py": "VALUE = 'edited'\n",
}
LIVE_NAMES = [
    "a",
    "gone",
    "old",
    "renamed",
    "new",
    "new2",
    "swap",
    "pkg",
    "tonamespace",
    "later",
    "edited",
    "new3",
    "ppyc_no_such_module",
]

CHANGES = r"""
import shutil
LIVE, LATER = sys.argv[1], sys.argv[2]
sys.path[:0] = [LIVE, LATER]

def everything(label):
    step(label)
    for name in NAMES:
        walk(name)
    check_state()

def both_search(name):
    # Both states' FileFinders search now, by the stock FileFinder.find_spec, which sets
    # _path_mtime as Python computes st_mtime.
    PF.find_spec(name)
    with Stock():
        PF.find_spec(name)

def write(rel, text="VALUE = 1\n"):
    with open(os.path.join(LIVE, rel), "w") as f:
        f.write(text)

everything("start")
same_tick(LIVE, lambda: write("new.py", "VALUE = 'new'\n"))
everything("added, same mtime")
later(LIVE, 1)
everything("+1 ns")
later(LIVE, 1000)
everything("+1 us")
later(LIVE, 10**9)
everything("+1 s")
same_tick(LIVE, lambda: os.unlink(os.path.join(LIVE, "gone.py")))
everything("deleted, same mtime")
later(LIVE, 10**9)
everything("deleted, +1 s")
same_tick(LIVE, lambda: os.rename(os.path.join(LIVE, "old.py"), os.path.join(LIVE, "renamed.py")))
everything("renamed, same mtime")
later(LIVE, 10**9)
everything("renamed, +1 s")
def to_package():
    os.unlink(os.path.join(LIVE, "swap.py"))
    os.mkdir(os.path.join(LIVE, "swap"))
    write("swap/__init__.py", "VALUE = 'now a package'\n")
same_tick(LIVE, to_package)
everything("module to package, same mtime")
later(LIVE, 10**9)
everything("module to package, +1 s")
# A package losing its __init__.py: the parent's mtime does not change.
os.unlink(os.path.join(LIVE, "tonamespace", "__init__.py"))
everything("package to namespace")
# Inside a package: its own directory's FileFinder.
same_tick(os.path.join(LIVE, "pkg"), lambda: write("pkg/added.py"))
everything("added in a package, same mtime")
later(os.path.join(LIVE, "pkg"), 10**9)
everything("added in a package, +1 s")
# An edited (stale) module is found as before.
write("edited.py", "VALUE = 'edited after the pack was built, longer'\n")
everything("edited")
# invalidate_caches() forgets the listings kept for an unchanged mtime.
same_tick(LIVE, lambda: write("new2.py"))
everything("added again, same mtime")
invalidate_both()
everything("invalidate_caches")
# Searched by the stock FileFinder in both states, then changed at the same mtime: ppyc
# must take the _path_mtime that Python set as its own (no new listing).
later(LIVE, 10**9)
both_search("a")
same_tick(LIVE, lambda: write("new3.py"))
everything("stock search, then added at the same mtime")
# The directory removed, then made again.
saved = LIVE + ".saved"
shutil.copytree(LIVE, saved)
shutil.rmtree(LIVE)
everything("directory removed")
os.rename(saved, LIVE)
everything("directory back")
st = os.stat(LIVE)
shutil.rmtree(LIVE)
open(LIVE, "w").close()
everything("directory replaced by a file")
os.unlink(LIVE)
shutil.copytree(LATER, LIVE)
os.utime(LIVE, ns=(st.st_atime_ns, st.st_mtime_ns))
everything("another directory at the old mtime")
emit()
"""


def test_files_added_deleted_and_renamed_after_compile(tmp_path: Path) -> None:
    live, later_dir = tmp_path / "live", tmp_path / "later"
    write(live, LIVE)
    write(later_dir, {"later.py": "VALUE = 'later'\n", "renamed.py": "VALUE = 'later/renamed'\n"})
    age(live)
    compile_pack(live)
    compile_pack(later_dir)
    code = f"NAMES = {LIVE_NAMES!r}\nimport sys\nsys.argv[1:] = {[str(live), str(later_dir)]!r}\n"
    report = child(code + CHANGES)
    assert_same(report)

    def kinds(step: str) -> dict[str, str]:
        return kinds_of(report, step)

    assert kinds("start")["a"] == "PackLoader" and kinds("start")["new"] == "miss"
    # A new file at the same directory mtime is not seen, as by the stock FileFinder.
    assert kinds("added, same mtime")["new"] == "miss"
    assert kinds("+1 s")["new"] == "found"  # found; not in the pack
    assert kinds("deleted, same mtime")["gone"] == "miss"
    assert kinds("renamed, same mtime")["renamed"] == "PackLoader"  # later/renamed.py
    assert kinds("renamed, +1 s")["renamed"] == "found"  # live/renamed.py, not in the pack
    assert kinds("module to package, same mtime")["swap"] == "miss"
    assert kinds("module to package, +1 s")["swap"] == "found"
    assert kinds("package to namespace")["tonamespace"] == "namespace"
    assert kinds("added in a package, same mtime")["pkg.added"] == "miss"
    assert kinds("added in a package, +1 s")["pkg.added"] == "found"
    assert kinds("edited")["edited"] == "PackLoader"
    assert kinds("added again, same mtime")["new2"] == "miss"
    assert kinds("invalidate_caches")["new2"] == "found"
    assert kinds("stock search, then added at the same mtime")["new3"] == "miss"
    assert kinds("directory removed")["later"] == "PackLoader"
    assert kinds("directory removed")["a"] == "miss"
    assert kinds("directory back")["a"] == "PackLoader"
    assert kinds("directory replaced by a file")["a"] == "miss"
    # (Found there; the hook keeps its decision that no pack serves that directory.)
    assert kinds("another directory at the old mtime")["later"] in {"found", "PackLoader"}


def test_fresh_process_after_changes_at_the_same_directory_mtime(tmp_path: Path) -> None:
    # A pack built long after its directories last changed; then files are added, deleted
    # and renamed and each directory gets its mtime back (as `tar`, `rsync -a` or `cp -a`
    # leave it), or a new one. A new process lists every directory it searches, whatever
    # its mtime: it sees every change.
    same, beyond = tmp_path / "same", tmp_path / "beyond"
    for root in (same, beyond):
        write(root, LIVE)
        age(root)
        compile_pack(root)
        before = {d: os.stat(d) for d in (root, root / "pkg")}
        (root / "new.py").write_text("VALUE = 'new'\n")
        (root / "gone.py").unlink()
        (root / "old.py").rename(root / "renamed.py")
        (root / "pkg" / "added.py").write_text("VALUE = 'added'\n")
        for d, st in before.items():
            shift = 0 if root == same else 10**9
            os.utime(d, ns=(st.st_atime_ns, st.st_mtime_ns + shift))
    names = ["new", "gone", "old", "renamed", "pkg", "a"]
    report = child(
        f"""
        for root in {[str(same), str(beyond)]!r}:
            step(root)
            for name in {names!r}:
                walk(name, [root])
        check_state()
        emit()
        """
    )
    assert_same(report)
    for root in (same, beyond):
        kinds = kinds_of(report, str(root))
        assert kinds["new"] == kinds["renamed"] == kinds["pkg.added"] == "found", kinds
        assert kinds["gone"] == kinds["old"] == "miss" and kinds["a"] == "PackLoader", kinds
    # And imported: what the stock importer imports.
    imports = [(n, "m.VALUE") for n in ("new", "renamed", "pkg.added", "a", "gone", "old")]
    e2e(imports, [same])


# --- Namespace packages, zip files, editable installs ------------------------------------


def test_namespace_packages_split_over_two_directories(tmp_path: Path) -> None:
    d1, d2, d3 = tmp_path / "ns1", tmp_path / "ns2", tmp_path / "ns3"
    write(
        d1,
        {
            "ns/a.py": "VALUE = 'ns.a'\n",
            "ns/sub/x.py": "VALUE = 'ns.sub.x'\n",
            "ns/both.py": "VALUE = 'ns.both from ns1'\n",
            "nsreg/ignored.py": "VALUE = 'portion before a regular package'\n",
            "nsmod/p.py": "VALUE = 'portion before a module'\n",
        },
    )
    write(
        d2,
        {
            "ns/b.py": "VALUE = 'ns.b'\n",
            "ns/sub/y.py": "VALUE = 'ns.sub.y'\n",
            "ns/both.py": "VALUE = 'ns.both from ns2'\n",
            "ns/pkg/__init__.py": "VALUE = 'ns.pkg'\n",
            "ns/pkg/leaf.py": "VALUE = 'ns.pkg.leaf'\n",
            "nsreg/__init__.py": "VALUE = 'regular package after a portion'\n",
            "nsmod.py": "VALUE = 'module after a portion'\n",
        },
    )
    write(d3, {"ns/c.py": "VALUE = 'ns.c, on a directory added later'\n"})
    for d in (d1, d2, d3):
        compile_pack(d)
    report = child(
        f"""
        step("top")
        for name in ["ns", "nsreg", "nsmod", "ns_none"]:
            walk(name)
        # Imported for real (through the hook, then PathFinder): submodules are looked up
        # in the namespace package's own _NamespacePath.
        import ns, ns.sub
        step("imported")
        for name in ["a", "b", "both", "sub", "pkg", "c", "ppyc_no_such_module"]:
            walk("ns." + name, ns.__path__)
        for name in ["x", "y", "z"]:
            compare("ns.sub." + name, ns.sub.__path__)
        # A third portion: the _NamespacePath follows sys.path.
        sys.path.append({str(d3)!r})
        step("third portion")
        for name in ["a", "c"]:
            compare("ns." + name, ns.__path__)
        REPORT["ns_path"] = list(ns.__path__)
        check_state()
        emit()
        """,
        [d1, d2],
    )
    assert_same(report)
    assert kinds_of(report, "top")["ns"] == "namespace"
    assert kinds_of(report, "top")["nsreg"] == kinds_of(report, "top")["nsmod"] == "PackLoader"
    imported = kinds_of(report, "imported")
    assert imported["ns.a"] == imported["ns.b"] == imported["ns.pkg.leaf"] == "PackLoader"
    assert imported["ns.sub"] == "namespace" and imported["ns.c"] == "miss"
    assert imported["ns.sub.x"] == imported["ns.sub.y"] == "PackLoader"
    assert kinds_of(report, "third portion")["ns.c"] == "PackLoader"
    assert report["ns_path"] == [str(d / "ns") for d in (d1, d2, d3)]
    names = ["ns", "ns.a", "ns.b", "ns.both", "ns.sub", "ns.sub.x", "ns.sub.y", "ns.pkg"]
    packed, _ = e2e(
        [(n, "getattr(m, 'VALUE', None)") for n in [*names, "ns.pkg.leaf", "nsreg", "nsmod"]],
        [d1, d2],
    )
    assert {"ns.a", "ns.b", "ns.sub.x", "nsreg", "nsmod"} <= set(packed["served"])


def test_zip_file_on_sys_path(tmp_path: Path) -> None:
    tree = synthetic(tmp_path)
    paths = [tree["d1"], tree["zip"], tree["d2"]]
    report = child(
        f"""
        step("zip")
        for name in ["shadow", "only1", "zmod", "zpkg", "only2", "split", "pkg", "nosuch"]:
            walk(name)
        # A package whose __path__ goes through a zip, then a directory.
        import zpkg
        zpkg.__path__.append({str(tree["d1"])!r})
        for name in ["zsub", "only1", "pkg"]:
            walk("zpkg." + name, zpkg.__path__)
        check_state()
        emit()
        """,
        paths,
    )
    assert_same(report)
    kinds = kinds_of(report, "zip")
    assert kinds["shadow"] == kinds["only1"] == kinds["pkg.sub"] == "PackLoader"
    assert kinds["zmod"] == kinds["zpkg"] == kinds["only2"] == "left: zipimporter entry"
    assert kinds["split"] == "namespace" and kinds["nosuch"] == "miss"
    assert kinds["zpkg.zsub"] == kinds["zpkg.only1"] == "left: zipimporter entry"
    value = "getattr(m, 'VALUE', None)"
    e2e([(n, value) for n in ["shadow", "zmod", "zpkg.zsub", "only2", "split", "pkg"]], paths)


PROJECT = {
    "pyproject.toml": textwrap.dedent(
        """\
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "edproj"
        version = "0.1"

        [tool.setuptools]
        packages = ["edpkg", "edpkg.inner", "edns.part"]
        py-modules = ["edmod"]
        """
    ),
    "edpkg/__init__.py": "VALUE = 'edpkg'\n",
    "edpkg/sub.py": "VALUE = 'edpkg.sub'\n",
    "edpkg/inner/__init__.py": "VALUE = 'edpkg.inner'\n",
    "edpkg/inner/leaf.py": "VALUE = 'edpkg.inner.leaf'\n",
    "edmod.py": "VALUE = 'edmod'\n",
    "edns/part/__init__.py": "VALUE = 'edns.part'\n",
    "edns/part/m.py": "VALUE = 'edns.part.m'\n",
}


def test_editable_install(tmp_path: Path) -> None:
    # A flat-layout project installed with `pip install -e` (setuptools' editable wheel):
    # its modules come from the `__editable___edproj_0_1_finder` meta path finder, after
    # PathFinder, and a placeholder entry at the end of sys.path has a path hook of its own
    # (for namespace packages). Installed into a prefix of its own, not the test venv.
    project, prefix = tmp_path / "edproj", tmp_path / "prefix"
    write(project, PROJECT)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-index",
            "--no-cache-dir",
            "--no-build-isolation",
            "--no-deps",
            "--prefix",
            str(prefix),
            "-e",
            str(project),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    site = prefix / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    assert list(site.glob("__editable___edproj_*_finder.py")), sorted(site.iterdir())
    compile_pack(project)
    after = tmp_path / "after"  # a directory appended after the placeholder
    write(after, {"aftermod.py": "VALUE = 'after the placeholder'\n"})
    compile_pack(after)
    setup = f"import site, sys\nsite.addsitedir({str(site)!r})\nsys.path.append({str(after)!r})\n"
    report = child(
        setup
        + textwrap.dedent(
            """
        step("top")
        for name in ["edpkg", "edmod", "edns", "aftermod", "json", "ppyc_no_such_module"]:
            walk(name)
        import edpkg, edns
        step("imported")
        for name in ["sub", "inner", "ppyc_no_such_module"]:
            walk("edpkg." + name, edpkg.__path__)
        walk("edns.part", edns.__path__)
        REPORT["placeholder"] = [e for e in sys.path if "__editable__" in e]
        check_state()
        emit()
        """
        )
    )
    assert_same(report)
    assert len(report["placeholder"]) == 1
    top, imported = kinds_of(report, "top"), kinds_of(report, "imported")
    assert top["edpkg"] == top["edmod"] == "miss"  # not on sys.path: the editable finder's
    assert top["aftermod"] == "left: _EditableNamespaceFinder entry"
    assert top["json"] in {"found", "PackLoader"}
    assert imported["edpkg.sub"] == imported["edpkg.inner.leaf"] == "PackLoader"
    # End to end: the editable finder's modules, and the packed submodules ppyc serves.
    value = "getattr(m, 'VALUE', None)"
    names = ["edpkg", "edpkg.sub", "edpkg.inner.leaf", "edmod", "edns", "edns.part"]
    packed, _ = e2e(
        [(n, value) for n in [*names, "edns.part.m", "aftermod"]],
        [],
        setup=setup,
    )
    assert {"edpkg.sub", "edpkg.inner.leaf"} <= set(packed["served"])
    assert "edpkg" not in packed["served"]  # the editable finder's own spec


# --- Interpreter options -------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags",
    [("-O",), ("-OO",), ("-X", "pycache_prefix=PREFIX"), ("-vv",)],
    ids=["O", "OO", "pycache_prefix", "vv"],
)
def test_interpreter_options(tmp_path: Path, flags: tuple[str, ...]) -> None:
    tree = synthetic(tmp_path)
    flags = tuple(f.replace("PREFIX", str(tmp_path / "prefix")) for f in flags)
    names = ["shadow", "pkg", "split", "json", "sourceless", "nosuch"]
    report = child(
        f"""
        step("options")
        for name in {names!r}:
            walk(name, limit=1)
        check_state()
        emit()
        """,
        [tree["d1"], tree["d2"], tree["d3"]],
        flags=flags,
    )
    assert_same(report)
    kinds = kinds_of(report, "options")
    if flags == ("-vv",):
        # ppyc leaves every search to PathFinder (which prints each file it tries).
        assert kinds["shadow"] == kinds["pkg.sub"] == kinds["json"] == "left: -vv"
        assert "PackLoader" not in kinds.values() and "found" not in kinds.values()
    else:
        assert kinds["shadow"] in {"found", "PackLoader"} and kinds["sourceless"] == "found"


def test_pycache_prefix_set_at_run_time(tmp_path: Path) -> None:
    # `cache_from_source` reads sys.pycache_prefix at each call, so a program may set it
    # after start-up (after the .pth line installed the hook): spec.cached follows it.
    tree = synthetic(tmp_path)
    report = child(
        f"""
        for i, prefix in enumerate([{str(tmp_path / "prefix")!r}, None, "relative-prefix"]):
            sys.pycache_prefix = prefix
            step(f"prefix {{i}}")
            for name in ["shadow", "pkg", "json", "sourceless"]:
                walk(name, limit=1)
        emit()
        """,
        [tree["d1"]],
        cwd=tmp_path,
    )
    assert_same(report)


def test_finder_of_an_entry_replaced(tmp_path: Path) -> None:
    # sys.path_importer_cache is a plain dict: a program may put another finder for an
    # entry and take it out again (or clear the dict). Each time, ppyc must look at the
    # finder that is there now, even one made at the address of a finder gone since.
    d = tmp_path / "d"
    write(d, {"rmod.py": "VALUE = 1\n"})
    compile_pack(d)
    report = child(
        f"""
        class Subclass(M.FileFinder):
            pass
        d = {str(d)!r}
        sys.path.insert(0, d)
        details = BE._get_supported_file_loaders()
        for i in range(100):
            step(f"round {{i}}")
            sys.path_importer_cache[d] = Subclass(d, *details)
            STOCK_CACHE[d] = Subclass(d, *details)
            compare("rmod")
            STOCK_CACHE[d] = M.FileFinder(d, *details)
            del sys.path_importer_cache[d]
            sys.path_importer_cache[d] = M.FileFinder(d, *details)
            compare("rmod")
        check_state()
        emit()
        """
    )
    assert_same(report)
    kinds = report["kinds"]
    assert kinds == {"left: Subclass entry": 100, "PackLoader": 100}, kinds


# --- End to end ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_end_to_end_synthetic(tmp_path: Path, mode: str) -> None:
    tree = synthetic(tmp_path)
    value = "getattr(m, 'VALUE', None)"
    names = [
        "shadow",
        "shadow.part",
        "pkg",
        "pkg.sub",
        "pkg.inner.leaf",
        "split",
        "split.a",
        "split.b",
        "split.deep.x",
        "modwins",
        "pkgwins",
        "portion_then_module",
        "colorsys",
        "sourceless",
        "only3c",
        "stale",
        "caf\u00e9",
        "zmod",
        "zpkg.zsub",
        "relmod",
        "cwdmod",
        "email.mime.text",
    ]
    # d2 first: its package `shadow`; d1's `pkg` and json.py; the zip after them.
    paths: list[Path | str] = [tree["d2"], tree["d1"], "rel", tree["zip"], tree["d3"]]
    packed, stock = e2e([(n, value) for n in names], paths, env=mode_env(mode), cwd=tree["cwd"])
    assert stock["modules"]["stale"]["value"] == "'stale, edited after the pack was built'"
    assert stock["modules"]["colorsys"]["value"] == "'not the stdlib colorsys'"
    assert {"shadow", "shadow.part", "pkg.sub", "colorsys", "caf\u00e9"} <= set(packed["served"])


def test_end_to_end_stdlib_and_corpus(corpus: Path) -> None:
    names = [
        ("json", "m.dumps({'a': [1, 2.5, None]})"),
        ("email.mime.text", "m.MIMEText('x').get_content_type()"),
        ("xml.dom.minidom", "m.parseString('<a><b/></a>').documentElement.tagName"),
        ("importlib.metadata", "sorted(n for n in dir(m) if not n.startswith('_'))"),
        ("sqlite3", "m.sqlite_version_info >= (3,)"),
        ("asyncio", "m.run(m.sleep(0, 'slept'))"),
        ("requests", "m.__version__"),
        ("rich.console", "m.Console(width=20).width"),
        ("jinja2", "m.Template('{{ x }}!').render(x=1)"),
        ("pygments.lexers.python", "m.PythonLexer.name"),
        ("click", "m.style('x', bold=True)"),
        ("attr", "m.__version_info__ >= (20,)"),
        ("six.moves", "m.range(3)"),
        ("markupsafe", "str(m.escape('<b>'))"),
        ("idna", "m.encode('example.com')"),
        ("charset_normalizer", "m.from_bytes(b'hello').best().encoding"),
        ("packaging.version", "str(m.Version('1.0.post1'))"),
    ]
    packed, _ = e2e(names, [corpus])
    assert {"requests", "rich.console", "jinja2", "idna"} <= set(packed["served"])
