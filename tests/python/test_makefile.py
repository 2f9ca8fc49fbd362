"""`make test` must be able to fail: with no interpreter to test, its Rust and Python test
steps fail and say which interpreters they expected, instead of passing having tested
nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_no_interpreter_is_a_failure(tmp_path: Path) -> None:
    # A `cargo` that would pass without running anything: only the Makefile's own check
    # can make the run fail.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    cargo = bin_dir / "cargo"
    cargo.write_text('#!/bin/sh\necho fake cargo "$@"\nexit 0\n')
    cargo.chmod(0o755)
    nowhere = tmp_path / "no-pyenv"
    proc = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "-k",
            "-C",
            str(REPO),
            "rust-test",
            "python-test",
            "TEST_PYTHONS=",
            f"PYENV_ROOT={nowhere}",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"},
        timeout=120,
    )
    assert proc.returncode != 0, proc
    expected = f"error: no CPython 3.10-3.14 found under {nowhere}/versions"
    assert proc.stderr.count(expected) == 2, proc.stderr
    assert "fake cargo" not in proc.stdout, proc.stdout
