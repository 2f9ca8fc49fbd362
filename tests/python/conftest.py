"""Shared fixtures: run the ppyc command of the interpreter under test, build fixture trees."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

CACHE_TAG = sys.implementation.cache_tag

# The hook's background refresh of stale packs (spec/IMPORT.md, "Staying fresh") is off in
# every process the tests start, except where a test turns it on (test_refresh.py): many
# tests edit packed modules and then check what falls back, which a refresh finishing
# meanwhile would change.
os.environ["PPYC_AUTO_REFRESH"] = "0"

# Whether this interpreter makes and loads images (spec/FORMAT.md section 11): CPython
# 3.11-3.13 release builds on x86-64 Linux. `ppyc compile` then builds image packs.
from ppyc import _native  # noqa: E402

IMAGES, _IMAGE_NOTE, _ = _native.image_support()
MODE = "image" if IMAGES else "marshal"
# Both modes where images work (marshal mode by `PPYC_MODE=marshal`), else marshal only.
MODES = ["image", "marshal"] if IMAGES else ["marshal"]


def mode_env(mode: str) -> dict[str, str]:
    """The environment that makes the hook use `mode`."""
    return {"PPYC_MODE": "marshal"} if mode == "marshal" else {}


def mode_line() -> str:
    """The line `ppyc compile` prints about the mode, for a pack of 9 fresh modules."""
    if IMAGES:
        return "  image mode: 9 of 9 modules have an image (9 made now)\n"
    return f"  marshal mode: {_IMAGE_NOTE}\n"


class Result:
    def __init__(self, proc: subprocess.CompletedProcess[str]) -> None:
        self.code = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr

    def __repr__(self) -> str:
        return f"<exit {self.code}\nstdout:\n{self.out}\nstderr:\n{self.err}>"


# As root, file permissions do not stop reads or writes; dropping the capabilities that
# override them makes `chmod` effective, as for any user.
UNPRIVILEGED = (
    [
        "setpriv",
        "--inh-caps=-dac_override,-dac_read_search",
        "--bounding-set=-dac_override,-dac_read_search",
    ]
    if os.geteuid() == 0
    else []
)


def run_ppyc(
    *args: str | os.PathLike[str],
    env: dict[str, str] | None = None,
    unprivileged: bool = False,
    flags: tuple[str, ...] = (),
) -> Result:
    """Runs `python [FLAGS] -m ppyc ARGS` with the interpreter under test."""
    full_env = dict(os.environ)
    full_env["PPYC_NO_PROGRESS"] = "1"
    full_env.update(env or {})
    proc = subprocess.run(
        [
            *(UNPRIVILEGED if unprivileged else []),
            sys.executable,
            *flags,
            "-m",
            "ppyc",
            *map(str, args),
        ],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=600,
    )
    return Result(proc)


def filtered(text: str, tmp: Path) -> str:
    """Output with the temporary directory, times and sizes replaced by placeholders."""
    text = text.replace(str(tmp), "[TMP]")
    text = re.sub(r"\d+\.\d+s\b", "[TIME]", text)
    text = re.sub(r"\(\d+(\.\d+)? (B|KiB|MiB)\)", "([SIZE])", text)
    return text.replace(CACHE_TAG, "[TAG]")


def write(root: Path, files: dict[str, str | bytes]) -> None:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


FIXTURE: dict[str, str | bytes] = {
    "top.py": "X = 1\n\ndef f(a, b=2):\n    '''doc'''\n    return a + b\n",
    "pkg/__init__.py": "from .mod import VALUE\n",
    "pkg/mod.py": (
        "VALUE = 'value'\nclass K:\n    def m(self):\n        return [i for i in range(3)]\n"
    ),
    "pkg/sub/__init__.py": "",
    "pkg/sub/deep.py": "import sys\nLIST = (1, 2.5, 3j, b'bytes', None, ..., frozenset({1, 2}))\n",
    "pkg/data/readme.txt": "not a module\n",
    "caf\u00e9.py": "# -*- coding: utf-8 -*-\nNAME = 'caf\u00e9'\n",
    "ns/portion.py": "P = 1\n",
    "latin.py": "# -*- coding: latin-1 -*-\nS = '\xe9'\n".encode("latin-1"),
    "foo-1.0.dist-info/METADATA": "Name: foo\n",
    "bad-name.py": "X = 1\n",
}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A small site-packages-like tree."""
    root = tmp_path / "site"
    write(root, FIXTURE)
    return root


@pytest.fixture
def cache_home(tmp_path: Path) -> dict[str, str]:
    """An environment whose user cache is inside the test's temporary directory."""
    return {"XDG_CACHE_HOME": str(tmp_path / "cache")}


Runner = Callable[..., Result]


REQUIREMENTS = Path(__file__).resolve().parent.parent / "requirements-corpus.txt"
BUILD = Path(__file__).resolve().parent.parent.parent / "build"


@pytest.fixture(scope="session")
def corpus() -> Path:
    """The pinned corpus, installed (once per interpreter and requirements) with
    `pip install --target`, and packed."""
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:12]
    target = BUILD / f"corpus-{sys.implementation.cache_tag}-{digest}"
    if not (target / ".complete").exists():
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-compile",
                "--upgrade",
                "--target",
                str(target),
                "-r",
                str(REQUIREMENTS),
            ],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr
        (target / ".complete").write_text("ok\n")
    # With the `.pyc` files the stock side loads, as after a `pip install`: without them the
    # stock importer compiles each source itself, and set constants may iterate in another
    # order than the same code loaded by `marshal`.
    result = run_ppyc("compile", "--force", "--write-pyc", target)
    assert result.code == 0, result
    return target
