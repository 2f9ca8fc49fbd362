"""Incremental rebuilds as deltas (spec/FORMAT.md §13): a rebuild that changed a few
modules writes them into a small delta file beside the unchanged base pack; the import
hook, status, verify, inspect and clean treat the two as one generation."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import CACHE_TAG, IMAGES, run_ppyc, write

N = 40
PACK = f"__pycache__/__ppyc__.{CACHE_TAG}.ppyc"
DELTA = f"__pycache__/__ppyc__.{CACHE_TAG}.ppyd"


def later(path: Path, seconds: float = 2.0) -> None:
    """Gives `path` a modification time clearly after everything written so far."""
    t = time.time() + seconds
    os.utime(path, (t, t))


def edit(path: Path, text: str, seconds: float = 2.0) -> None:
    path.write_text(text)
    later(path, seconds)


def load(code: str, root: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Runs `code` in a fresh process with the hook on `root`; its stdout, stderr and the
    stats of the pack serving `root`."""
    program = (
        "import ppyc; ppyc.install()\n" + textwrap.dedent(code) + "\nimport json\n"
        f"packs = [p for p in ppyc.stats()['packs'] if p['root'] == {str(root)!r}]\n"
        "print('STATS=' + json.dumps(packs[0] if packs else None))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(root), **(env or {})},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    stats = next(x for x in proc.stdout.splitlines() if x.startswith("STATS="))
    return {"out": proc.stdout, "err": proc.stderr, "pack": json.loads(stats[6:])}


def stock(code: str, root: Path) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(root), "PPYC_DISABLE": "1"},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    files: dict[str, str | bytes] = {f"m{i:02}.py": f"X = {i}\n" for i in range(N)}
    files.update({"pkg/__init__.py": "", "pkg/sub.py": "S = 'sub'\n"})
    write(root, files)
    for f in root.rglob("*.py"):
        later(f, -10)  # older than the pack: reused by size and mtime, as usual
    result = run_ppyc("compile", root)
    assert result.code == 0, result
    assert not (root / DELTA).exists()
    return root


def identity(path: Path) -> tuple[int, int, bytes]:
    st = path.stat()
    return st.st_ino, st.st_mtime_ns, path.read_bytes()


IMPORTS = """
    import importlib
    for name in ["m00", "m01", "m03", "m39", "m40", "pkg.sub", "pkg.new"]:
        try:
            m = importlib.import_module(name)
            print(name, getattr(m, "X", getattr(m, "S", None)), m.__file__.endswith(".py"))
        except ImportError as e:
            print(name, "ImportError", type(e).__name__)
    try:
        import m02
        print("m02", m02.X)
    except ImportError as e:
        print("m02", type(e).__name__)
"""


def change(site: Path) -> None:
    """One edited module, two new ones, one deleted."""
    edit(site / "m01.py", "X = 101\n")
    write(site, {"m40.py": "X = 40\n", "pkg/new.py": "X = 'new'\n"})
    later(site / "m40.py")
    later(site / "pkg" / "new.py")
    (site / "m02.py").unlink()


def test_a_small_change_is_a_delta_beside_the_unchanged_base(site: Path) -> None:
    base = identity(site / PACK)
    change(site)
    built = run_ppyc("compile", site)
    assert built.code == 0, built
    assert "and its delta" in built.out and "3 changed or new, 1 deleted" in built.out, built
    assert f"Packed {N + 2 + 1} modules" in built.out, built
    # The base was not rewritten: same inode, time and bytes.
    assert identity(site / PACK) == base
    assert (site / DELTA).stat().st_size < len(base[2]) // 4
    # Every module is served, from the base or the delta, as stock imports them.
    got = load(IMPORTS, site)
    want = stock(IMPORTS, site)
    lines = [line for line in got["out"].splitlines() if not line.startswith("STATS=")]
    assert lines == want.splitlines()
    assert "m01 101 True" in want and "m40 40 True" in want and "m02 ModuleNotFoundError" in want
    stats = got["pack"]
    assert stats["served"] == 8 and not stats["fallbacks"], stats
    assert stats["delta"] == str(site / DELTA), stats
    assert stats["modules"] == N + 2 + 1
    assert got["err"] == ""
    # Status, verify and inspect see the one generation.
    status = run_ppyc("status", env={"PYTHONPATH": str(site)})
    assert status.code == 0, status
    section = status.out.split(f"  {site}:\n")[1].split("\n  /")[0]
    assert f"with its delta `{site / DELTA}`" in section, status
    assert "3 changed or new since the pack was built, 1 deleted" in section
    assert "(the stock importer loads them)" not in section, status
    verified = run_ppyc("verify", site)
    assert verified.code == 0, verified
    inspected = run_ppyc("inspect", site)
    assert f"delta: `{site / DELTA}`" in inspected.out, inspected
    delta_inspected = run_ppyc("inspect", site / DELTA)
    assert "a delta (spec/FORMAT.md §13)" in delta_inspected.out, delta_inspected
    assert "deleted: m02" in delta_inspected.out, delta_inspected
    # Nothing changed since: the delta is left as it is.
    delta = identity(site / DELTA)
    again = run_ppyc("compile", site)
    assert again.code == 0 and "already up to date" in again.out, again
    assert identity(site / DELTA) == delta and identity(site / PACK) == base
    # A second change makes a new delta of the same base, holding both changes.
    edit(site / "m03.py", "X = 303\n", 4)
    third = run_ppyc("compile", site)
    assert "4 changed or new, 1 deleted" in third.out, third
    assert identity(site / PACK) == base
    got = load(IMPORTS, site)
    assert "m03 303 True" in got["out"] and "m01 101 True" in got["out"]
    assert got["pack"]["served"] == 8 and not got["pack"]["fallbacks"], got
    # `ppyc clean` removes the delta with the pack.
    cleaned = run_ppyc("clean", site)
    assert cleaned.code == 0, cleaned
    assert not (site / DELTA).exists() and not (site / PACK).exists()


def test_a_revert_drops_the_delta_and_a_large_change_compacts(site: Path) -> None:
    base = identity(site / PACK)
    original = {n: (site / n).stat().st_mtime_ns for n in ("m01.py", "m05.py")}
    edit(site / "m01.py", "X = 101\n")
    assert "its delta" in run_ppyc("compile", site).out
    assert (site / DELTA).exists()
    # Touched (same bytes, new mtime): its code is reused, its record goes in the delta
    # with the new mtime, so that the hook's one-stat check serves it.
    later(site / "m05.py", 3)
    touched = run_ppyc("compile", site)
    assert "2 changed or new" in touched.out and "0 compiled" in touched.out, touched
    got = load("import m05, m01\nprint(m05.X, m01.X)", site)
    assert "5 101" in got["out"] and not got["pack"]["fallbacks"], got
    # Back to what the base holds (same bytes and mtime): the base alone is current.
    (site / "m01.py").write_text("X = 1\n")
    for name, ns in original.items():
        os.utime(site / name, ns=(ns, ns))
    reverted = run_ppyc("compile", site)
    assert reverted.code == 0, reverted
    assert "the previous delta is gone" in reverted.out, reverted
    assert not (site / DELTA).exists() and identity(site / PACK) == base
    # A change of more than a quarter of the modules: a whole new pack, no delta.
    edit(site / "m01.py", "X = 101\n", 6)
    assert "its delta" in run_ppyc("compile", site).out
    for i in range(2, 2 + N // 4 + 1):
        edit(site / f"m{i:02}.py", f"X = {i * 100}\n", 8)
    compacted = run_ppyc("compile", site)
    assert compacted.code == 0, compacted
    assert "its delta" not in compacted.out, compacted
    assert "the previous delta is gone" in compacted.out, compacted
    assert not (site / DELTA).exists()
    assert identity(site / PACK)[0] != base[0]
    got = load("import m01, m05\nprint(m01.X, m05.X)", site)
    assert "101 500" in got["out"] and not got["pack"]["fallbacks"], got
    # `--force` always writes a whole pack and removes a delta.
    edit(site / "m01.py", "X = 1001\n", 10)
    assert "its delta" in run_ppyc("compile", site).out
    forced = run_ppyc("compile", "--force", site)
    assert forced.code == 0 and "its delta" not in forced.out, forced
    assert not (site / DELTA).exists()


def test_a_delta_of_another_base_is_not_used(site: Path) -> None:
    edit(site / "m01.py", "X = 101\n")
    assert "its delta" in run_ppyc("compile", site).out
    old_delta = (site / DELTA).read_bytes()
    # A whole new pack (it holds 101) and the file back to 1: the old delta, put back
    # beside the new pack, names the old base and must not serve m01 = 101.
    assert run_ppyc("compile", "--force", site).code == 0
    edit(site / "m01.py", "X = 1\n", 4)
    (site / DELTA).write_bytes(old_delta)
    (site / DELTA).chmod(0o644)
    got = load("import m01, m00\nprint(m01.X, m00.X)", site)
    assert "1 0" in got["out"], got
    assert got["pack"]["delta"] is None and got["pack"]["fallbacks"] == {"stale": 1}, got
    assert "ppyc" not in got["err"], got  # an older generation's delta: nothing is wrong
    assert run_ppyc("verify", site).code != 0  # m01 is stale in the pack itself


def test_a_damaged_or_unsafe_delta_is_reported_and_the_base_serves(site: Path) -> None:
    edit(site / "m01.py", "X = 101\n")
    assert "its delta" in run_ppyc("compile", site).out
    good = (site / DELTA).read_bytes()
    damaged = bytearray(good)
    damaged[100] ^= 0xFF  # a reserved header byte: the header digest no longer matches
    (site / DELTA).write_bytes(bytes(damaged))
    got = load("import m01, m00\nprint(m01.X, m00.X)", site)
    assert "101 0" in got["out"], got
    assert got["err"].count("ignoring the delta") == 1, got["err"]
    assert got["pack"]["fallbacks"] == {"stale": 1} and got["pack"]["served"] == 1, got
    status = run_ppyc("status", env={"PYTHONPATH": str(site)})
    assert "its delta is NOT USED" in status.out, status
    verified = run_ppyc("verify", site)
    assert verified.code != 0 and "delta" in verified.out + verified.err, verified
    # Writable by others: refused like a pack would be.
    (site / DELTA).write_bytes(good)
    (site / DELTA).chmod(0o666)
    got = load("import m01\nprint(m01.X)", site)
    assert "101" in got["out"] and "writable by others" in got["err"], got
    assert got["pack"]["fallbacks"] == {"stale": 1}, got
    # A rebuild replaces the damaged delta, and everything is served again.
    (site / DELTA).chmod(0o644)
    (site / DELTA).write_bytes(bytes(damaged))
    rebuilt = run_ppyc("compile", site)
    assert rebuilt.code == 0 and "its delta" in rebuilt.out, rebuilt
    got = load("import m01, m00\nprint(m01.X, m00.X)", site)
    assert "101 0" in got["out"] and not got["pack"]["fallbacks"], got
    assert got["err"] == ""


def test_a_delta_at_the_packs_path_is_refused(site: Path) -> None:
    edit(site / "m01.py", "X = 101\n")
    assert "its delta" in run_ppyc("compile", site).out
    # The delta moved over its base: on its own it is not a generation (it lacks m00).
    (site / DELTA).replace(site / PACK)
    got = load("import m01, m00\nprint(m01.X, m00.X)", site)
    assert "101 0" in got["out"], got
    assert got["pack"]["usable"] is False and "it is a delta" in got["err"], got
    verified = run_ppyc("verify", site)
    assert verified.code != 0 and "not a whole pack" in verified.out + verified.err, verified


@pytest.mark.skipif(not IMAGES, reason="images need CPython 3.11-3.13 release builds")
def test_verify_deep_covers_the_delta_images(site: Path) -> None:
    edit(site / "m01.py", "def f():\n    return [x * 2 for x in range(3)]\nX = f()\n")
    built = run_ppyc("compile", site)
    assert "its delta" in built.out and "1 made now" in built.out, built
    deep = run_ppyc("verify", "--deep", site)
    assert deep.code == 0, deep
    assert f"{N + 2} images identical" in deep.out, deep
    got = load("import m01\nprint(m01.X)", site)
    assert "[0, 2, 4]" in got["out"] and got["pack"]["served_by_mode"]["image"] == 1, got


def test_a_delta_in_the_user_cache(site: Path, tmp_path: Path, cache_home: dict[str, str]) -> None:
    """A read-only directory: its pack is in the user cache, and so is its delta."""
    shutil.rmtree(site / "__pycache__")
    site.chmod(0o555)
    try:
        built = run_ppyc("compile", site, env=cache_home, unprivileged=True)
        assert built.code == 0 and "user cache" in built.err, built
    finally:
        site.chmod(0o755)
    cached = next((tmp_path / "cache" / "ppyc").glob(f"*.{CACHE_TAG}.ppyc"))
    edit(site / "m01.py", "X = 101\n")
    site.chmod(0o555)
    try:
        again = run_ppyc("compile", site, env=cache_home, unprivileged=True)
        assert again.code == 0 and "its delta" in again.out, again
        delta = cached.with_suffix(".ppyd")
        assert delta.exists() and not (site / "__pycache__").exists()
        got = load("import m01\nprint(m01.X)", site, env=cache_home)
        assert "101" in got["out"] and not got["pack"]["fallbacks"], got
        assert got["pack"]["delta"] == str(delta), got
    finally:
        site.chmod(0o755)
