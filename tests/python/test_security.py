"""The trust model of spec/SECURITY.md: which packs the runtime trusts, and that ppyc's
environment variables follow Python's rules under -E and -I."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import CACHE_TAG, UNPRIVILEGED, run_ppyc, write

TREE: dict[str, str | bytes] = {
    "smod.py": "VALUE = 1\n",
    "spkg/__init__.py": "from .inner import INNER\n",
    "spkg/inner.py": "INNER = 'inner'\n",
}
# Another user's uid and gid (`nobody` on Debian); the tests run as root, as CI does.
OTHER = 65534

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")


@pytest.fixture
def slib(tmp_path: Path) -> Path:
    root = tmp_path / "slib"
    write(root, TREE)
    result = run_ppyc("compile", root)
    assert result.code == 0, result
    return root


def run(
    code: str,
    *,
    flags: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    unprivileged: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Runs `code` in a fresh interpreter of the one under test."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PPYC_")}
    full_env.update(env or {})
    return subprocess.run(
        [
            *(UNPRIVILEGED if unprivileged else []),
            sys.executable,
            *flags,
            "-c",
            textwrap.dedent(code),
        ],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=300,
    )


def served_from(root: Path, names: str, **kw: object) -> tuple[dict, str]:
    """`ppyc.stats()` after importing `names` with `root` first on sys.path (set in the
    code, since -E and -I ignore PYTHONPATH) and the hook installed by `ppyc.install()`."""
    proc = run(
        f"""
        import sys
        sys.path.insert(0, {str(root)!r})
        import ppyc
        ppyc.install()
        import {names}
        import json
        print("STATS=" + json.dumps(ppyc.stats()))
        """,
        **kw,  # type: ignore[arg-type]
    )
    assert proc.returncode == 0, proc.stderr
    line = [x for x in proc.stdout.splitlines() if x.startswith("STATS=")][-1]
    return json.loads(line[len("STATS=") :]), proc.stderr


def for_root(stats: dict, root: Path) -> dict | None:
    found = [p for p in stats["packs"] if p["root"] == str(root)]
    assert len(found) <= 1, stats["packs"]
    return found[0] if found else None


IGNORING = [("-E",), ("-I",)]


@pytest.mark.parametrize("flags", IGNORING)
def test_ppyc_disable_is_ignored_under_e_and_i(slib: Path, flags: tuple[str, ...]) -> None:
    off = {"PPYC_DISABLE": "1"}
    stats, _ = served_from(slib, "smod", env=off)
    assert stats["installed"] is False and stats["served"] == 0
    stats, _ = served_from(slib, "smod", env=off, flags=flags)
    assert stats["installed"] is True
    assert (for_root(stats, slib) or {}).get("served") == 1, stats
    # The .pth line follows the same rule.
    enabled = run_ppyc("enable")
    assert enabled.code == 0, enabled
    try:
        probe = "import sys; print(any('ppyc' in repr(f) for f in sys.meta_path))"
        assert run(probe, env=off).stdout.strip() == "False"
        assert run(probe, env=off, flags=flags).stdout.strip() == "True"
    finally:
        assert run_ppyc("disable").code == 0


@pytest.mark.parametrize("flags", IGNORING)
def test_ppyc_check_unchecked_is_ignored_under_e_and_i(slib: Path, flags: tuple[str, ...]) -> None:
    (slib / "smod.py").write_text("VALUE = 'edited after packing'\n")
    code = f"""
        import sys
        sys.path.insert(0, {str(slib)!r})
        import ppyc
        ppyc.install()
        import smod
        print(smod.VALUE)
        """
    unchecked = {"PPYC_CHECK": "unchecked"}
    # Without -E/-I the pack is trusted as asked: the packed code runs.
    assert run(code, env=unchecked).stdout.strip() == "1"
    # With them, the default (timestamp) check sees the edit.
    proc = run(code, env=unchecked, flags=flags)
    assert proc.stdout.strip() == "edited after packing", proc.stderr


@pytest.mark.parametrize("flags", IGNORING)
def test_ppyc_profile_is_ignored_under_e_and_i(
    slib: Path, tmp_path: Path, flags: tuple[str, ...]
) -> None:
    profile = tmp_path / "profile.jsonl"
    stats, _ = served_from(slib, "smod", env={"PPYC_PROFILE": str(profile)}, flags=flags)
    assert (for_root(stats, slib) or {}).get("served") == 1, stats
    assert not profile.exists()
    served_from(slib, "smod", env={"PPYC_PROFILE": str(profile)})
    assert "smod" in profile.read_text()


@pytest.fixture
def cached(tmp_path: Path) -> Iterator[tuple[Path, Path, Path]]:
    """A tree whose `__pycache__` is read-only, packed (unprivileged, so as any user) into
    a user cache: (tree, the cache home, the pack)."""
    root = tmp_path / "ro"
    write(root, TREE)
    (root / "__pycache__").mkdir()
    (root / "__pycache__").chmod(0o555)
    home = tmp_path / "cachehome"
    env = {"XDG_CACHE_HOME": str(home)}
    result = run_ppyc("compile", root, env=env, unprivileged=True)
    assert result.code == 0, result
    packs = list((home / "ppyc").glob(f"*.{CACHE_TAG}.ppyc"))
    assert len(packs) == 1, result
    yield root, home, packs[0]
    (root / "__pycache__").chmod(0o755)
    shutil.rmtree(home, ignore_errors=True)


def cached_stats(root: Path, home: Path) -> tuple[dict | None, str]:
    """The user-cache pack's entry in `ppyc.stats()` of a process of the running user (root
    with its capabilities, in CI: it can read every user's cache)."""
    stats, err = served_from(root, "smod, spkg", env={"XDG_CACHE_HOME": str(home)})
    return for_root(stats, root), err


@needs_root
def test_user_cache_pack_of_another_user_is_refused(cached: tuple[Path, Path, Path]) -> None:
    root, home, pack = cached
    entry, err = cached_stats(root, home)
    assert entry is not None and entry["served"] == 3 and err == "", (entry, err)
    # Root with XDG_CACHE_HOME pointing into another user's cache: that user's pack (and
    # directory) are not trusted, though root could read them.
    for path in (home, home / "ppyc", pack):
        os.chown(path, OTHER, OTHER)
    entry, err = cached_stats(root, home)
    assert entry is None or entry["usable"] is False, entry
    assert "does not belong to this user" in err and err.count("ppyc: warning") == 1, err
    # The pack alone another user's, in a cache directory of the running user.
    os.chown(home / "ppyc", 0, 0)
    entry, err = cached_stats(root, home)
    assert entry is None or entry["usable"] is False, entry
    assert "does not belong to this user" in err, err
    # The directory alone another user's, the pack the running user's.
    os.chown(pack, 0, 0)
    os.chown(home / "ppyc", OTHER, OTHER)
    entry, err = cached_stats(root, home)
    assert entry is None or entry["usable"] is False, entry
    assert "does not belong to this user" in err, err
    # Both the running user's again: served.
    os.chown(home / "ppyc", 0, 0)
    entry, err = cached_stats(root, home)
    assert entry is not None and entry["served"] == 3 and err == "", (entry, err)


def test_user_cache_writable_by_others_is_refused(cached: tuple[Path, Path, Path]) -> None:
    root, home, pack = cached
    for mode in (0o775, 0o757, 0o1777):
        (home / "ppyc").chmod(mode)
        entry, err = cached_stats(root, home)
        assert entry is None or entry["usable"] is False, (oct(mode), entry)
        assert "others can write" in err, (oct(mode), err)
    (home / "ppyc").chmod(0o755)
    pack.chmod(0o664)
    entry, err = cached_stats(root, home)
    assert entry is None or entry["usable"] is False, entry
    assert "writable by others than its owner" in err, err
    pack.chmod(0o644)
    entry, err = cached_stats(root, home)
    assert entry is not None and entry["served"] == 3 and err == "", (entry, err)


def test_compile_makes_a_private_cache_directory_whatever_the_umask(tmp_path: Path) -> None:
    """With umask 002 (user private groups), a cache directory made group-writable would
    hold packs the runtime then refuses: `ppyc compile` makes it 0700."""
    root = tmp_path / "ro"
    write(root, TREE)
    (root / "__pycache__").mkdir()
    (root / "__pycache__").chmod(0o555)
    home = tmp_path / "fresh" / "cachehome"
    env = {**os.environ, "XDG_CACHE_HOME": str(home), "PPYC_NO_PROGRESS": "1"}
    try:
        proc = subprocess.run(
            [*UNPRIVILEGED, sys.executable, "-m", "ppyc", "compile", str(root)],
            capture_output=True,
            text=True,
            env=env,
            umask=0o002,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr
        assert (home / "ppyc").stat().st_mode & 0o777 == 0o700
        entry, err = cached_stats(root, home)
        assert entry is not None and entry["served"] == 3 and err == "", (entry, err)
    finally:
        (root / "__pycache__").chmod(0o755)
