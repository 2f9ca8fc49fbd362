"""What `ppyc compile` leaves on disk, and `ppyc clean` / `ppyc disable --clean` removing it;
`-O` for `verify`, `inspect` and `status`."""

from __future__ import annotations

import importlib.util
import json
import os
import py_compile
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import ppyc
import ppyc._status
import pytest
from conftest import CACHE_TAG, FIXTURE, filtered, run_ppyc

# The stock importer would write .pyc files: nothing in the tests may depend on the
# caller's PYTHONDONTWRITEBYTECODE.
WRITES = {"PYTHONDONTWRITEBYTECODE": ""}
SOURCES = [rel for rel in FIXTURE if rel.endswith(".py")]
PACKS = {
    level: f"__ppyc__.{CACHE_TAG}{'' if level == 0 else f'.opt-{level}'}.ppyc"
    for level in (0, 1, 2)
}


def files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir()}


def dirs(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_dir()}


def pyc_of(root: Path, rel: str, level: int = 0) -> str:
    """The `.pyc` of `root/rel` for `level`, relative to `root`."""
    opt = "" if level == 0 else level
    return str(
        Path(importlib.util.cache_from_source(str(root / rel), optimization=opt)).relative_to(root)
    )


def test_compile_writes_no_pyc_by_default(tree: Path) -> None:
    before = files(tree)
    for level in ("0", "1", "2"):
        r = run_ppyc("compile", "-O", level, tree, env=WRITES)
        assert r.code == 0, r
        assert ".pyc written" not in r.out, r
    # Only the three packs: no .pyc (plain or opt), no record, no other __pycache__.
    assert files(tree) - before == {f"__pycache__/{p}" for p in PACKS.values()}
    assert [d for d in dirs(tree) if d.endswith("__pycache__")] == ["__pycache__"]


def test_write_pyc_then_clean_removes_exactly_what_ppyc_wrote(tree: Path) -> None:
    # A .pyc ppyc did not write (compiled by someone else), in a directory ppyc writes to.
    foreign = Path(importlib.util.cache_from_source(str(tree / "pkg" / "extra.py")))
    (tree / "pkg" / "extra.py").write_text("E = 1\n")
    py_compile.compile(str(tree / "pkg" / "extra.py"), cfile=str(foreign), doraise=True)
    (tree / "pkg" / "extra.py").unlink()  # not a module of the pack either
    before = files(tree)
    r = run_ppyc("compile", "--write-pyc", tree, env=WRITES)
    assert r.code == 0, r
    assert "9 compiled (9 .pyc written)" in r.out, r
    written = {pyc_of(tree, rel) for rel in SOURCES}
    record = tree / "__pycache__" / PACKS[0].replace(".ppyc", ".pycs")
    assert files(tree) - before == written | {
        f"__pycache__/{PACKS[0]}",
        str(record.relative_to(tree)),
    }
    assert f"recorded in `{record}`" in r.out, r
    doc = json.loads(record.read_text())
    assert doc["format"] == "ppyc-pycs" and doc["version"] == 1
    assert set(doc["pycs"]) == written
    # The stock importer uses what was written.
    top = tree / "__pycache__" / f"top.{CACHE_TAG}.pyc"
    assert top.read_bytes()[:4] == importlib.util.MAGIC_NUMBER
    # -O 1 --write-pyc: the opt-1 .pyc files, in their own record; the first one is kept.
    r1 = run_ppyc("compile", "-O", "1", "--write-pyc", tree, env=WRITES)
    assert "9 compiled (9 .pyc written)" in r1.out, r1
    assert {pyc_of(tree, rel, 1) for rel in SOURCES} <= files(tree)
    # A .pyc ppyc wrote but someone rewrote since (another compiler, other bytes): no
    # longer ppyc's.
    rewritten = tree / "pkg" / "__pycache__" / f"mod.{CACHE_TAG}.pyc"
    rewritten.write_bytes(rewritten.read_bytes() + b"\0")
    # An incremental rebuild that writes one .pyc more keeps the earlier entries.
    (tree / "top.py").write_text("X = 2\n")
    again = run_ppyc("compile", "--write-pyc", tree, env=WRITES)
    assert "1 compiled (1 .pyc written), 8 reused" in again.out, again
    assert set(json.loads(record.read_text())["pycs"]) == written

    c = run_ppyc("clean", tree)
    assert c.code == 0, c
    out = filtered(c.out, tree.parent)
    assert out.endswith("Removed 2 packs ([SIZE]) and 17 .pyc files\n"), c
    assert f"Removed `[TMP]/site/__pycache__/{PACKS[0]}`\n".replace(CACHE_TAG, "[TAG]") in out
    # Left: the sources, the foreign .pyc and the rewritten one; the __pycache__
    # directories emptied are gone (an empty one would make a removed package importable
    # as a namespace package), the one still holding files stays.
    assert files(tree) == set(FIXTURE) | {
        str(foreign.relative_to(tree)),
        str(rewritten.relative_to(tree)),
    }
    assert [d for d in dirs(tree) if d.endswith("__pycache__")] == ["pkg/__pycache__"]
    nothing = run_ppyc("clean", tree)
    assert (nothing.code, nothing.out) == (0, "nothing to clean\n"), nothing


def test_clean_removes_in_tree_and_user_cache_packs_and_leftovers(
    tree: Path, tmp_path: Path, cache_home: dict[str, str]
) -> None:
    for level in ("0", "1", "2"):
        assert run_ppyc("compile", "-O", level, tree, env=cache_home).code == 0
    # A read-only directory: its packs go to the user cache.
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "m.py").write_text("M = 1\n")
    ro.chmod(0o555)
    try:
        for level in ("0", "2"):
            r = run_ppyc(
                "compile", "-O", level, "--write-pyc", ro, env=cache_home, unprivileged=True
            )
            assert r.code == 0 and "the pack is in the user cache" in r.err, r
    finally:
        ro.chmod(0o755)
    cache = Path(cache_home["XDG_CACHE_HOME"]) / "ppyc"
    cached = sorted(p.name for p in cache.iterdir())
    assert len(cached) == 2 and all(n.startswith("ro-") for n in cached), cached
    # Interrupted writes: temporary files as `write_atomic` names them (and as older
    # versions did) beside the in-tree packs, and beside the cache pack; a probe file.
    pycache = tree / "__pycache__"
    leftovers = [
        pycache / f".__ppyc__.{PACKS[1]}.Ab12Cd.tmp",
        pycache / ".__ppyc__Xy34Zw.tmp",
        pycache / ".__ppyc__probeQw56Er",
        cache / f".__ppyc__.{cached[0]}.Gh78Ij.tmp",
    ]
    for p in leftovers:
        p.write_bytes(b"partial")
    # Not ppyc's, or not these directories' packs for this interpreter: they stay.
    kept = [
        pycache / "__ppyc__.cpython-399.ppyc",
        pycache / "notes.tmp",
        cache / f".__ppyc__.other-0123456789abcdef.{CACHE_TAG}.ppyc.Kl90Mn.tmp",
        cache / f"other-0123456789abcdef.{CACHE_TAG}.ppyc",
    ]
    for p in kept:
        p.write_bytes(b"not ours")
    c = run_ppyc("clean", tree, ro, env=cache_home)
    assert c.code == 0, c
    out = filtered(c.out, tmp_path)
    assert out.endswith(
        "Removed 5 packs ([SIZE]) and 0 .pyc files, 4 leftover temporary files\n"
    ), c
    for level in (0, 1, 2):
        assert f"Removed `[TMP]/site/__pycache__/{PACKS[level]}`".replace(CACHE_TAG, "[TAG]") in out
    assert sorted(p.name for p in cache.iterdir()) == sorted(p.name for p in kept[2:])
    assert sorted(p.name for p in pycache.iterdir()) == sorted(p.name for p in kept[:2])


def test_clean_orphans_removes_the_user_cache_packs_of_directories_gone(
    tree: Path, tmp_path: Path, cache_home: dict[str, str]
) -> None:
    assert run_ppyc("compile", tree, env=cache_home).code == 0

    def cached_build(d: Path, says: str = "the pack is in the user cache") -> None:
        d.chmod(0o555)  # read-only: the pack goes to the user cache
        try:
            r = run_ppyc("compile", d, env=cache_home, unprivileged=True)
            assert r.code == 0 and says in r.out + r.err, r
        finally:
            d.chmod(0o755)

    for name in ("gone", "stays"):
        d = tmp_path / name
        d.mkdir()
        for i in range(8):
            (d / f"m{i}.py").write_text(f"M = {i}\n")
            os.utime(d / f"m{i}.py", (1_600_000_000, 1_600_000_000))
        cached_build(d)
    # A delta of `gone`'s pack in the cache, too.
    (tmp_path / "gone" / "m0.py").write_text("M = 100\n")
    cached_build(tmp_path / "gone", says="its delta")
    cache = Path(cache_home["XDG_CACHE_HOME"]) / "ppyc"
    names = sorted(p.name for p in cache.iterdir() if p.is_file())
    assert [n.split(".")[-1] for n in names if n.startswith("gone-")] == ["ppyc", "ppyd"], names
    stays = sorted(n for n in names if n.startswith("stays-"))
    # `gone`'s pack copied under another name, and a file that is not a pack: not
    # provably the pack of a directory gone, so they stay.
    pack_of_gone = next(n for n in names if n.startswith("gone-") and n.endswith(".ppyc"))
    (cache / f"copy-0123456789abcdef.{CACHE_TAG}.ppyc").write_bytes(
        (cache / pack_of_gone).read_bytes()
    )
    (cache / f"junk-0123456789abcdef.{CACHE_TAG}.ppyc").write_bytes(b"not a pack")
    for p in (tmp_path / "gone").iterdir():
        p.unlink()
    (tmp_path / "gone").rmdir()

    c = run_ppyc("clean", "--orphans", env=cache_home)
    assert c.code == 0, c
    out = filtered(c.out, tmp_path)
    assert "(the pack of `[TMP]/gone`, which no longer exists)" in out, c
    assert out.endswith("Removed 1 pack ([SIZE]) and 0 .pyc files\n"), c
    left = sorted(p.name for p in cache.iterdir() if p.is_file())
    assert left == sorted(
        [
            *stays,
            f"copy-0123456789abcdef.{CACHE_TAG}.ppyc",
            f"junk-0123456789abcdef.{CACHE_TAG}.ppyc",
        ]
    ), left
    # `--orphans` alone touches no existing directory's packs.
    assert (tree / "__pycache__" / PACKS[0]).exists()
    again = run_ppyc("clean", "--orphans", env=cache_home)
    assert again.code == 0 and "nothing to clean" in again.out, again


def test_clean_reports_what_it_cannot_remove_and_removes_the_rest(
    tree: Path, tmp_path: Path, cache_home: dict[str, str]
) -> None:
    assert run_ppyc("compile", tree, env=cache_home).code == 0
    other = tmp_path / "other"
    other.mkdir()
    (other / "o.py").write_text("O = 1\n")
    assert run_ppyc("compile", other, env=cache_home).code == 0
    (tree / "__pycache__").chmod(0o555)
    try:
        c = run_ppyc("clean", tree, other, env=cache_home, unprivileged=True)
    finally:
        (tree / "__pycache__").chmod(0o755)
    assert c.code == 1, c
    pack = tree / "__pycache__" / PACKS[0]
    assert c.err == f"error: cannot remove `{pack}`: Permission denied (os error 13)\n", c
    assert pack.exists()
    assert not (other / "__pycache__").exists()
    assert "Removed 1 pack (" in c.out, c
    missing = run_ppyc("clean", tmp_path / "nope")
    assert missing.code == 1 and f"cannot clean `{tmp_path / 'nope'}`" in missing.err, missing


@pytest.fixture
def stdlib_packs_kept() -> Iterator[None]:
    """`disable --clean` cleans every `sys.path` directory, the standard library too: packs
    made there by others are put back afterwards."""
    stdlib = Path(os.__file__).parent
    saved = {}
    for level in (0, 1, 2):
        for path in ppyc._native.pack_candidates(str(stdlib), level):
            p = Path(path)
            if p.is_file():
                saved[p] = (p.read_bytes(), p.stat().st_mode)
    try:
        yield
    finally:
        for p, (data, mode) in saved.items():
            if not p.exists():
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(data)
                p.chmod(stat.S_IMODE(mode))


def test_disable_clean(tree: Path, stdlib_packs_kept: None) -> None:
    env = {"PYTHONPATH": str(tree), **WRITES}
    enabled = run_ppyc("enable")
    assert enabled.code == 0, enabled
    try:
        for level in ("0", "1"):
            assert run_ppyc("compile", "-O", level, "--write-pyc", tree, env=env).code == 0
        assert any(tree.rglob("*.pyc"))
        r = run_ppyc("disable", "--clean", env=env)
    finally:
        run_ppyc("disable")
    assert r.code == 0, r
    assert "ppyc disabled for" in r.out, r
    # (Other directories on sys.path may have had packs too.)
    for level in (0, 1):
        assert f"Removed `{tree / '__pycache__' / PACKS[level]}`\n" in r.out, r
    assert " and 18 .pyc files" in r.out, r
    assert files(tree) == set(FIXTURE)
    assert not any(d.endswith("__pycache__") for d in dirs(tree))
    pth = Path(ppyc._status.site_dirs()[0]) / ppyc._status.PTH_NAME
    assert not pth.exists()
    # Not enabled any more: it still cleans (nothing left).
    again = run_ppyc("disable", "--clean", env=env)
    assert again.code == 0 and "not enabled" in again.out, again
    assert again.out.endswith("nothing to clean\n"), again


def test_optimize_option_of_verify_inspect_and_status(tree: Path) -> None:
    assert run_ppyc("compile", "-O", "1", tree).code == 0
    opt1 = tree / "__pycache__" / PACKS[1]
    # Without -O (this run's level, 0) there is no pack to use.
    plain = run_ppyc("verify", tree)
    assert plain.code == 1 and "no pack here" in plain.err, plain
    v = run_ppyc("verify", "-O", "1", tree)
    assert v.code == 0, v
    assert v.out == f"{opt1}: OK, 9 modules match their sources\n", v
    assert run_ppyc("verify", "--optimize", "2", tree).code == 1
    i = run_ppyc("inspect", "-O", "1", tree)
    assert i.code == 0, i
    assert i.out.startswith(f"Pack: {opt1}\n") and ", optimize 1\n" in i.out, i
    missing = run_ppyc("inspect", "-O", "2", tree)
    assert missing.code == 1 and "run `ppyc compile -O 2 " in missing.err, missing
    env = {"PYTHONPATH": str(tree)}
    s = run_ppyc("status", "-O", "1", "--json", env=env)
    assert s.code == 0, s
    status = json.loads(s.out)
    assert status["optimize"] == 1
    (entry,) = [e for e in status["sys_path"] if e["dir"] == str(tree)]
    (pack,) = entry["packs"]
    assert (pack["path"], pack["usable"], pack["modules"]) == (str(opt1), True, 9), pack
    text = run_ppyc("status", "-O", "1", env=env)
    assert f"  {tree}:\n    {opt1}: 9 modules, " in text.out, text
    for args in ((), ("-O", "2")):
        none = run_ppyc("status", *args, env=env)
        assert f"  {tree}: no pack\n" in none.out, none
    # Default: this run's level (`python -O -m ppyc status`).
    proc = subprocess.run(
        [sys.executable, "-O", "-m", "ppyc", "status"],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
    )
    assert f"    {opt1}: 9 modules, " in proc.stdout, proc


def test_pyc_files_that_cannot_be_recorded_are_removed_again(tree: Path, tmp_path: Path) -> None:
    # `tree/__pycache__` is in the way and the user cache is not a directory: `pkg/...`
    # .pyc files can be written, but no record of them (nor a pack): ppyc takes them back.
    (tree / "__pycache__").write_text("in the way")
    (tmp_path / "cache").write_text("not a directory")
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache"), **WRITES}
    r = run_ppyc("compile", "--write-pyc", tree, env=env)
    assert r.code == 1, r
    assert r.err.startswith(
        f"error: cannot pack `{tree}`: cannot record the .pyc files written for `{tree}` "
        "(so they were removed again): "
    ), r
    assert files(tree) == set(FIXTURE) | {"__pycache__"}
    assert [d for d in dirs(tree) if d.endswith("__pycache__")] == []
    # The same without --write-pyc: nothing written, the usual error.
    r = run_ppyc("compile", tree, env=env)
    assert r.code == 1 and "cannot write a pack" in r.err, r
    assert files(tree) == set(FIXTURE) | {"__pycache__"}
