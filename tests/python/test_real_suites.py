"""The own test suites of real packages (attrs, jinja2, from their sdists) give exactly the
same results when the packages are imported from a pack as with the stock importer."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from conftest import BUILD, MODES, mode_env

# (requirement, sdist directory, extra pytest arguments)
SUITES = {
    # test_wrapped_annotation fails on these CPythons with or without ppyc (attrs 24.2.0's
    # annotation extraction versus newer functools wrappers): not ours to judge.
    "attrs": (
        "attrs==24.2.0",
        "attrs-24.2.0",
        [
            "--hypothesis-seed=0",
            "--deselect",
            "tests/test_converters.py::TestPipe::test_wrapped_annotation",
        ],
    ),
    "jinja2": ("jinja2==3.1.4", "jinja2-3.1.4", []),
}

RUN = """
import json, sys
{prelude}
import pytest
code = pytest.main(["-q", "-p", "no:cacheprovider", *{args!r}])
stats = sys.modules["ppyc"].stats() if "ppyc" in sys.modules else None
print("STATS=" + json.dumps(stats))
sys.exit(int(code))
"""


def sdist(requirement: str, name: str, tmp_path: Path) -> Path:
    """The package's sdist, downloaded once into build/sdists, extracted into tmp_path."""
    cache = BUILD / "sdists"
    cache.mkdir(parents=True, exist_ok=True)
    archives = list(cache.glob(f"{name}.tar.gz"))
    if not archives:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--disable-pip-version-check",
                "--no-deps",
                # Only the package itself as an sdist: its build backend may come as a
                # wheel (`:all:` would build every build dependency from source, minutes).
                "--no-binary",
                requirement.split("==")[0],
                "--dest",
                str(cache),
                requirement,
            ],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr
        archives = list(cache.glob(f"{name}.tar.gz"))
    with tarfile.open(archives[0]) as tar:
        tar.extractall(tmp_path, filter="data")
    return tmp_path / name


def run_suite(
    source: Path, corpus: Path, extra: list[str], hook: bool, mode: str = "marshal"
) -> tuple[int, str, dict]:
    # A fresh copy per run: neither run may see files (pycs, caches) the other left.
    work = source.parent / (f"ppyc-{mode}-run" if hook else "stock-run")
    shutil.copytree(source, work)
    prelude = "import ppyc; ppyc.install()" if hook else ""
    env = {k: v for k, v in os.environ.items() if k != "PPYC_DISABLE"}
    env["PYTHONPATH"] = str(corpus)
    env["PYTHONHASHSEED"] = "0"
    env.update(mode_env(mode))
    proc = subprocess.run(
        [sys.executable, "-c", RUN.format(prelude=prelude, args=["tests", *extra])],
        cwd=work,
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
    )
    lines = proc.stdout.splitlines()
    stats = json.loads([x for x in lines if x.startswith("STATS=")][-1][len("STATS=") :])
    summary = [x for x in lines if re.search(r"\d+ (passed|failed)", x)]
    assert summary, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.returncode, re.sub(r" in [\d.]+s.*", "", summary[-1]), stats


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_suite_results_are_identical(suite: str, corpus: Path, tmp_path: Path) -> None:
    requirement, name, extra = SUITES[suite]
    source = sdist(requirement, name, tmp_path)
    stock_code, stock_summary, _ = run_suite(source, corpus, extra, hook=False)
    # The suite really ran (some of its tests fail on some CPythons with or without ppyc,
    # e.g. jinja2 3.1.4 on 3.13: the criterion is identical results).
    passed = re.search(r"(\d+) passed", stock_summary)
    assert passed and int(passed.group(1)) >= 100, stock_summary
    for mode in MODES:
        ppyc_code, ppyc_summary, stats = run_suite(source, corpus, extra, hook=True, mode=mode)
        assert (ppyc_code, ppyc_summary) == (stock_code, stock_summary), mode
        assert stats["served_by_mode"][mode] == stats["served"], stats
        (pack,) = [p for p in stats["packs"] if p["root"] == str(corpus)]
        assert pack["mode"] == mode and pack["served"] >= 5, pack
        assert pack["fallbacks"] == {}, pack
