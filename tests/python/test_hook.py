"""The import hook (spec/IMPORT.md): modules come from packs and nothing else changes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import CACHE_TAG, MODE, MODES, UNPRIVILEGED, mode_env, run_ppyc, write

HOOK_TREE: dict[str, str | bytes] = {
    "hmod.py": "VALUE = 1\n\n\ndef f():\n    return VALUE\n",
    "hpkg/__init__.py": "from . import sub\n",
    "hpkg/sub.py": "def boom():\n    raise ValueError('boom')\n",
    "hpkg/data.txt": "resource\n",
    "hpkg/__main__.py": "print('main of hpkg')\n",
    "hpkg/run.py": "if __name__ == '__main__':\n    print('ran', __file__)\n",
    "hpkg/deep/__init__.py": "",
    "hpkg/deep/leaf.py": "import sys\nLEAF = tuple(range(3))\n",
    "nsp/inner.py": "X = 2\n",
    "test_sample.py": "from hmod import f\n\n\ndef test_f():\n    assert f() == 3\n",
}
MODULES = ["hmod", "hpkg", "hpkg.sub", "hpkg.deep", "hpkg.deep.leaf", "nsp.inner"]

# Prints, as JSON, what the stock importer and ppyc must agree on for each module.
DUMP = """
import importlib, importlib.machinery, json, sys
def canon(code):
    return [code.co_filename, code.co_name, code.co_firstlineno, code.co_code.hex(),
            [canon(c) if hasattr(c, "co_code") else repr(c) for c in code.co_consts],
            list(code.co_names), list(code.co_varnames)]
out = {}
for name in NAMES:
    m = importlib.import_module(name)
    s = m.__spec__
    loader = s.loader
    code = loader.get_code(name) if hasattr(loader, "get_code") else None
    out[name] = {
        "file": getattr(m, "__file__", None), "cached": getattr(m, "__cached__", None),
        "path": list(getattr(m, "__path__", []) or []) or None,
        "spec": [s.name, s.origin, s.cached, s.has_location, s.parent,
                 list(s.submodule_search_locations or []) or None],
        "attrs": sorted(a for a in vars(m) if not a.startswith("__")),
        "code": canon(code) if code is not None else None,
        "is_source_loader": isinstance(loader, importlib.machinery.SourceFileLoader),
    }
print(json.dumps(out))
"""


def run_py(
    code: str,
    paths: list[Path],
    *,
    hook: bool = True,
    env: dict[str, str] | None = None,
    flags: tuple[str, ...] = (),
    unprivileged: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Runs `code` in a fresh interpreter with `paths` first on sys.path, with the hook
    installed by `ppyc.install()` (hook=True) or not."""
    prelude = "import ppyc; ppyc.install()\n" if hook else ""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join(map(str, paths))
    full_env.pop("PPYC_DISABLE", None)
    # CPython's debug allocator checks: memoryviews of the mapping (ppyc's one use of the
    # C API beyond PyO3's safe layer, runtime/src/ffi/buffer.rs) must not corrupt anything.
    full_env["PYTHONMALLOC"] = "debug"
    full_env.update(env or {})
    return subprocess.run(
        [
            *(UNPRIVILEGED if unprivileged else []),
            sys.executable,
            *flags,
            "-c",
            prelude + textwrap.dedent(code),
        ],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=300,
    )


def stats_of(code: str, paths: list[Path], **kw: object) -> tuple[dict, str]:
    code = textwrap.dedent(code) + "\nimport json; print('STATS=' + json.dumps(ppyc.stats()))"
    proc = run_py(code, paths, **kw)  # type: ignore[arg-type]
    assert proc.returncode == 0, proc.stderr
    line = [x for x in proc.stdout.splitlines() if x.startswith("STATS=")][-1]
    return json.loads(line[len("STATS=") :]), proc.stderr


def pack_stats(stats: dict, root: Path) -> dict:
    """The counters of the pack serving `root` (other packs, e.g. a packed stdlib, may
    serve other modules of the same run)."""
    found = [p for p in stats["packs"] if p["root"] == str(root)]
    assert len(found) == 1, stats["packs"]
    return found[0]


@pytest.fixture
def lib(tmp_path: Path) -> Path:
    root = tmp_path / "lib"
    write(root, HOOK_TREE)
    result = run_ppyc("compile", root)
    assert result.code == 0, result
    return root


def pack_path(root: Path, optimize: int = 0) -> Path:
    suffix = "" if optimize == 0 else f".opt-{optimize}"
    return root / "__pycache__" / f"__ppyc__.{CACHE_TAG}{suffix}.ppyc"


@pytest.mark.parametrize("mode", MODES)
def test_modules_are_served_and_identical_to_stock(lib: Path, mode: str) -> None:
    code = f"NAMES = {MODULES!r}\n" + DUMP
    stock = run_py(code, [lib], hook=False)
    assert stock.returncode == 0, stock.stderr
    packed = run_py(
        code + "\nimport ppyc; print(json.dumps(ppyc.stats()))", [lib], env=mode_env(mode)
    )
    assert packed.returncode == 0, packed.stderr
    stock_out = json.loads(stock.stdout)
    ppyc_out = json.loads(packed.stdout.splitlines()[0])
    assert ppyc_out == stock_out
    stats = json.loads(packed.stdout.splitlines()[1])
    assert stats["installed"] and stats["mode"] == mode
    assert stats["served_by_mode"][mode] == stats["served"]
    # Each module once at import, once more for the DUMP's own get_code().
    assert pack_stats(stats, lib)["served"] == 2 * len(MODULES), stats
    assert pack_stats(stats, lib)["fallbacks"] == {}
    assert stats["bytes"] > 0
    assert packed.stderr == ""


def test_loader_is_a_pack_loader_and_source_tools_work(lib: Path) -> None:
    proc = run_py(
        """
        import importlib.resources, inspect, linecache, pkgutil, traceback
        import hmod, hpkg
        print(type(hmod.__loader__).__name__)
        print(inspect.getsource(hmod.f).splitlines()[0])
        print(importlib.resources.files("hpkg").joinpath("data.txt").read_text().strip())
        print(sorted(m.name for m in pkgutil.iter_modules(hpkg.__path__)))
        try:
            hpkg.sub.boom()
        except ValueError:
            tb = traceback.format_exc()
        print(tb.splitlines()[-3].strip())
        print(tb.splitlines()[-2].strip())
        print(hmod.__loader__.get_source("hmod") == open(hmod.__file__).read())
        print(hmod.__loader__.is_package("hmod"), hpkg.__loader__.is_package("hpkg"))
        """,
        [lib],
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "PackLoader"
    assert lines[1] == "def f():"
    assert lines[2] == "resource"
    assert lines[3] == "['__main__', 'deep', 'run', 'sub']"
    assert lines[4] == f'File "{lib / "hpkg" / "sub.py"}", line 2, in boom'
    assert lines[5] == "raise ValueError('boom')"
    assert lines[6:] == ["True", "False True"]


def test_earlier_sys_path_entry_shadows_the_pack(lib: Path, tmp_path: Path) -> None:
    local = tmp_path / "local"
    write(local, {"hmod.py": "VALUE = 'local'\n"})
    stats, _ = stats_of("import hmod, hpkg; print(hmod.VALUE)", [local, lib])
    assert pack_stats(stats, lib)["served"] == 2  # hpkg and hpkg.sub, not hmod
    proc = run_py("import hmod; print(hmod.VALUE, hmod.__file__)", [local, lib])
    assert proc.stdout.split() == ["local", str(local / "hmod.py")]


def test_a_pack_inside_a_package_never_shadows_the_trees_pack(lib: Path, tmp_path: Path) -> None:
    # A pack in `lib/hpkg/__pycache__` built as if `lib/hpkg` were a `sys.path` entry (its
    # records `sub`, `deep.leaf`, ...; `ppyc compile` builds it there only with
    # `--sys-path-entry`): it serves those names when `lib/hpkg` is on sys.path, and never
    # `hpkg.sub`, which the pack of `lib` holds.
    assert run_ppyc("compile", lib / "hpkg").code != 0
    assert run_ppyc("compile", "--sys-path-entry", lib / "hpkg").code == 0
    stats, err = stats_of("import hpkg.sub, hpkg.deep.leaf", [lib], env={"PPYC_VERBOSE": "1"})
    assert pack_stats(stats, lib)["served"] == 4, (stats, err)
    assert pack_stats(stats, lib)["fallbacks"] == {}, err
    assert "not in the pack" not in err
    # The same directory as a sys.path entry: its own pack serves its top-level names.
    stats, err = stats_of("import sub, deep.leaf", [lib / "hpkg"])
    assert pack_stats(stats, lib / "hpkg")["served"] == 3, (stats, err)  # sub, deep, deep.leaf
    assert pack_stats(stats, lib / "hpkg")["fallbacks"] == {}


def test_modules_whose_file_names_are_not_identifiers_are_served(tmp_path: Path) -> None:
    # Names real code imports: `sysconfig`'s `_sysconfigdata_…-linux-gnu`, the tables rich
    # imports with `import_module` (`rich._unicode_data.unicode17-0-0`).
    root = tmp_path / "odd"
    write(
        root,
        {
            "_sysconfigdata__linux_x86_64-linux-gnu.py": "build_time_vars = {'X': 1}\n",
            "rpkg/__init__.py": "",
            "rpkg/_unicode_data/__init__.py": "",
            "rpkg/_unicode_data/unicode17-0-0.py": "TABLE = (1, 2, 3)\n",
            "1digit.py": "ONE = 1\n",
        },
    )
    assert run_ppyc("compile", root).code == 0
    names = [
        "_sysconfigdata__linux_x86_64-linux-gnu",
        "rpkg",
        "rpkg._unicode_data",
        "rpkg._unicode_data.unicode17-0-0",
        "1digit",
    ]
    code = f"NAMES = {names!r}\n" + DUMP
    stock = run_py(code, [root], hook=False)
    assert stock.returncode == 0, stock.stderr
    packed = run_py(code + "\nprint(json.dumps(ppyc.stats()))", [root])
    assert packed.returncode == 0, packed.stderr
    assert json.loads(packed.stdout.splitlines()[0]) == json.loads(stock.stdout)
    stats = json.loads(packed.stdout.splitlines()[1])
    # Each module once at import, once more for the DUMP's own get_code().
    assert pack_stats(stats, root)["served"] == 2 * len(names), stats
    assert pack_stats(stats, root)["fallbacks"] == {}


def test_edited_source_runs_the_new_code(lib: Path) -> None:
    (lib / "hmod.py").write_text("VALUE = 'edited'\n\n\ndef f():\n    return VALUE\n")
    stats, _ = stats_of("import hmod; print(hmod.VALUE)", [lib])
    assert pack_stats(stats, lib)["fallbacks"] == {"stale": 1}
    assert run_py("import hmod; print(hmod.VALUE)", [lib]).stdout.strip() == "edited"


def test_deleted_source_fails_as_stock(lib: Path) -> None:
    (lib / "hmod.py").unlink()
    stock = run_py("import hmod", [lib], hook=False)
    packed = run_py("import hmod", [lib])
    assert stock.returncode == packed.returncode == 1
    assert stock.stderr.splitlines()[-1] == packed.stderr.splitlines()[-1]
    assert "ModuleNotFoundError: No module named 'hmod'" in packed.stderr


def test_new_module_and_extension_precedence_are_stock(lib: Path) -> None:
    write(lib, {"fresh.py": "NEW = True\n", "hpkg/sub2.py": "Y = 3\n"})
    stats, _ = stats_of("import fresh, hpkg.sub2; print(fresh.NEW, hpkg.sub2.Y)", [lib])
    assert pack_stats(stats, lib)["fallbacks"] == {"not in the pack": 2}


def test_hash_and_unchecked_modes(lib: Path) -> None:
    src = lib / "hmod.py"
    code = "import hmod; print(hmod.VALUE)"
    writes = {"PYTHONDONTWRITEBYTECODE": ""}  # bytecode is written, whatever the caller's
    stock = {"PPYC_DISABLE": "1", **writes}
    assert run_py(code, [lib], env=stock).stdout.strip() == "1"  # its .pyc exists now
    st = src.stat()
    text = src.read_text()
    src.write_text(text.replace("VALUE = 1", "VALUE = 7"))  # same size
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
    # Same size and mtime: a timestamp check cannot see the edit (nor can a stock pyc).
    assert run_py(code, [lib], env=stock).stdout.strip() == "1"
    assert run_py(code, [lib]).stdout.strip() == "1"
    assert run_py(code, [lib], env={"PPYC_CHECK": "hash", **writes}).stdout.strip() == "7"
    # The digest saw the edit, so ppyc compiled the source and wrote its .pyc, as the
    # stock loader does when it compiles: the stock importer now sees the edit too.
    assert run_py(code, [lib], env=stock).stdout.strip() == "7"
    src.write_text("VALUE = 'much longer now'\n")
    assert run_py(code, [lib], env={"PPYC_CHECK": "unchecked"}).stdout.strip() == "1"
    bad = run_py(code, [lib], env={"PPYC_CHECK": "bogus"})
    # It says what happens: modules are still served, checked by timestamp.
    assert 'PPYC_CHECK="bogus"' in bad.stderr and bad.returncode == 0
    assert "checked by timestamp" in bad.stderr and "stock importer" not in bad.stderr


def test_hash_mode_never_pairs_a_digest_with_other_code(tmp_path: Path) -> None:
    # The .pyc is written in the same second as the source, then the source is edited
    # (same size) in that second: CPython still takes the .pyc. `ppyc compile` records the
    # new source's digest, so it must not take the .pyc's code beside it (hash mode would
    # then serve the old code while the source says the new): it compiles the new bytes.
    root = tmp_path / "lib"
    write(root, {"smod.py": "VALUE = 1\n"})
    src, pyc = root / "smod.py", root / "__pycache__" / f"smod.{CACHE_TAG}.pyc"
    second = src.stat().st_mtime_ns // 10**9 * 10**9
    os.utime(src, ns=(second + 10**8, second + 10**8))
    stock = {"PPYC_DISABLE": "1", "PYTHONDONTWRITEBYTECODE": ""}
    code = "import smod; print(smod.VALUE)"
    assert run_py(code, [root], hook=False, env=stock).stdout.strip() == "1"
    assert pyc.exists()
    os.utime(pyc, ns=(second + 3 * 10**8, second + 3 * 10**8))
    src.write_text("VALUE = 2\n")
    os.utime(src, ns=(second + 6 * 10**8, second + 6 * 10**8))
    for args in ((), ("--force",)):
        r = run_ppyc("compile", *args, root)
        assert r.code == 0, r
        # The second run may take the .pyc the first one compiled and wrote, if that was
        # in a later second than smod's mtime; the stale one never.
        assert "0 from .pyc, 1 compiled" in r.out or (args and "1 from .pyc" in r.out), r
        for check in ("hash", "timestamp"):
            stats, _ = stats_of(code, [root], env={"PPYC_CHECK": check})
            assert pack_stats(stats, root)["served"] == 1, stats
            out = run_py(code, [root], env={"PPYC_CHECK": check})
            assert out.stdout.strip() == "2", (args, check, out.stderr)
    # A .pyc written in a later second than its source's mtime proves it matches: taken.
    write(root, {"old.py": "VALUE = 3\n"})
    opyc = root / "__pycache__" / f"old.{CACHE_TAG}.pyc"
    os.utime(root / "old.py", ns=(second - 5 * 10**9, second - 5 * 10**9))
    assert run_py("import old", [root], hook=False, env=stock).returncode == 0
    assert opyc.exists()
    r = run_ppyc("compile", "--force", root)
    # old from its .pyc; smod from the .pyc its compile wrote, if that was in a later
    # second than smod's mtime, else compiled again.
    assert r.code == 0, r
    assert "1 from .pyc, 1 compiled" in r.out or "2 from .pyc, 0 compiled" in r.out, r
    stats, _ = stats_of("import old; print(old.VALUE)", [root])
    assert pack_stats(stats, root)["served"] == 1


def test_reload_sees_an_edit(lib: Path) -> None:
    proc = run_py(
        f"""
        import importlib, os, hmod
        first = hmod.VALUE
        with open({str(lib / "hmod.py")!r}, "w") as fh:
            fh.write("VALUE = 'reloaded'\\n")
        importlib.invalidate_caches()
        importlib.reload(hmod)
        print(first, hmod.VALUE)
        """,
        [lib],
    )
    assert proc.stdout.split() == ["1", "reloaded"], proc.stderr


def test_python_dash_m_and_pth_activation(lib: Path) -> None:
    enabled = run_ppyc("enable")
    assert enabled.code == 0, enabled
    try:
        env = {"PYTHONPATH": str(lib), "PPYC_VERBOSE": "1"}
        proc = subprocess.run(
            [sys.executable, "-m", "hpkg.run"],
            capture_output=True,
            text=True,
            env={**os.environ, **env},
        )
        assert proc.stdout.split() == ["ran", str(lib / "hpkg" / "run.py")], proc
        assert "hpkg.run: served from" in proc.stderr
        proc = subprocess.run(
            [sys.executable, "-m", "hpkg"],
            capture_output=True,
            text=True,
            env={**os.environ, **env},
        )
        assert proc.stdout == "main of hpkg\n"
        assert "hpkg.__main__: served from" in proc.stderr
        # site runs a venv's .pth lines twice (`venv()`, then `main()`): the start-up is
        # done once, and -X importtime shows it once.
        timed = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", "import ppyc; print(ppyc.installed())"],
            capture_output=True,
            text=True,
        )
        assert timed.stdout.strip() == "True", timed
        rows = [line for line in timed.stderr.splitlines() if line.endswith(" ppyc._native")]
        assert len(rows) == 1, timed.stderr
        off = subprocess.run(
            [sys.executable, "-c", "import ppyc, sys; print(ppyc.installed())"],
            capture_output=True,
            text=True,
            env={**os.environ, "PPYC_DISABLE": "1"},
        )
        assert off.stdout.strip() == "False"
        status = run_ppyc("status", env={"PYTHONPATH": str(lib)})
        assert status.code == 0, status
        assert "Enabled:     yes" in status.out
        assert "Hook:        active in this process" in status.out
        assert f"{pack_path(lib)}: 9 modules" in status.out
        as_json = json.loads(run_ppyc("status", "--json", env={"PYTHONPATH": str(lib)}).out)
        assert as_json["installed"] is True
        entry = next(e for e in as_json["sys_path"] if e["dir"] == str(lib))
        assert [p["mode"] for p in entry["packs"]] == [MODE]
    finally:
        disabled = run_ppyc("disable")
    assert disabled.code == 0 and "Removed" in disabled.out, disabled
    status = run_ppyc("status")
    assert "Enabled:     no" in status.out and "Hook:        not active" in status.out
    assert "not enabled" in run_ppyc("disable").out


def test_status_lists_stale_and_missing(lib: Path) -> None:
    (lib / "hmod.py").write_text("VALUE = 2\n")
    (lib / "hpkg" / "run.py").unlink()
    # Installed after the pack was built, and one that was there but did not compile.
    (lib / "hpkg" / "added.py").write_text("A = 1\n")
    later = time.time() + 2
    os.utime(lib / "hpkg" / "added.py", (later, later))
    (lib / "old_broken.py").write_text("def (:\n")
    past = time.time() - 3600
    os.utime(lib / "old_broken.py", (past, past))
    status = run_ppyc("status", env={"PYTHONPATH": str(lib)})
    assert "1 stale (the stock importer loads them): hmod" in status.out, status
    assert "1 deleted since the pack was built: hpkg.run" in status.out
    assert "1 new since the pack was built (the stock importer loads them): hpkg.added" in (
        status.out
    )
    assert "1 left out when the pack was built (`ppyc compile` says why): old_broken" in (
        status.out
    )
    assert f"to serve them again: run `ppyc compile {lib}`" in status.out
    # sys.path[0] of the command itself (its bin/ directory; the current directory under
    # `python -m ppyc`) is not one of the program's entries.
    script = Path(os.path.abspath(Path(sys.executable).parent)) / "ppyc"
    by_script = subprocess.run(
        [script, "status"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(lib)},
        cwd=lib.parent,
    )
    assert by_script.returncode == 0, by_script.stderr
    assert f"  {script.parent}:" not in by_script.stdout, by_script.stdout
    assert f"  (`{script.parent}`, sys.path[0] of this ppyc command, is left out" in (
        by_script.stdout
    )
    assert f"  {lib}:" in by_script.stdout


def test_optimize_level_needs_its_own_pack(lib: Path) -> None:
    stats, _ = stats_of("import hmod", [lib], flags=("-O",))
    assert not [p for p in stats["packs"] if p["root"] == str(lib)]
    assert run_ppyc("compile", "-O", "1", lib).code == 0
    stats, _ = stats_of("import hmod", [lib], flags=("-O",))
    assert pack_stats(stats, lib)["served"] == 1
    # An -O pack under the plain name is refused, not used.
    shutil.copy(pack_path(lib, 1), pack_path(lib, 0))
    stats, err = stats_of("import hmod", [lib])
    assert pack_stats(stats, lib)["usable"] is False
    assert "holds code for -O level 1, not 0" in err
    assert err.count("ppyc: warning") == 1


def test_disable_environment_variable(lib: Path) -> None:
    stats, _ = stats_of("import hmod", [lib], env={"PPYC_DISABLE": "1"})
    assert stats["installed"] is False and stats["served"] == 0


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_corrupt_pack_warns_once_and_imports_stock(lib: Path) -> None:
    flip(pack_path(lib), 50)
    code = f"NAMES = {MODULES!r}\n" + DUMP
    stock = run_py(code, [lib], hook=False)
    packed = run_py(code, [lib])
    assert packed.returncode == 0
    assert json.loads(packed.stdout) == json.loads(stock.stdout)
    assert packed.stderr.count("ppyc: warning") == 1
    assert "ignoring pack" in packed.stderr and "damaged" in packed.stderr


def test_damaged_payload_falls_back_for_that_module_only(lib: Path) -> None:
    pack = pack_path(lib)
    data = pack.read_bytes()
    # The marshalled name of hmod's function `f` appears only in hmod's payload.
    at = data.index(b"\xfa\x01f") if b"\xfa\x01f" in data else data.index(b"VALUE")
    flip(pack, at + 2)
    stats, err = stats_of("import hmod, hpkg; print(hmod.f())", [lib], env=mode_env("marshal"))
    assert pack_stats(stats, lib)["fallbacks"] == {"damaged": 1}
    assert pack_stats(stats, lib)["served"] >= 2
    assert err.count("ppyc: warning") == 1 and "is damaged (hmod" in err


def image_span(root: Path, name: str) -> tuple[int, int]:
    """Where module `name`'s object area is in its pack file."""
    import ppyc

    pack = ppyc.Pack(pack_path(root))
    index = pack.find(name)[6]
    info = pack.info()
    irel = next(s for s in info["sections"] if s["id"] == "IREL")
    imgo = next(s for s in info["sections"] if s["id"] == "IMGO")
    entry = pack_path(root).read_bytes()[irel["offset"] + 64 * index :][:16]
    offset, length = int.from_bytes(entry[:8], "little"), int.from_bytes(entry[8:], "little")
    return imgo["offset"] + offset, length


@pytest.mark.skipif(MODE != "image", reason="this interpreter has no image mode")
def test_damaged_image_falls_back_to_the_payload(lib: Path) -> None:
    start, length = image_span(lib, "hmod")
    flip(pack_path(lib), start + length // 2)
    stats, err = stats_of("import hmod, hpkg; print(hmod.f())", [lib])
    per_pack = pack_stats(stats, lib)
    # Still served, by marshal.loads of its intact payload; the reason is counted.
    assert per_pack["fallbacks"] == {} and per_pack["served"] >= 3
    assert per_pack["images_not_used"] == {"the image is damaged (digest mismatch)": 1}
    assert stats["served_by_mode"]["marshal"] == 1
    # Said once: the pack is damaged, though nothing was lost (issue 12).
    assert err.count("ppyc: warning") == 1, err
    assert "(hmod: the image is damaged (digest mismatch)); its code is loaded from" in err
    # Payload damaged too: the stock importer.
    data = pack_path(lib).read_bytes()
    at = data.index(b"\xfa\x01f") if b"\xfa\x01f" in data else data.index(b"VALUE")
    assert at < start, "in PAYL, which comes before IMGO"
    flip(pack_path(lib), at + 2)
    stats, err = stats_of("import hmod, hpkg; print(hmod.f())", [lib])
    assert pack_stats(stats, lib)["fallbacks"] == {"damaged": 1}
    assert err.count("ppyc: warning") == 1


def test_truncated_and_garbage_packs(lib: Path) -> None:
    pack = pack_path(lib)
    pack.write_bytes(pack.read_bytes()[:300])
    stats, err = stats_of("import hmod; print(hmod.VALUE)", [lib])
    assert pack_stats(stats, lib)["usable"] is False and "truncated" in err
    pack.write_bytes(b"\0" * 10)
    stats, err = stats_of("import hmod", [lib])
    assert pack_stats(stats, lib)["usable"] is False and "ignoring pack" in err


def test_pack_writable_by_others_is_refused(lib: Path) -> None:
    pack_path(lib).chmod(0o666)
    stats, err = stats_of("import hmod", [lib])
    assert pack_stats(stats, lib)["usable"] is False
    assert "writable by others" in err


def test_threads_import_concurrently(tmp_path: Path) -> None:
    root = tmp_path / "many"
    files: dict[str, str | bytes] = {f"m{i}.py": f"import time\nN = {i}\n" for i in range(60)}
    files.update({f"p{i}/__init__.py": f"from .m import V\nI = {i}\n" for i in range(10)})
    files.update({f"p{i}/m.py": f"V = {i} * 2\n" for i in range(10)})
    write(root, files)
    assert run_ppyc("compile", root).code == 0
    stats, err = stats_of(
        """
        import importlib, threading
        names = [f"m{i}" for i in range(60)] + [f"p{i}" for i in range(10)]
        errors = []
        def worker(k):
            try:
                for name in names[k::4] + names:
                    importlib.import_module(name)
            except Exception as exc:
                errors.append(exc)
        threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
        for t in threads: t.start()
        for t in threads: t.join()
        import sys
        assert not errors, errors
        assert all(sys.modules[f"m{i}"].N == i for i in range(60))
        assert all(sys.modules[f"p{i}"].V == 2 * i for i in range(10))
        """,
        [root],
    )
    assert pack_stats(stats, root)["served"] == 80 and err == ""


def test_pack_replaced_while_running(lib: Path) -> None:
    proc = run_py(
        f"""
        import subprocess, sys
        import hmod
        with open({str(lib / "hpkg" / "sub.py")!r}, "w") as fh:
            fh.write("def boom():\\n    return 'new'\\n")
        subprocess.run([sys.executable, "-m", "ppyc", "compile", "-q", {str(lib)!r}], check=True)
        import hpkg
        print(hpkg.sub.boom())
        """,
        [lib],
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "new"


def test_pytest_over_packed_code(lib: Path) -> None:
    code = """
        import pytest, sys
        sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", {path!r}]))
    """.format(path=str(lib / "test_sample.py"))
    stock = run_py(code, [lib], hook=False)
    packed = run_py(code, [lib])
    assert stock.returncode == packed.returncode == 1

    def clean(s: str) -> str:
        return re.sub(r"\d+\.\d+s", "[TIME]", s)

    assert clean(packed.stdout) == clean(stock.stdout)
    assert "assert 1 == 3" in packed.stdout


def test_verbose_explains_every_decision(lib: Path) -> None:
    (lib / "hmod.py").write_text("VALUE = 2\n")
    proc = run_py("import hmod, hpkg", [lib], env={"PPYC_VERBOSE": "1"})
    assert "ppyc: hook installed (check=timestamp, optimize=0)" in proc.stderr
    assert f"ppyc: using pack `{pack_path(lib)}` (9 modules)" in proc.stderr
    assert "ppyc: hmod: stock import (stale)" in proc.stderr
    assert "ppyc: hpkg: served from" in proc.stderr


def test_cache_location_pack_is_used(tmp_path: Path, cache_home: dict[str, str]) -> None:
    root = tmp_path / "ro"
    write(root, {"romod.py": "R = 1\n"})
    (root / "__pycache__").mkdir()
    (root / "__pycache__").chmod(0o555)
    try:
        result = run_ppyc("compile", root, env=cache_home, unprivileged=True)
        assert result.code == 0, result
        stats, _ = stats_of("import romod", [root], env=cache_home, unprivileged=True)
        assert pack_stats(stats, root)["served"] == 1
        assert pack_stats(stats, root)["path"].startswith(cache_home["XDG_CACHE_HOME"])
    finally:
        (root / "__pycache__").chmod(0o755)


def test_the_pack_written_last_serves(tmp_path: Path, cache_home: dict[str, str]) -> None:
    """A stale in-tree pack does not hide a fresher user-cache pack (built after the
    directory became read-only), and a newer in-tree pack wins over an old cached one
    (spec/FORMAT.md section 2, "Precedence")."""
    root = tmp_path / "site"
    write(root, {"pmod.py": "V = 1\n", "other.py": "W = 1\n"})
    assert run_ppyc("compile", root, env=cache_home, unprivileged=True).code == 0
    in_tree = pack_path(root)
    assert in_tree.exists()
    (root / "pmod.py").write_text("V = 22\n")
    (root / "__pycache__").chmod(0o555)
    try:
        result = run_ppyc("compile", root, env=cache_home, unprivileged=True)
        assert result.code == 0, result
        assert "the pack is in the user cache" in (result.out + result.err), result
        code = "import pmod, other; print('V=%d' % pmod.V)"
        stats, _ = stats_of(code, [root], env=cache_home, unprivileged=True)
        served = pack_stats(stats, root)
        assert served["path"].startswith(cache_home["XDG_CACHE_HOME"]), served
        assert served["served"] == 2 and not served["fallbacks"], served
        status = run_ppyc("status", env={**cache_home, "PYTHONPATH": str(root)})
        assert status.code == 0, status
        assert f"{in_tree}: 2 modules" in status.out, status.out
        assert "not used: `" + served["path"] + "` was written later" in status.out
        inspect = run_ppyc("inspect", root, env=cache_home)
        assert served["path"] in inspect.out, inspect.out
    finally:
        (root / "__pycache__").chmod(0o755)
    # Writable again: the new in-tree pack is the newest and serves.
    (root / "pmod.py").write_text("V = 333\n")
    assert run_ppyc("compile", root, env=cache_home, unprivileged=True).code == 0
    stats, _ = stats_of("import pmod", [root], env=cache_home, unprivileged=True)
    assert pack_stats(stats, root)["path"] == str(in_tree)
    assert pack_stats(stats, root)["served"] == 1


def test_coverage_measures_packed_code(lib: Path) -> None:
    code = """
        import coverage, json
        cov = coverage.Coverage(data_file=None)
        cov.start()
        import hmod, hpkg.sub
        hmod.f()
        cov.stop()
        print(json.dumps([cov.analysis2(m.__file__)[1:4] for m in (hmod, hpkg.sub)]))
    """
    stock = run_py(code, [lib], hook=False)
    packed = run_py(code, [lib])
    assert stock.returncode == packed.returncode == 0, packed.stderr
    assert json.loads(packed.stdout) == json.loads(stock.stdout)
    # hmod fully run, hpkg.sub's body (line 2) never.
    assert json.loads(packed.stdout)[1][2] == [2]  # (statements, excluded, missing)


def test_importtime_isolated_and_no_site(lib: Path) -> None:
    proc = run_py("import hmod", [lib], flags=("-X", "importtime"))
    assert proc.returncode == 0
    assert re.search(r"import time:\s+\d+ \|\s+\d+ \| hmod$", proc.stderr, re.M), proc.stderr
    # -I ignores PYTHONPATH and the user site; an explicit sys.path entry still works.
    isolated = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            f"import sys; sys.path.insert(0, {str(lib)!r}); import ppyc; ppyc.install(); "
            "import hmod, json; print(json.dumps(ppyc.stats()))",
        ],
        capture_output=True,
        text=True,
    )
    assert isolated.returncode == 0, isolated.stderr
    assert pack_stats(json.loads(isolated.stdout), lib)["served"] == 1
    # -S: no site, so no .pth: with ppyc enabled, nothing but an explicit install()
    # activates it. (The .pth line loads `ppyc._native` alone, never `ppyc`.)
    probe = (
        "import sys; print('ppyc._native' in sys.modules, "
        "any('ppyc' in repr(f) for f in sys.meta_path))"
    )
    enabled = run_ppyc("enable")
    assert enabled.code == 0, enabled
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PPYC_")}
        with_site = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, env=env
        )
        assert with_site.stdout.split() == ["True", "True"], with_site
        no_site = subprocess.run(
            [sys.executable, "-S", "-c", probe], capture_output=True, text=True, env=env
        )
        assert no_site.stdout.split() == ["False", "False"], no_site
    finally:
        assert run_ppyc("disable").code == 0


def test_dont_write_bytecode_on_fallback(lib: Path) -> None:
    assert run_ppyc("compile", "--write-pyc", "--force", lib).code == 0
    (lib / "hmod.py").write_text("VALUE = 5\n")
    pyc = lib / "__pycache__" / f"hmod.{CACHE_TAG}.pyc"
    before = pyc.read_bytes()
    writes = {"PYTHONDONTWRITEBYTECODE": ""}  # empty: unset, whatever the caller's env
    proc = run_py("import hmod; print(hmod.VALUE)", [lib], flags=("-B",), env=writes)
    assert proc.stdout.strip() == "5"
    assert pyc.read_bytes() == before  # -B: the stock fallback does not write the pyc
    proc = run_py("import hmod; print(hmod.VALUE)", [lib], env=writes)
    assert proc.stdout.strip() == "5"
    assert pyc.read_bytes() != before  # without -B it does, as stock


def test_metadata_and_pkg_resources(lib: Path) -> None:
    write(
        lib, {"hdist-1.2.dist-info/METADATA": "Metadata-Version: 2.1\nName: hdist\nVersion: 1.2\n"}
    )
    code = """
        import warnings
        warnings.simplefilter("ignore")
        import importlib.metadata, json
        import hpkg
        import pkg_resources
        print(json.dumps([
            importlib.metadata.version("hdist"),
            pkg_resources.resource_string("hpkg", "data.txt").decode(),
            pkg_resources.resource_exists("hpkg", "sub.py"),
            type(pkg_resources.get_provider("hpkg")).__name__,
            type(hpkg.__loader__).__name__,
        ]))
    """
    stock = run_py(code, [lib], hook=False)
    packed = run_py(code, [lib])
    assert stock.returncode == packed.returncode == 0, packed.stderr
    assert json.loads(packed.stdout)[:4] == json.loads(stock.stdout)[:4]
    assert json.loads(packed.stdout) == ["1.2", "resource\n", True, "DefaultProvider", "PackLoader"]


def rewrite_cache_tag(pack: Path, tag: bytes) -> None:
    """Gives `pack` another target cache_tag, with a valid header digest (spec/FORMAT.md §3:
    BLAKE3 of header bytes 0..224 and the section table)."""
    from ppyc import _native

    data = bytearray(pack.read_bytes())
    data[40:64] = tag.ljust(24, b"\0")
    sections = int.from_bytes(data[96:100], "little")
    covered = pack.with_suffix(".covered")
    covered.write_bytes(bytes(data[:224]) + bytes(data[256 : 256 + 64 * sections]))
    data[224:256] = _native.file_digest(covered)
    covered.unlink()
    pack.write_bytes(bytes(data))


def test_foreign_pack_is_refused_with_one_warning(lib: Path) -> None:
    rewrite_cache_tag(pack_path(lib), b"cpython-399")
    stats, err = stats_of("import hmod, hpkg; print(hmod.VALUE)", [lib])
    assert pack_stats(stats, lib)["usable"] is False
    assert "built for another interpreter (cpython-399" in err
    assert err.count("ppyc: warning") == 1


def test_a_pack_copied_from_another_directory_is_refused(lib: Path, tmp_path: Path) -> None:
    """A pack serves only the directory it was built for: copied over another one (with
    the same module names), the hook refuses it with one warning, and status and verify
    say so in one line each instead of listing every module as stale."""
    copy = tmp_path / "copy"
    shutil.copytree(lib, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "__pycache__").mkdir()
    shutil.copy2(pack_path(lib), pack_path(copy))
    stats, err = stats_of("import hmod, hpkg; print(hmod.VALUE)", [copy])
    assert pack_stats(stats, copy)["usable"] is False
    assert f"it was built for `{lib}`, not for this directory" in err, err
    assert err.count("ppyc: warning") == 1
    status = run_ppyc("status", env={"PYTHONPATH": str(copy)})
    assert status.code == 0, status
    line = f"{pack_path(copy)}: NOT USED (it was built for `{lib}`, not for this directory"
    assert line in status.out, status.out
    section = status.out.split(f"  {copy}:\n", 1)[1].split("\n  /", 1)[0]
    assert "stale" not in section and "new since" not in section, status.out
    verify = run_ppyc("verify", copy)
    assert verify.code != 0
    assert f"was built for `{lib}`, not for `{copy}`" in verify.err, verify
    assert len(verify.err.strip().splitlines()) <= 2, verify


def test_pack_not_owned_by_the_directory_owner_is_refused(lib: Path) -> None:
    # The test machines run as root (as CI does); chown needs it.
    os.chown(pack_path(lib), os.getuid() + 12345, -1)
    stats, err = stats_of("import hmod", [lib])
    assert pack_stats(stats, lib)["usable"] is False
    assert "not owned by the owner of its directory" in err


def test_several_packs_at_once(lib: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    write(
        other,
        {"omod.py": "O = 1\n", "opkg/__init__.py": "from .x import Y\n", "opkg/x.py": "Y = 2\n"},
    )
    assert run_ppyc("compile", other).code == 0
    stats, _ = stats_of("import hmod, omod, opkg, hpkg", [other, lib])
    assert pack_stats(stats, other)["served"] == 3
    assert pack_stats(stats, lib)["served"] == 3


@pytest.mark.parametrize("mode", MODES)
def test_profile_file_records_phases_per_module(lib: Path, tmp_path: Path, mode: str) -> None:
    profile = tmp_path / "profile.jsonl"
    (lib / "hpkg" / "sub.py").write_text("def boom():\n    return 'edited'\n")
    env = {"PPYC_PROFILE": str(profile), **mode_env(mode)}
    proc = run_py("import hmod, hpkg, nsp.inner", [lib], env=env)
    assert proc.returncode == 0, proc.stderr
    records = {r["module"]: r for r in map(json.loads, profile.read_text().splitlines())}
    assert {r["pid"] for r in records.values()} == {records["hmod"]["pid"]}
    hmod = records["hmod"]
    assert hmod["served"] is True and "reason" not in hmod and hmod["mode"] == mode
    loading = ("relocate", "bind") if mode == "image" else ("unmarshal",)
    for phase in ("find", "check", "read", *loading, "exec"):
        assert hmod[phase + "_ns"] > 0, phase
    for phase in {"unmarshal", "relocate", "bind"} - set(loading):
        assert phase + "_ns" not in hmod, phase
    assert records["hpkg.sub"]["served"] is False
    assert records["hpkg.sub"]["reason"] == "stale"
    assert records["nsp"]["reason"] == "not a source module (namespace)"
    assert records["nsp.inner"]["served"] is True
    # Appends: a second process adds its own lines.
    run_py("import hmod", [lib], env={"PPYC_PROFILE": str(profile)})
    assert len({json.loads(x)["pid"] for x in profile.read_text().splitlines()}) == 2


def _cached_under(prefix: Path, source: Path) -> Path:
    """Where `cache_from_source` puts `source`'s `.pyc` with `sys.pycache_prefix`."""
    import importlib.util

    saved = sys.pycache_prefix
    sys.pycache_prefix = str(prefix)
    try:
        return Path(importlib.util.cache_from_source(str(source)))
    finally:
        sys.pycache_prefix = saved


def test_packs_and_pycs_follow_the_pycache_prefix(
    tmp_path: Path, cache_home: dict[str, str]
) -> None:
    """With `PYTHONPYCACHEPREFIX`, `ppyc compile` writes nothing into the tree: the pack
    goes where the directory's bytecode goes under the prefix, the `.pyc` files where the
    stock importer reads them; processes with that prefix are served from it, `status`
    shows it, `clean` removes it, and an in-tree pack is not used (spec/FORMAT.md §2)."""
    root = tmp_path / "site"
    write(root, {"pmod.py": "V = 1\n", "ppkg/__init__.py": "", "ppkg/sub.py": "S = 2\n"})
    prefix = tmp_path / "prefix"
    env = {**cache_home, "PYTHONPYCACHEPREFIX": str(prefix)}
    result = run_ppyc("compile", "--write-pyc", root, env=env)
    assert result.code == 0, result
    pack = prefix / str(root).lstrip("/") / f"__ppyc__.{CACHE_TAG}.ppyc"
    assert pack.is_file(), result
    assert f"into `{pack}`" in result.out, result
    assert not list(root.rglob("__pycache__")), "nothing is written into the tree"
    sources = [root / "pmod.py", root / "ppkg" / "__init__.py", root / "ppkg" / "sub.py"]
    for source in sources:
        pyc = _cached_under(prefix, source)
        assert pyc.is_file(), pyc
        assert pyc.parent != root / "__pycache__"
    code = "import pmod, ppkg.sub; print(pmod.__cached__)"
    stats, _ = stats_of(code, [root], env=env)
    served = pack_stats(stats, root)
    assert served["path"] == str(pack) and served["served"] == 3, served
    # Without the prefix the stock importer does not look there, and neither does ppyc.
    stats, _ = stats_of(code, [root], env=cache_home)
    assert not [p for p in stats["packs"] if p["root"] == str(root)], stats["packs"]
    # An in-tree pack written later is not used under the prefix.
    assert run_ppyc("compile", root, env=cache_home).code == 0
    in_tree = pack_path(root)
    assert in_tree.is_file()
    stats, _ = stats_of(code, [root], env=env)
    assert pack_stats(stats, root)["path"] == str(pack)
    status = run_ppyc("status", env={**env, "PYTHONPATH": str(root)})
    assert status.code == 0, status
    assert f"{pack}: 3 modules" in status.out, status.out
    verify = run_ppyc("verify", root, env=env)
    assert verify.code == 0 and str(pack) in verify.out, verify
    # `clean` under the prefix removes what ppyc wrote in both places, and nothing else.
    cleaned = run_ppyc("clean", root, env=env)
    assert cleaned.code == 0, cleaned
    assert "Removed 2 packs" in cleaned.out and "3 .pyc files" in cleaned.out, cleaned
    assert not pack.exists() and not in_tree.exists()
    assert not [p for p in prefix.rglob("*") if p.is_file()]
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*.py")) == [
        "pmod.py",
        "ppkg/__init__.py",
        "ppkg/sub.py",
    ]


def test_pycache_prefix_option_is_followed(tmp_path: Path, cache_home: dict[str, str]) -> None:
    """`-X pycache_prefix` (not only the environment variable) places the pack, for
    `ppyc compile` run in that interpreter and for the hook."""
    root = tmp_path / "site"
    write(root, {"xmod.py": "X = 1\n"})
    prefix = tmp_path / "xprefix"
    flags = ("-X", f"pycache_prefix={prefix}")
    result = run_ppyc("compile", root, env=cache_home, flags=flags)
    assert result.code == 0, result
    pack = prefix / str(root).lstrip("/") / f"__ppyc__.{CACHE_TAG}.ppyc"
    assert pack.is_file(), result
    assert not (root / "__pycache__").exists()
    stats, _ = stats_of("import xmod", [root], env=cache_home, flags=flags)
    assert pack_stats(stats, root)["path"] == str(pack)
    assert pack_stats(stats, root)["served"] == 1
