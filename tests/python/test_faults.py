"""Faults injected into running processes (issue 12): a pack truncated in place while a
process has it mapped must not crash that process; its modules are imported by the stock
importer, with at most one warning."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import CACHE_TAG, MODES, mode_env, run_ppyc, write

# Enough modules that the lookup table, the records, the payloads, the image directory and
# the identifier table all reach past the first page (so that a pack cut to 4096 bytes
# loses every section but the start of its lookup table), and packages whose directories
# the pack's recorded listings describe.
FILES: dict[str, str | bytes] = {
    f"m{i:03}.py": f"N = {i}\nTEXT = {f'm{i:03} ' * 80!r}\ndef name_{i}():\n    return N\n"
    for i in range(120)
}
FILES.update(
    {f"p{i}/__init__.py": f"from .leaf import LEAF\nI = {i}\n" for i in range(8)}
    | {f"p{i}/leaf.py": f"LEAF = {i} * 2\n" for i in range(8)}
)
AFTER = [f"m{i:03}" for i in range(1, 120)] + [f"p{i}" for i in range(8)]


def pack_file(root: Path) -> Path:
    return root / "__pycache__" / f"__ppyc__.{CACHE_TAG}.ppyc"


@pytest.fixture
def big(tmp_path: Path) -> Path:
    root = tmp_path / "big"
    write(root, FILES)
    result = run_ppyc("compile", root)
    assert result.code == 0, result
    import ppyc

    sections = {s["id"]: s for s in ppyc.Pack(pack_file(root)).info()["sections"]}
    assert (
        sections["INDX"]["offset"] < 4096 < sections["INDX"]["offset"] + sections["INDX"]["length"]
    )
    assert all(s["offset"] > 4096 for k, s in sections.items() if k != "INDX"), sections
    return root


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("size", [4096, 0])
def test_pack_truncated_while_mapped(big: Path, mode: str, size: int) -> None:
    """`truncate -s 4096 PACK` between two imports of one process: no SIGBUS (exit 135),
    every later module imported by the stock importer, one warning at most."""
    pack = pack_file(big)
    code = f"""
        import json, os, sys
        import ppyc
        ppyc.install()
        sys.path.insert(0, {str(big)!r})
        import m000
        assert type(m000.__spec__.loader).__name__ == "PackLoader", m000.__spec__
        opened = ppyc.Pack({str(pack)!r})
        os.truncate({str(pack)!r}, {size})
        # The Pack API refuses too, instead of touching the mapping.
        for call in (lambda: memoryview(opened), lambda: opened.payload("m001"),
                     opened.modules, lambda: opened.find("m002")):
            try:
                call()
            except (BufferError, ValueError) as e:
                assert "cut to {size} bytes while in use" in str(e), e
            else:
                raise AssertionError(call)
        assert any("cut to {size} bytes" in p for p in opened.verify())
        import importlib
        names = {AFTER!r}
        loaders = {{}}
        for name in names:
            m = importlib.import_module(name)
            loaders[type(m.__spec__.loader).__name__] = loaders.get(
                type(m.__spec__.loader).__name__, 0) + 1
        assert all(sys.modules[f"m{{i:03}}"].N == i for i in range(120))
        assert all(sys.modules[f"m{{i:03}}"].TEXT.startswith(f"m{{i:03}} ") for i in range(120))
        assert all(sys.modules[f"p{{i}}"].LEAF == 2 * i for i in range(8))
        import p0.leaf
        print(json.dumps({{"loaders": loaders, "stats": ppyc.stats()}}))
    """
    env = {**os.environ, **mode_env(mode)}
    env.pop("PPYC_DISABLE", None)
    if mode != "marshal":
        env.pop("PPYC_MODE", None)
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, (proc.returncode, proc.stderr)
    out = json.loads(proc.stdout.splitlines()[-1])
    # Imported by the stock path: nothing after the truncation is served by the pack.
    assert out["loaders"] == {"SourceFileLoader": len(AFTER)}, out
    packs = [p for p in out["stats"]["packs"] if p["path"] == str(pack)]
    assert len(packs) == 1 and packs[0]["served"] == 1, packs
    assert out["stats"]["served_by_mode"][mode] >= 1
    assert proc.stderr.count("ppyc: warning") <= 1, proc.stderr


@pytest.fixture
def small_fs(tmp_path: Path):
    """A 2 MiB tmpfs (mounting needs root, as CI runs)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root (CI runs as root)")
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def test_disk_full_keeps_the_old_pack(small_fs: Path) -> None:
    # A rebuild that runs out of space fails with a clear error; the pack on disk is the
    # old one, whole, no temporary file is left, and the old pack still serves.
    root = small_fs / "lib"
    write(root, {f"d{i}.py": f"X = {i}\nT = {'d' * 3000!r}\n" for i in range(20)})
    assert run_ppyc("compile", root).code == 0
    old = pack_file(root).read_bytes()
    before = sorted(p.name for p in (root / "__pycache__").iterdir())
    write(root, {"grown.py": f"DATA = {[str(i) * 20 for i in range(4000)]!r}\n"})
    st = os.statvfs(small_fs)
    filler = small_fs / "filler"
    # Leave less room than the new pack needs, but enough for the new source's .pyc to
    # be in doubt too: whatever fails, nothing on disk may be damaged.
    filler.write_bytes(b"\0" * max(0, st.f_bavail * st.f_frsize - len(old) // 4))
    # The user cache on the full filesystem too: nowhere to write.
    result = run_ppyc("compile", root, env={"XDG_CACHE_HOME": str(small_fs / "cache")})
    assert result.code != 0, result
    assert "No space left on device" in result.err, result
    assert "cannot write" in result.err, result
    assert pack_file(root).read_bytes() == old
    after = sorted(p.name for p in (root / "__pycache__").iterdir())
    assert [n for n in after if n not in before and not n.endswith(".pyc")] == [], after
    assert not any((small_fs / "cache").rglob("*.tmp"))
    # A user cache elsewhere: the pack goes there, and compile says so; the in-tree pack is
    # left whole.
    cache = small_fs.parent / "cache"
    result = run_ppyc("compile", root, env={"XDG_CACHE_HOME": str(cache)})
    assert result.code == 0, result
    assert "No space left on device" in result.err, result
    assert "the pack is in the user cache" in result.err, result
    assert pack_file(root).read_bytes() == old
    assert [n for n in after if n.endswith(".tmp")] == []
    filler.unlink()
    code = "import d3, grown; print(d3.X, len(grown.DATA))"
    env = {k: v for k, v in os.environ.items() if k != "PPYC_DISABLE"}
    env.update(PYTHONPATH=str(root), XDG_CACHE_HOME=str(small_fs / "cache"))
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import ppyc; ppyc.install()\n" + code + "\nprint(ppyc.stats()['served'] >= 1)",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.stdout.split() == ["3", "4000", "True"], proc.stderr
    # With room again, the rebuild succeeds in the tree.
    assert run_ppyc("compile", root).code == 0
    assert pack_file(root).read_bytes() != old


def test_two_compiles_of_one_directory_at_once(big: Path) -> None:
    # Two `ppyc compile --force` runs on the same directory at the same time: both end, the
    # pack left is whole and verifies, and no temporary file is left beside it.
    write(big, {"extra.py": "E = 1\n"})
    cmd = [sys.executable, "-m", "ppyc", "compile", "--force", str(big)]
    env = {**os.environ, "PPYC_NO_PROGRESS": "1"}
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    verify = run_ppyc("verify", big)
    assert verify.code == 0 and "OK" in verify.out, verify
    names = sorted(p.name for p in (big / "__pycache__").iterdir() if not p.name.endswith(".pyc"))
    assert names == [pack_file(big).name], names
