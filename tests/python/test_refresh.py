"""Packs that stay fresh on their own (spec/IMPORT.md, "Staying fresh"): the hook starts a
detached, low-priority `ppyc compile` of a directory whose modules changed or are new
since its pack was built, and the next processes are served from the new pack."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import CACHE_TAG, UNPRIVILEGED, run_ppyc, write

ON = {"PPYC_AUTO_REFRESH": "1", "PPYC_REFRESH_INTERVAL": "60"}


def run(
    code: str,
    root: Path,
    env: dict[str, str],
    *,
    unprivileged: bool = False,
    flags: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Imports in a fresh process with the hook; returns the stats of the pack serving
    `root` (or None) and everything else the code printed."""
    prelude = "import ppyc; ppyc.install()\n"
    tail = (
        "\nimport json\n"
        f"packs = [p for p in ppyc.stats()['packs'] if p['root'] == {str(root)!r}]\n"
        "print('STATS=' + json.dumps(packs[0] if packs else None))\n"
        "print('REFRESH=' + json.dumps(ppyc.stats()['auto_refresh']))\n"
    )
    program = prelude + textwrap.dedent(code) + tail
    proc = subprocess.run(
        [*(UNPRIVILEGED if unprivileged else []), sys.executable, *flags, "-c", program],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(root), **env},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    stats = json.loads(next(x for x in lines if x.startswith("STATS="))[6:])
    refresh = json.loads(next(x for x in lines if x.startswith("REFRESH="))[8:])
    return {"pack": stats, "refresh": refresh, "stdout": proc.stdout, "stderr": proc.stderr}


def state_dir(env: dict[str, str]) -> Path:
    return Path(env["XDG_CACHE_HOME"]) / "ppyc" / "refresh"


def wait_for_state(env: dict[str, str], done: tuple[str, ...] = ("ok", "failed")) -> dict:
    """The refresh's state file once it says it finished (a minute at most)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for f in state_dir(env).glob(f"*.{CACHE_TAG}.json"):
            state = json.loads(f.read_text())
            if state["state"] in done:
                return state
        time.sleep(0.1)
    raise AssertionError(f"no refresh finished: {list(state_dir(env).glob('*'))}")


def touch_later(path: Path, seconds: float = 2.0) -> None:
    """Gives `path` a modification time clearly after everything written so far."""
    t = time.time() + seconds
    os.utime(path, (t, t))


@pytest.fixture
def site(tmp_path: Path, cache_home: dict[str, str]) -> Path:
    root = tmp_path / "site"
    write(
        root,
        {
            "alpha.py": "A = 1\n",
            "beta.py": "B = 1\n",
            "pkg/__init__.py": "",
            "pkg/mod.py": "M = 1\n",
            "broken.py": "def (:\n",
        },
    )
    result = run_ppyc("compile", root, env=cache_home)
    assert result.code == 0, result
    return root


def test_a_changed_module_is_refreshed_in_the_background(
    site: Path, cache_home: dict[str, str]
) -> None:
    env = {**cache_home, **ON}
    (site / "alpha.py").write_text("A = 22\n")
    touch_later(site / "alpha.py")
    write(site, {"pkg/new.py": "N = 1\n"})
    touch_later(site / "pkg" / "new.py")
    # The process that finds them stale starts one refresh, and has no child left for its
    # own `os.wait()` to see (the refresh is a grandchild, in its own session).
    code = """
        import alpha, beta, pkg.mod, pkg.new, os
        try:
            os.wait()
            print("CHILD")
        except ChildProcessError:
            print("NO CHILD")
        print(alpha.A, pkg.new.N)
    """
    first = run(code, site, env)
    assert "NO CHILD" in first["stdout"] and "22 1" in first["stdout"]
    assert first["pack"]["fallbacks"] == {"stale": 1, "not in the pack": 1}, first
    assert first["pack"]["refresh"] == "started", first
    assert first["refresh"]["enabled"] and first["refresh"]["started"] == 1
    state = wait_for_state(env)
    assert state["state"] == "ok" and state["exit"] == 0, state
    assert state["dir"] == str(site)
    log = Path(state["log"]).read_text()
    assert "ppyc compile --sys-path-entry -O 0" in log and "Packed 5 modules" in log, log
    assert state_dir(env).stat().st_mode & 0o777 == 0o700
    # The next process is served everything from the new pack, and starts nothing.
    second = run(code, site, env)
    assert "22 1" in second["stdout"]
    assert second["pack"]["served"] == 5 and not second["pack"]["fallbacks"], second
    assert second["pack"]["refresh"] is None
    # `ppyc clean` removes what the refresh wrote in the user cache, with the pack.
    cleaned = run_ppyc("clean", site, env=cache_home)
    assert cleaned.code == 0, cleaned
    assert "4 background refresh files" in cleaned.out, cleaned
    assert not list(state_dir(env).iterdir())


def test_at_most_one_refresh_per_interval_and_pack(site: Path, cache_home: dict[str, str]) -> None:
    env = {**cache_home, **ON}
    (site / "alpha.py").write_text("A = 2\n")
    touch_later(site / "alpha.py")
    assert run("import alpha", site, env)["pack"]["refresh"] == "started"
    wait_for_state(env)
    (site / "beta.py").write_text("B = 2\n")
    touch_later(site / "beta.py", 4)
    again = run("import beta", site, env)
    assert again["pack"]["fallbacks"] == {"stale": 1}
    assert again["pack"]["refresh"].startswith("not due"), again
    # With an interval of 0 it is due again.
    now = run("import beta", site, {**env, "PPYC_REFRESH_INTERVAL": "0"})
    assert now["pack"]["refresh"] == "started", now


def test_a_running_refresh_holds_the_lock(site: Path, cache_home: dict[str, str]) -> None:
    """While one refresh of a pack runs (its lock is held), another one exits at once."""
    env = {**cache_home, **ON, "PPYC_REFRESH_INTERVAL": "0"}
    (site / "alpha.py").write_text("A = 3\n")
    touch_later(site / "alpha.py")
    assert run("import alpha", site, env)["pack"]["refresh"] == "started"
    first = wait_for_state(env)
    lock = Path(first["log"]).with_suffix(".lock")
    (site / "beta.py").write_text("B = 3\n")
    touch_later(site / "beta.py", 4)
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert run("import beta", site, env)["pack"]["refresh"] == "started"
        status = run_ppyc("status", env={**env, "PYTHONPATH": str(site)})
        assert "a background refresh is running" in status.out, status
        time.sleep(3)
        state = json.loads(Path(first["log"]).with_suffix(".json").read_text())
        assert state["started"] == first["started"], "a second refresh ran beside the first"
    finally:
        os.close(fd)
    assert run("import beta", site, env)["pack"]["fallbacks"] == {"stale": 1}


def test_files_left_out_on_purpose_start_nothing(site: Path, cache_home: dict[str, str]) -> None:
    """`broken.py` does not compile and was left out of the pack when it was built: a
    rebuild would leave it out again, so importing it starts no refresh (no endless
    rebuilds)."""
    env = {**cache_home, **ON}
    proc = run("try:\n    import broken\nexcept SyntaxError:\n    print('SE')\n", site, env)
    assert "SE" in proc["stdout"]
    assert proc["pack"]["fallbacks"] == {"not in the pack": 1}
    assert proc["pack"]["refresh"] is None
    assert not state_dir(env).exists()


@pytest.mark.parametrize("how", ["env", "enable"])
def test_auto_refresh_can_be_turned_off(site: Path, cache_home: dict[str, str], how: str) -> None:
    (site / "alpha.py").write_text("A = 4\n")
    touch_later(site / "alpha.py")
    if how == "env":
        proc = run("import alpha", site, {**cache_home, "PPYC_AUTO_REFRESH": "0"})
        assert proc["refresh"]["off"] == "PPYC_AUTO_REFRESH=0"
    else:
        enabled = run_ppyc("enable", "--no-auto-refresh")
        assert enabled.code == 0, enabled
        assert "not rebuilt in the background" in enabled.out
        try:
            env = {k: v for k, v in os.environ.items() if not k.startswith("PPYC_")}
            out = subprocess.run(
                [sys.executable, "-c", "import alpha, ppyc, json; print(json.dumps(ppyc.stats()))"],
                capture_output=True,
                text=True,
                env={**env, **cache_home, "PYTHONPATH": str(site)},
            )
            assert out.returncode == 0, out.stderr
            stats = json.loads(out.stdout)
            assert stats["auto_refresh"]["off"] == "`ppyc enable --no-auto-refresh`", stats
            pack = next(p for p in stats["packs"] if p["root"] == str(site))
            assert pack["fallbacks"] == {"stale": 1} and pack["refresh"] is None
        finally:
            assert run_ppyc("disable").code == 0
    assert not state_dir(cache_home).exists()


def test_a_read_only_directory_is_refreshed_into_the_user_cache(
    site: Path, cache_home: dict[str, str]
) -> None:
    """A system install: the refresh writes the user-cache pack, which then serves (the
    pack written last wins over the stale in-tree one)."""
    env = {**cache_home, **ON}
    (site / "alpha.py").write_text("A = 5\n")
    touch_later(site / "alpha.py")
    (site / "__pycache__").chmod(0o555)
    try:
        first = run("import alpha", site, env, unprivileged=True)
        assert first["pack"]["refresh"] == "started", first
        state = wait_for_state(env)
        assert state["state"] == "ok", Path(state["log"]).read_text()
        second = run("import alpha, beta", site, env, unprivileged=True)
        assert second["pack"]["path"].startswith(cache_home["XDG_CACHE_HOME"]), second
        assert second["pack"]["served"] == 2 and not second["pack"]["fallbacks"]
    finally:
        (site / "__pycache__").chmod(0o755)


def test_a_failed_refresh_is_reported_by_status(
    site: Path, cache_home: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {**cache_home, **ON}
    (site / "alpha.py").write_text("A = 6\n")
    touch_later(site / "alpha.py")
    # Neither location can take the pack: the in-tree one is read-only and a directory
    # stands where the user-cache pack would go.
    monkeypatch.setenv("XDG_CACHE_HOME", cache_home["XDG_CACHE_HOME"])
    cached = _native_cache_pack(site)
    cached.mkdir(parents=True)
    (site / "__pycache__").chmod(0o555)
    try:
        assert run("import alpha", site, env, unprivileged=True)["pack"]["refresh"] == "started"
        state = wait_for_state(env)
        assert state["state"] == "failed" and state["exit"] != 0, state
        status = run_ppyc("status", env={**env, "PYTHONPATH": str(site)}, unprivileged=True)
        assert status.code == 0, status
        assert "1 stale" in status.out
        assert "the background refresh failed" in status.out, status.out
        assert state["log"] in status.out
        assert f"ppyc compile {site}" in status.out
    finally:
        (site / "__pycache__").chmod(0o755)


def _native_cache_pack(root: Path) -> Path:
    from ppyc import _native

    path = _native.cache_pack_path(os.path.realpath(root), CACHE_TAG, 0)
    assert path is not None
    return Path(path)


def test_a_refresh_builds_with_the_options_of_the_pack(tmp_path: Path, cache_home: dict) -> None:
    """The pack records its `--exclude` texts (META `exclude`); the refresh passes them on,
    once, so the rebuilt pack leaves out the same files and records the same texts."""
    from ppyc import _native

    root = tmp_path / "opts"
    write(root, {"keep.py": "K = 1\n", "skipme.py": "S = 1\n", "also/skipme2.py": "T = 1\n"})
    built = run_ppyc("compile", "--exclude", "skipme", "--exclude", "skipme", root, env=cache_home)
    assert built.code == 0, built
    pack = root / "__pycache__" / f"__ppyc__.{CACHE_TAG}.ppyc"
    assert json.loads(_native.Pack(str(pack)).info()["meta"]["exclude"]) == ["skipme"]
    env = {**cache_home, **ON}
    (root / "keep.py").write_text("K = 2\n")
    touch_later(root / "keep.py")
    assert run("import keep", root, env)["pack"]["refresh"] == "started"
    state = wait_for_state(env)
    assert state["state"] == "ok", Path(state["log"]).read_text()
    assert "--exclude skipme" in Path(state["log"]).read_text()
    rebuilt = _native.Pack(str(pack))
    assert json.loads(rebuilt.info()["meta"]["exclude"]) == ["skipme"]
    assert sorted(rebuilt.modules()) == ["keep"]


def test_a_refresh_follows_the_pycache_prefix(tmp_path: Path, cache_home: dict[str, str]) -> None:
    """A process run with `-X pycache_prefix` starts a refresh that writes the pack under
    that prefix, where the next such process finds it; nothing goes into the tree."""
    root = tmp_path / "site"
    write(root, {"alpha.py": "A = 1\n", "beta.py": "B = 1\n"})
    prefix = tmp_path / "prefix"
    flags = ("-X", f"pycache_prefix={prefix}")
    result = run_ppyc("compile", root, env=cache_home, flags=flags)
    assert result.code == 0, result
    pack = prefix / str(root).lstrip("/") / f"__ppyc__.{CACHE_TAG}.ppyc"
    assert pack.is_file(), result
    built = pack.stat().st_mtime_ns
    (root / "alpha.py").write_text("A = 22\n")
    touch_later(root / "alpha.py")
    write(root, {"gamma.py": "G = 3\n"})
    touch_later(root / "gamma.py")
    env = {**cache_home, **ON}
    code = "import alpha, beta, gamma; print(alpha.A, gamma.G)"
    first = run(code, root, env, flags=flags)
    assert "22 3" in first["stdout"], first
    assert first["pack"]["refresh"] == "started", first
    state = wait_for_state(env)
    assert state["state"] == "ok", (state, Path(state["log"]).read_text())
    assert pack.stat().st_mtime_ns != built
    second = run(code, root, env, flags=flags)
    assert "22 3" in second["stdout"]
    assert second["pack"]["path"] == str(pack), second
    assert second["pack"]["served"] == 3 and not second["pack"]["fallbacks"], second
    assert not (root / "__pycache__").exists()
