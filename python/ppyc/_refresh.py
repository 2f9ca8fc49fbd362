"""The background refresh of a stale pack (``spec/IMPORT.md``, "Staying fresh").

The import hook starts this, detached and with ``PPYC_DISABLE=1``, when a module of a packed
directory changed or is new since the pack was built: ``main([DIR, OPTIMIZE, BASE])``
rebuilds DIR's pack at the lowest CPU and I/O priority with ``ppyc compile``, unless another
refresh of it holds the lock. Its state goes to ``BASE.json`` (read by ``ppyc status``) and
its output to ``BASE.log``, both in the user cache.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from typing import Any

# `ppyc compile` of one directory, as a user would type it: the same rules (in-tree pack
# when the directory is writable, else the user cache; incremental reuse of the pack).
STATE_VERSION = 1


def state_paths(base: str) -> dict[str, str]:
    """The files of one pack's refresh state."""
    return {k: base + "." + k for k in ("json", "log", "lock", "stamp")}


def read_state(base: str) -> dict[str, Any] | None:
    """The last refresh's state (``None`` when none ran), with ``running`` telling whether
    one holds the lock now."""
    paths = state_paths(base)
    try:
        with open(paths["json"], encoding="utf-8") as f:
            state: dict[str, Any] = json.load(f)
    except (OSError, ValueError):
        return None
    state["running"] = _locked(paths["lock"])
    return state


def _locked(path: str) -> bool:
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def _write_state(base: str, state: dict[str, Any]) -> None:
    path = state_paths(base)["json"]
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(state, f)
    os.replace(tmp, path)


def _lower_priority() -> None:
    # Never in the way of the processes that import: idle CPU scheduling where Linux has
    # it, else the lowest nice value; idle I/O priority where the kernel has it.
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    with contextlib.suppress(OSError):
        os.nice(19)
    if os.uname().machine != "x86_64":
        return
    with contextlib.suppress(AttributeError, OSError):
        # ioprio_set(IOPRIO_WHO_PROCESS, 0, IOPRIO_CLASS_IDLE << 13): syscall 251 on x86-64
        # (arch/x86/entry/syscalls/syscall_64.tbl).
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall(251, 1, 0, 3 << 13)


def _compile_args(directory: str, optimize: int) -> list[str]:
    """``ppyc compile`` of DIR with the options the pack serving it was built with (its
    ``exclude`` META entry, a forced marshal mode)."""
    from ppyc import _native

    args = ["ppyc", "compile", "--sys-path-entry", "-O", str(optimize)]
    for path in _native.pack_candidates(directory, optimize):
        if not os.path.exists(path):
            continue
        with contextlib.suppress(Exception):
            pack = _native.Pack(path)
            meta = pack.info()["meta"]
            for text in json.loads(meta.get("exclude", "[]")):
                args += ["--exclude", str(text)]
            mode, reason = pack.mode_info()
            if mode == "marshal" and reason == "--mode marshal":
                args += ["--mode", "marshal"]
        break
    return [*args, directory]


def main(argv: list[str]) -> int:
    """``DIR OPTIMIZE BASE``: refreshes DIR's pack; exit status that of ``ppyc compile``
    (0 when another refresh of it is running)."""
    import fcntl

    directory, optimize, base = argv[0], int(argv[1]), argv[2]
    paths = state_paths(base)
    _lower_priority()
    lock = os.open(paths["lock"], os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return 0  # another refresh of this pack is running
    started = time.time()
    state: dict[str, Any] = {
        "version": STATE_VERSION,
        "dir": directory,
        "optimize": optimize,
        "pid": os.getpid(),
        "started": started,
        "state": "running",
        "log": paths["log"],
    }
    _write_state(base, state)
    log = os.open(paths["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.environ["PPYC_NO_PROGRESS"] = "1"
    code = 1
    try:
        args = _compile_args(directory, optimize)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started))
        print(f"ppyc: background refresh, {stamp}: {' '.join(args)}", flush=True)
        from ppyc._cli import main as cli

        code = cli(args)
    except BaseException as exc:  # reported in the log and the state, never raised
        import traceback

        traceback.print_exception(type(exc), exc, exc.__traceback__)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        state.update(
            state="ok" if code == 0 else "failed",
            exit=code,
            finished=time.time(),
        )
        _write_state(base, state)
    return code
