"""Recorded directory listings (spec/FORMAT.md section 12, spec/IMPORT.md "Finding"): an
unchanged directory is not listed again; a changed one is, exactly as the stock finder
would; a listing taken within the file system's timestamp resolution of a change is not
recorded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import ppyc
import pytest
from conftest import CACHE_TAG, run_ppyc, write

TREE = {
    "la.py": "A = 1\n",
    "lpkg/__init__.py": "",
    "lpkg/sub/__init__.py": "",
    "lpkg/sub/leaf.py": "LEAF = 3\n",
    "lns/part.py": "PART = 4\n",
}
PACK = f"__pycache__/__ppyc__.{CACHE_TAG}.ppyc"


def run(code: str, lib: Path, **env: str) -> dict:
    """Runs `code` with the hook and `lib` first on sys.path; returns the JSON it prints
    (`OUT` is printed at the end, with the hook's listing counters)."""
    prelude = "import json, sys, ppyc\nppyc.install()\nsys.path.insert(0, LIB)\nOUT = {}\n"
    tail = "\nOUT['listings'] = ppyc.stats()['listings']\nprint(json.dumps(OUT))\n"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PPYC")}
    full_env.update(env)
    script = prelude.replace("LIB", repr(str(lib))) + textwrap.dedent(code) + tail
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture
def lib(tmp_path: Path) -> Path:
    root = tmp_path / "lib"
    write(root, TREE)
    r = run_ppyc("compile", "-v", root)
    assert r.code == 0, r
    return root


def test_the_pack_records_every_directory_it_covers(lib: Path) -> None:
    pack = ppyc.Pack(lib / PACK)
    assert pack.info()["directories"] == 4
    for rel in ("", "lpkg", "lpkg/sub", "lns"):
        recorded = pack.listing(rel)
        assert recorded is not None, rel
        sec, nsec, names = recorded
        directory = lib / rel
        st = os.stat(directory)
        assert (sec, nsec) == (st.st_mtime_ns // 10**9, st.st_mtime_ns % 10**9), rel
        assert sorted(names) == sorted(os.fsencode(n) for n in os.listdir(directory)), rel
    assert pack.listing("__pycache__") is None and pack.listing("nope") is None
    assert not pack.verify()


def test_unchanged_directories_are_not_listed(lib: Path) -> None:
    out = run("import la, lpkg.sub.leaf, lns.part; OUT['v'] = la.A + lpkg.sub.leaf.LEAF", lib)
    assert out["v"] == 4
    # The tree's four directories come from the pack; the others on sys.path are listed.
    assert out["listings"]["recorded"] == 4, out
    stock = run(
        "import la, lpkg.sub.leaf, lns.part; OUT['v'] = la.A + lpkg.sub.leaf.LEAF",
        lib,
        PPYC_DISABLE="1",
    )
    assert stock["v"] == 4 and stock["listings"] == {"recorded": 0, "listed": 0}


@pytest.mark.parametrize("change", ["add", "delete", "rename"])
def test_a_changed_directory_is_listed_again(lib: Path, change: str) -> None:
    code = """
    import importlib.util
    for name in ("la", "lb", "lpkg.sub.leaf", "lpkg.sub.twig"):
        OUT[name] = importlib.util.find_spec(name) is not None
    """
    sub = lib / "lpkg" / "sub"
    if change == "add":
        (lib / "lb.py").write_text("B = 2\n")
        (sub / "twig.py").write_text("T = 5\n")
    elif change == "delete":
        (lib / "la.py").unlink()
        (sub / "leaf.py").unlink()
    else:
        (lib / "la.py").rename(lib / "lb.py")
        (sub / "leaf.py").rename(sub / "twig.py")
    with_ppyc = run(code, lib)
    stock = run(code, lib, PPYC_DISABLE="1")
    assert {k: v for k, v in with_ppyc.items() if k != "listings"} == {
        k: v for k, v in stock.items() if k != "listings"
    }
    expected = {
        "add": [True, True, True, True],
        "delete": [False, False, False, False],
        "rename": [False, True, False, True],
    }[change]
    assert [with_ppyc[n] for n in ("la", "lb", "lpkg.sub.leaf", "lpkg.sub.twig")] == expected
    # `lpkg` itself did not change: its listing still comes from the pack.
    assert with_ppyc["listings"]["recorded"] >= 1


def test_a_listing_within_the_timestamp_resolution_of_a_change_is_not_recorded(
    tmp_path: Path,
) -> None:
    root = tmp_path / "lib"
    write(root, TREE)
    assert run_ppyc("compile", root).code == 0
    # A directory whose mtime is not older than the build (here: in the future, as a
    # change made during the build's own clock tick would look): never trusted.
    future = time.time() + 3600
    os.utime(root / "lpkg", (future, future))
    r = run_ppyc("compile", root)
    assert r.code == 0, r
    assert "3 directory listings recorded; 1 left out (changed too recently" in r.out, r.out
    pack = ppyc.Pack(root / PACK)
    assert pack.listing("lpkg") is None and pack.listing("lpkg/sub") is not None
    out = run("import lpkg.sub.leaf; OUT['leaf'] = lpkg.sub.leaf.LEAF", root)
    assert out["leaf"] == 3 and out["listings"]["listed"] >= 1


def test_a_freshly_written_tree_is_recorded_after_the_margin(tmp_path: Path) -> None:
    root = tmp_path / "lib"
    write(root, TREE)  # every directory changed a moment ago
    started = time.monotonic()
    r = run_ppyc("compile", root)
    assert r.code == 0, r
    pack = ppyc.Pack(root / PACK)
    # On file systems with fine timestamps the build waits out the margin (0.1 s) and
    # records them; elsewhere it leaves them out and says so.
    if "left out" in r.out:
        assert pack.info()["directories"] < 4
    else:
        assert pack.info()["directories"] == 4
        assert time.monotonic() - started >= 0.1


def test_a_damaged_listing_is_a_miss_not_a_wrong_listing(lib: Path) -> None:
    path = lib / PACK
    data = bytearray(path.read_bytes())
    pack = ppyc.Pack(path)
    section = next(s for s in pack.info()["sections"] if s["id"] == "DIRS")
    # Flip a byte inside the names of the last listing (the strings end the section).
    data[section["offset"] + section["length"] - 2] ^= 0x20
    path.write_bytes(bytes(data))
    damaged = ppyc.Pack(path)
    listings = [damaged.listing(rel) for rel in ("", "lns", "lpkg", "lpkg/sub")]
    assert listings.count(None) == 1
    assert damaged.verify()  # verify reports it
    out = run("import la, lpkg.sub.leaf, lns.part; OUT['v'] = la.A + lns.part.PART", lib)
    assert out["v"] == 5
