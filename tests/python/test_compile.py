"""`ppyc compile`, `inspect` and `verify` on fixture trees."""

from __future__ import annotations

import json
import marshal
import os
import stat
import sys
from pathlib import Path

import ppyc
import pytest
from conftest import CACHE_TAG, FIXTURE, filtered, mode_line, run_ppyc, write

PACK = f"__pycache__/__ppyc__.{CACHE_TAG}.ppyc"
EXPECTED = {
    "bad-name": False,  # found by `import_module("bad-name")`, as stock
    "caf\u00e9": False,
    "latin": False,
    "ns.portion": False,
    "pkg": True,
    "pkg.mod": False,
    "pkg.sub": True,
    "pkg.sub.deep": False,
    "top": False,
}


def compiled_from_source(path: Path, optimize: int = 0) -> object:
    return compile(path.read_bytes(), str(path), "exec", dont_inherit=True, optimize=optimize)


def test_compile_packs_what_the_stock_importer_would_find(tree: Path) -> None:
    r = run_ppyc("compile", tree)
    assert r.code == 0, r
    pack = ppyc.Pack(tree / PACK)
    assert pack.modules() == sorted(EXPECTED)
    for name, is_package in EXPECTED.items():
        record = pack.record(name)
        assert record["is_package"] is is_package
        source = tree / record["source_path"]
        assert source.exists()
        assert record["source_size"] == source.stat().st_size
        assert record["source_mtime_ns"] == source.stat().st_mtime_ns
        # The stored code is exactly what this interpreter compiles the source to.
        assert pack.get_code(name) == compiled_from_source(source), name
    info = pack.info()
    assert info["cache_tag"] == CACHE_TAG
    assert info["hexversion"] == sys.hexversion
    assert info["optimize"] == 0
    assert [s["id"] for s in info["sections"]][:3] == ["INDX", "RECS", "PAYL"]
    assert pack.verify() == []


def test_compile_writes_pycs_like_compileall(tree: Path) -> None:
    assert run_ppyc("compile", "--write-pyc", tree).code == 0
    pyc = tree / "pkg" / "__pycache__" / f"mod.{CACHE_TAG}.pyc"
    assert pyc.exists()
    # The stock importer accepts it: importing from the tree uses the pyc we wrote.
    import importlib.util

    data = pyc.read_bytes()
    assert data[:4] == importlib.util.MAGIC_NUMBER
    assert marshal.loads(data[16:]) == compiled_from_source(tree / "pkg" / "mod.py")


def test_summary_and_incremental_reuse(tree: Path) -> None:
    first = run_ppyc("compile", tree)
    assert first.code == 0, first
    assert filtered(first.out, tree.parent) == (
        "Packed 9 modules of `[TMP]/site` into `[TMP]/site/__pycache__/__ppyc__.[TAG].ppyc`"
        " ([SIZE]) in [TIME]\n"
        "  0 from .pyc, 9 compiled, 0 reused from the previous pack, 0 skipped\n" + mode_line()
    )
    # Nothing changed: every module comes from the previous pack (no .pyc was written).
    second = run_ppyc("compile", tree)
    assert ", 0 compiled, 9 reused from the previous pack," in second.out, second
    # Change one module: it alone is compiled.
    (tree / "pkg" / "mod.py").write_text("VALUE = 'changed'\n")
    third = run_ppyc("compile", tree)
    assert third.code == 0
    assert ", 1 compiled, 8 reused from the previous pack," in third.out, third
    # With --write-pyc, only the recompiled module's .pyc is written.
    (tree / "top.py").write_text("X = 2\n")
    fourth = run_ppyc("compile", "--write-pyc", tree)
    assert ", 1 compiled (1 .pyc written), 8 reused from the previous pack," in fourth.out, fourth
    assert [p.name for p in tree.rglob("*.pyc")] == [f"top.{CACHE_TAG}.pyc"]
    pack = ppyc.Pack(tree / PACK)
    ns: dict[str, object] = {}
    exec(pack.get_code("pkg.mod"), ns)
    assert ns["VALUE"] == "changed"


def test_reuse_from_previous_pack_without_pycs(tree: Path) -> None:
    assert run_ppyc("compile", "--write-pyc", tree).code == 0
    for pycache in tree.rglob("__pycache__"):
        for f in pycache.glob("*.pyc"):
            f.unlink()
    r = run_ppyc("compile", tree)
    assert r.code == 0
    assert "9 reused from the previous pack" in r.out, r


def test_deterministic(tree: Path) -> None:
    assert run_ppyc("compile", "--write-pyc", tree).code == 0
    first = (tree / PACK).read_bytes()
    assert run_ppyc("compile", "--force", tree).code == 0
    assert (tree / PACK).read_bytes() == first
    # From .pyc files, from compiling, or reused: the same bytes.
    for pycache in tree.rglob("__pycache__"):
        for f in pycache.glob("*.pyc"):
            f.unlink()
    assert run_ppyc("compile", "--force", tree).code == 0
    assert (tree / PACK).read_bytes() == first


SETS = (
    "def f(x):\n"
    "    return x in {'alpha', 'beta', 'gamma', '{', '}', '*', '-', 'x y', 'u v', b'iota'}\n"
    "for c in {'lambda', '(', ')', 'pi', 'rho', 'sigma'}:\n"
    "    pass\n"
)


def test_deterministic_whatever_the_hash_seed(tree: Path) -> None:
    """Compiling workers run with a fixed hash seed: on 3.10 marshal writes set constants
    in iteration order, which would otherwise change from run to run."""
    write(tree, {"sets.py": SETS})
    packs = []
    for seed in ("1", "2", "random"):
        r = run_ppyc("compile", "--force", tree, env={"PYTHONHASHSEED": seed})
        assert r.code == 0, r
        assert "10 compiled" in r.out, r
        packs.append((tree / PACK).read_bytes())
    assert packs[0] == packs[1] == packs[2]


def swapped_pyc(source: Path) -> bytes:
    """A `.pyc` of `source` as another process could have written it: the set elements
    'x y' and 'u v' in the other order (3.10 writes sets in hash order; 3.11+ sorts them by
    their marshalled bytes, which depend on the writing process's interning)."""
    import importlib.util

    code = compile(source.read_bytes(), str(source), "exec", dont_inherit=True)
    data = bytearray(marshal.dumps(code))
    spans = []
    for text in (b"x y", b"u v"):
        hits = [
            i
            for i in range(len(data) - 5)
            if data[i] & 0x7F == ord("z") and data[i + 1] == 3 and data[i + 2 : i + 5] == text
        ]
        assert len(hits) == 1, (text, bytes(data))
        spans.append(hits[0])
    i, j = spans
    assert data[i] == data[j]  # the same flags: no reference numbering changes
    data[i + 2 : i + 5], data[j + 2 : j + 5] = b"u v", b"x y"
    assert marshal.loads(bytes(data)) == code
    st = source.stat()
    header = importlib.util.MAGIC_NUMBER + (0).to_bytes(4, "little")
    header += int(st.st_mtime).to_bytes(4, "little")
    header += (st.st_size & 0xFFFFFFFF).to_bytes(4, "little")
    return header + bytes(data)


def test_verify_compares_sets_as_sets(tree: Path) -> None:
    """A `.pyc` that another process wrote with its set constants in another order is
    the same code: compile keeps its bytes (what the stock importer loads) and verify
    accepts it."""
    import importlib.util

    write(tree, {"sets.py": SETS})
    # The source is older than the .pyc by more than its one-second timestamp, so the
    # .pyc provably holds this source's code and compile takes it.
    past = (tree / "sets.py").stat().st_mtime_ns - 10 * 10**9
    os.utime(tree / "sets.py", ns=(past, past))
    pyc = Path(importlib.util.cache_from_source(str(tree / "sets.py")))
    pyc.parent.mkdir(exist_ok=True)
    data = swapped_pyc(tree / "sets.py")
    pyc.write_bytes(data)
    r = run_ppyc("compile", tree)
    assert r.code == 0, r
    assert "1 from .pyc" in r.out, r
    pack = ppyc.Pack(tree / PACK)
    assert pack.payload("sets") == data[16:]
    ok = run_ppyc("verify", tree)
    assert ok.code == 0, ok
    assert "OK, 10 modules match their sources" in ok.out, ok
    # Another element is another set.
    (tree / "sets.py").write_text(SETS.replace("'pi'", "'pj'"))
    os.utime(tree / "sets.py", ns=(pack.record("sets")["source_mtime_ns"],) * 2)
    pyc.write_bytes(data)  # the old code, passed off as fresh (same size and mtime)
    assert run_ppyc("compile", "--force", tree).code == 0
    bad = run_ppyc("verify", tree)
    assert bad.code == 1, bad
    assert "sets: stored code differs" in bad.out, bad


def test_syntax_error_and_unreadable_file(tree: Path) -> None:
    write(tree, {"broken.py": "def f(:\n    pass\n", "pkg/bad_utf8.py": b"x = '\xff\xfe'\n"})
    # A dangling symlink is no module for the stock importer either (`_path_isfile` fails).
    (tree / "dangling.py").symlink_to(tree / "does-not-exist.py")
    unreadable = tree / "secret.py"
    unreadable.write_text("S = 1\n")
    unreadable.chmod(0)
    r = run_ppyc("compile", tree, unprivileged=True)
    assert r.code == 0, r
    assert f"{tree / 'broken.py'}:1: SyntaxError: " in r.err, r
    assert f"{tree / 'pkg' / 'bad_utf8.py'}:1: SyntaxError: " in r.err, r
    assert f"{unreadable}: cannot read: Permission denied" in r.err, r
    assert ", 3 skipped" in r.out, r
    modules = ppyc.Pack(tree / PACK).modules()
    assert not {"broken", "pkg.bad_utf8", "dangling", "secret"} & set(modules)
    assert "top" in modules
    strict = run_ppyc("compile", "--strict", tree, unprivileged=True)
    assert strict.code == 1, strict
    assert "--strict" in strict.err


def test_symlinked_directory(tree: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere" / "linked"
    write(elsewhere, {"__init__.py": "L = 1\n", "inner.py": "I = 2\n"})
    (tree / "linked").symlink_to(elsewhere, target_is_directory=True)
    assert run_ppyc("compile", tree).code == 0
    pack = ppyc.Pack(tree / PACK)
    assert {"linked", "linked.inner"} <= set(pack.modules())
    assert pack.record("linked.inner")["source_path"] == "linked/inner.py"


def test_read_only_directory_uses_the_user_cache(tree: Path, cache_home: dict[str, str]) -> None:
    tree.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)
    try:
        r = run_ppyc("compile", tree, env=cache_home, unprivileged=True)
    finally:
        tree.chmod(0o755)
    assert r.code == 0, r
    assert "the pack is in the user cache" in r.err
    assert not (tree / "__pycache__").exists()
    packs = list(Path(cache_home["XDG_CACHE_HOME"]).glob(f"ppyc/site-*.{CACHE_TAG}.ppyc"))
    assert len(packs) == 1, packs
    assert len(ppyc.Pack(packs[0]).modules()) == len(EXPECTED)
    # inspect and verify find it from the directory.
    assert run_ppyc("inspect", tree, env=cache_home).code == 0
    v = run_ppyc("verify", tree, env=cache_home)
    assert v.code == 0, v


def test_unwritable_pycache_uses_the_user_cache(tree: Path, cache_home: dict[str, str]) -> None:
    (tree / "__pycache__").write_text("in the way")
    r = run_ppyc("compile", tree, env=cache_home)
    assert r.code == 0, r
    assert "the pack is in the user cache" in r.err
    assert len(list(Path(cache_home["XDG_CACHE_HOME"]).glob("ppyc/site-*.ppyc"))) == 1


def test_no_writable_location_is_one_clear_error(tree: Path, tmp_path: Path) -> None:
    (tree / "__pycache__").write_text("in the way")
    (tmp_path / "cache").write_text("not a directory")
    r = run_ppyc("compile", tree, env={"XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert r.code == 1, r
    assert r.err == (
        f"error: cannot write a pack for `{tree}`: "
        f"`{tree / PACK}` is not writable "
        f"(`{tree / '__pycache__'}`: File exists (os error 17)) and neither is the user "
        f"cache (cannot write `{tmp_path / 'cache' / 'ppyc'}`: Not a directory (os error 20))\n"
    )


def test_optimize_levels(tree: Path) -> None:
    for level in (1, 2):
        assert run_ppyc("compile", "--optimize", str(level), tree).code == 0
        pack = ppyc.Pack(tree / f"__pycache__/__ppyc__.{CACHE_TAG}.opt-{level}.ppyc")
        assert pack.info()["optimize"] == level
        ns: dict[str, object] = {}
        exec(pack.get_code("top"), ns)
        doc = ns["f"].__doc__  # type: ignore[attr-defined]
        assert doc == (None if level == 2 else "doc")
        # The pack holds the code: no opt .pyc beside it (nor a plain one).
        assert list(tree.rglob("*.pyc")) == []
    assert not (tree / PACK).exists()


def test_inspect(tree: Path) -> None:
    assert run_ppyc("compile", tree).code == 0
    r = run_ppyc("inspect", tree / PACK)
    assert r.code == 0, r
    out = filtered(r.out, tree.parent)
    assert out.startswith("Pack: [TMP]/site/__pycache__/__ppyc__.[TAG].ppyc\n")
    assert f"target: [TAG] (Python {sys.version_info.major}.{sys.version_info.minor}." in out
    for name in EXPECTED:
        assert f"  {name} " in out
    one = run_ppyc("inspect", tree, "pkg.mod")
    assert one.code == 0, one
    assert "Module: pkg.mod" in one.out
    assert "source: pkg/mod.py" in one.out
    assert "name: <module>" in one.out, one.out
    missing = run_ppyc("inspect", tree, "nope")
    assert missing.code == 1 and "not in" in missing.err


def test_verify_reports_stale_and_missing_sources(tree: Path) -> None:
    assert run_ppyc("compile", tree).code == 0
    ok = run_ppyc("verify", tree)
    assert ok.code == 0, ok
    assert "OK, 9 modules match their sources" in ok.out
    (tree / "top.py").write_text("X = 2\n")
    (tree / "pkg" / "sub" / "deep.py").unlink()
    bad = run_ppyc("verify", tree)
    assert bad.code == 1, bad
    assert "top: stale" in bad.out
    assert "pkg.sub.deep: source missing" in bad.out


def test_verify_detects_damage(tree: Path) -> None:
    assert run_ppyc("compile", tree).code == 0
    path = tree / PACK
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF  # inside the last section
    path.write_bytes(bytes(data))
    r = run_ppyc("verify", tree)
    assert r.code == 1, r
    assert "damaged" in r.out or "digest" in r.out


def test_damaged_and_foreign_packs_are_refused(tree: Path) -> None:
    assert run_ppyc("compile", tree).code == 0
    path = tree / PACK
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"truncated|bytes"):
        ppyc.Pack(path)
    path.write_bytes(b"garbage" * 100)
    with pytest.raises(ValueError, match="magic"):
        ppyc.Pack(path)
    with pytest.raises(FileNotFoundError):
        ppyc.Pack(tree / "nope.ppyc")
    r = run_ppyc("inspect", path)
    assert r.code == 1 and "bad magic" in r.err


def test_usage_errors_and_missing_directory(tmp_path: Path) -> None:
    assert run_ppyc("compile", "--optimize", "3", tmp_path).code == 2
    assert run_ppyc("frobnicate").code == 2
    r = run_ppyc("compile", tmp_path / "missing")
    assert r.code == 1
    assert f"error: no such directory: `{tmp_path / 'missing'}`" in r.err
    assert run_ppyc("--version").code == 0


def test_foreign_interpreter_without_ppyc(tree: Path) -> None:
    base = Path(sys.base_prefix) / "bin" / "python3"
    r = run_ppyc("compile", "--python", base, tree)
    assert r.code == 1, r
    assert "ppyc is not installed for" in r.err


def test_python_option_with_this_interpreter(tree: Path) -> None:
    r = run_ppyc("compile", "--python", sys.executable, tree)
    assert r.code == 0, r
    assert (tree / PACK).exists()


def test_default_target_is_site_packages(tmp_path: Path) -> None:
    """Without paths, `ppyc compile` packs purelib/platlib of the running interpreter."""
    venv = tmp_path / "venv"
    import venv as venv_module

    venv_module.EnvBuilder(with_pip=False, system_site_packages=False).create(venv)
    vpy = venv / "bin" / "python"
    site = Path(
        os.popen(f"{vpy} -c 'import sysconfig; print(sysconfig.get_paths()[\"purelib\"])'")
        .read()
        .strip()
    )
    write(site, FIXTURE)
    # Make ppyc importable in the venv without installing: a link to this one (not a
    # `.pth` line: compile packs the directories `.pth` files put on sys.path too).
    (site / "ppyc").symlink_to(Path(ppyc.__file__).parent)
    import subprocess

    proc = subprocess.run(
        [str(vpy), "-m", "ppyc", "compile"],
        capture_output=True,
        text=True,
        env={**os.environ, "PPYC_NO_PROGRESS": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    linked = len(list((site / "ppyc").glob("*.py")))  # ppyc's own modules, packed too
    assert f"Packed {len(EXPECTED) + linked} modules of `{site}`" in proc.stdout
    assert (site / PACK).exists()


def test_a_package_directory_is_refused(tree: Path) -> None:
    # `site/pkg` is a package: a pack of it would name `pkg/mod.py` `mod`, which is never
    # imported by that name; the modules are packed with `site`.
    r = run_ppyc("compile", tree / "pkg")
    assert r.code == 1, r
    assert (
        f"error: `{tree / 'pkg'}` is a package (it has `__init__.py`): its modules are "
        f"imported as `pkg.…`, so they are packed with the `sys.path` directory that holds "
        f"the package: `ppyc compile {tree}` (if `{tree / 'pkg'}` itself is on `sys.path`, "
        "add `--sys-path-entry`)"
    ) in r.err
    assert not (tree / "pkg" / PACK).exists()
    nested = run_ppyc("compile", tree / "pkg" / "sub")
    assert nested.code == 1 and "imported as `pkg.sub.…`" in nested.err, nested
    assert f"`ppyc compile {tree}`" in nested.err
    # A package directory that is itself on sys.path, said so.
    r = run_ppyc("compile", "--sys-path-entry", tree / "pkg")
    assert r.code == 0 and (tree / "pkg" / PACK).exists(), r
    # A directory whose name is not an identifier is no package, whatever it holds.
    write(tree.parent, {"not-a-pkg/__init__.py": "", "not-a-pkg/m.py": ""})
    assert run_ppyc("compile", tree.parent / "not-a-pkg").code == 0


def test_messages_of_inspect_and_verify(tree: Path, tmp_path: Path) -> None:
    # A missing path: said once, without a repeated cause.
    r = run_ppyc("inspect", tmp_path / "nonexistent")
    assert (
        r.code == 1 and r.err == f"error: no such file or directory: `{tmp_path / 'nonexistent'}`\n"
    )
    # A directory without a pack: what to do about it.
    for command in ("inspect", "verify"):
        r = run_ppyc(command, tree)
        assert r.code == 1, r
        assert r.err.startswith(f"error: no pack here: `{tree}` has no pack for {CACHE_TAG}"), r
        assert r.err.endswith(f"; run `ppyc compile {tree}`\n"), r
    # A file that is not a pack, however short.
    (tmp_path / "notes.txt").write_text("hello\n")
    r = run_ppyc("verify", tmp_path / "notes.txt")
    assert (
        r.code == 1 and r.err == f"error: `{tmp_path / 'notes.txt'}`: not a ppyc pack (bad magic)\n"
    )
    # A directory where the pack should be.
    (tree / PACK).mkdir(parents=True)
    r = run_ppyc("inspect", tree)
    assert r.code == 1, r
    assert r.err == (
        f"error: cannot open pack `{tree / PACK}`\n"
        "  caused by: it is a directory, not a pack file\n"
    )
    with pytest.raises(IsADirectoryError, match="it is a directory, not a pack file"):
        ppyc.Pack(tree / PACK)
    (tree / PACK).rmdir()
    # One module, and a forced rebuild that changes nothing.
    write(tmp_path, {"one/m.py": "X = 1\n"})
    r = run_ppyc("compile", tmp_path / "one")
    assert r.code == 0 and "Packed 1 module of" in r.out, r
    r = run_ppyc("compile", "--force", tmp_path / "one")
    assert r.code == 0, r
    assert "already up to date" not in r.out, r
    assert "rebuilt from scratch (--force): identical to the pack on disk" in r.out, r


@pytest.mark.parametrize("command", ["status", "compile"])
def test_python_option_with_a_program_that_is_no_python(tree: Path, command: str) -> None:
    r = run_ppyc(command, "--python", "/bin/true", *([tree] if command == "compile" else []))
    assert r.code == 1, r
    assert r.err.startswith("error: `/bin/true` could not be queried"), r
    assert not (tree / PACK).exists()


def test_jobs_and_timeout_options(tree: Path) -> None:
    for command in ("compile", "verify"):
        r = run_ppyc(command, "-j", "0", tree)
        assert r.code == 2, r
        assert "at least 1 process is needed (leave -j out for one per core)" in r.err, r
        for bad in ("-1", "soon", "inf"):
            r = run_ppyc(command, f"--timeout={bad}", tree)
            assert r.code == 2 and "--timeout" in r.err, r
    # `0` and `none` turn the limit off.
    for off in ("0", "none"):
        r = run_ppyc("compile", "--force", "--timeout", off, "-j", "1", tree)
        assert r.code == 0, r
        assert run_ppyc("verify", "--timeout", off, tree).code == 0
    assert "`0` or `none`: no limit" in run_ppyc("compile", "--help").out


def test_no_arguments_also_packs_the_directories_pth_files_add(tmp_path: Path) -> None:
    """A path-based editable install (its source directory on sys.path through a `.pth`
    file of site-packages) is packed by `ppyc compile` with no arguments, as a sys.path
    entry, though it looks like a package's parent; `import` lines of `.pth` files are
    not directories."""
    import subprocess

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    (site / "ppyc").symlink_to(Path(ppyc.__file__).parent)
    src = tmp_path / "project" / "src"
    write(src, {"edpkg/__init__.py": "from .core import X\n", "edpkg/core.py": "X = 41\n"})
    (site / "__editable__.edpkg-0.1.pth").write_text(f"{src}\n")
    (site / "other.pth").write_text("import sys\n# a comment\n\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PPYC_NO_PROGRESS"] = "1"
    built = subprocess.run(
        [python, "-m", "ppyc", "compile"], capture_output=True, text=True, env=env
    )
    assert built.returncode == 0, built.stderr
    assert f"of `{src}`" in built.stdout, built.stdout
    assert (src / "__pycache__" / f"__ppyc__.{CACHE_TAG}.ppyc").exists()
    used = subprocess.run(
        [
            python,
            "-c",
            "import ppyc; ppyc.install(); import edpkg, json; "
            "print(edpkg.X, json.dumps(ppyc.stats()['packs']))",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert used.returncode == 0, used.stderr
    x, packs = used.stdout.split(" ", 1)
    assert x == "41"
    served = [p for p in json.loads(packs) if p["root"] == str(src)]
    assert served and served[0]["served"] == 2, packs
    # verify and clean with no arguments cover it too.
    verified = subprocess.run(
        [python, "-m", "ppyc", "verify"], capture_output=True, text=True, env=env
    )
    assert verified.returncode == 0 and str(src) in verified.stdout + verified.stderr, verified
    cleaned = subprocess.run(
        [python, "-m", "ppyc", "clean"], capture_output=True, text=True, env=env
    )
    assert cleaned.returncode == 0, cleaned.stderr
    assert not (src / "__pycache__" / f"__ppyc__.{CACHE_TAG}.ppyc").exists()
