"""Background refresh (issue 13, spec/IMPORT.md "Staying fresh"): how long after
`pip install -U` a package's modules are served from a pack again, with processes started in
a loop, and what the refresh check costs on the import path.

    python benches/refresh_bench.py [--rounds 5] [--runs 30] [--out build/bench/refresh.json]

`python` is an interpreter with ppyc installed (e.g. `build/venv-3.12/bin/python`); it needs
the package registry (pip). A scratch directory gets `click` by `pip install --target`; it
is packed, then upgraded and downgraded (8.1.7 <-> 8.1.8) `--rounds` times. After each
`pip install -U`, processes `import click` in a loop (a new one as soon as the previous
exits) until one is served every module of click from the pack; the time from the end of
pip to the start of that process, and how many processes ran before it, are recorded, with
the refresh's own duration (its state file). The cost of the check: `import click` from a
fresh pack with `PPYC_AUTO_REFRESH=0` and `=1` alternating, `--runs` each, medians and the
pairwise ratio; the same for `python -c pass` with the hook installed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VERSIONS = ("8.1.7", "8.1.8")

PROBE = (
    "import ppyc; ppyc.install(); import click, click.testing, click.shell_completion, json\n"
    "p = [p for p in ppyc.stats()['packs'] if p['root'] == {root!r}]\n"
    "print(json.dumps(p[0] if p else None))\n"
)


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, env=env, check=False)


def pip_install(site: Path, version: str, env: dict[str, str]) -> None:
    proc = run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--upgrade",
            "--target",
            str(site),
            f"click=={version}",
        ],
        env,
    )
    if proc.returncode != 0:
        raise SystemExit(f"pip failed: {proc.stderr}")


def probe(site: Path, env: dict[str, str]) -> dict:
    proc = run([sys.executable, "-c", PROBE.format(root=str(site))], env)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    return json.loads(proc.stdout.splitlines()[-1]) or {}


def wall(args: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    proc = run(args, env)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("build/bench/refresh.json"))
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="ppyc-refresh-bench-"))
    site = scratch / "site"
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("PPYC_")}
    env = {
        **base_env,
        "XDG_CACHE_HOME": str(scratch / "cache"),
        "PYTHONPATH": str(site),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PPYC_NO_PROGRESS": "1",
    }
    pip_install(site, VERSIONS[0], env)
    t = time.perf_counter()
    built = run([sys.executable, "-m", "ppyc", "compile", "-q", str(site)], env)
    full_build = time.perf_counter() - t
    if built.returncode != 0:
        raise SystemExit(built.stderr)
    first = probe(site, env)
    modules = first.get("served", 0)
    rounds = []
    for i in range(args.rounds):
        version = VERSIONS[(i + 1) % 2]
        pip_install(site, version, env)
        changed = time.perf_counter()
        processes = 0
        while True:
            started = time.perf_counter()
            stats = probe(site, env)
            processes += 1
            if stats.get("served", 0) > 0 and not stats.get("fallbacks"):
                break
            if started - changed > 120:
                raise SystemExit(f"not served again after 120 s: {stats}")
        state_files = list((scratch / "cache" / "ppyc" / "refresh").glob("*.json"))
        state = json.loads(state_files[0].read_text()) if state_files else {}
        rounds.append(
            {
                "version": version,
                "served_again_s": started - changed,
                "processes_before": processes - 1,
                "refresh_s": state.get("finished", 0) - state.get("started", 0),
                "refresh_state": state.get("state"),
            }
        )
        print(json.dumps(rounds[-1]), flush=True)
        # The next round must be due: the interval is per pack (default 60 s).
        env["PPYC_REFRESH_INTERVAL"] = "0"
    # The check's cost: a fresh pack, nothing stale, refresh on and off alternating.
    timings: dict[str, dict[str, list[float]]] = {
        "import click": {"off": [], "on": []},
        "pass": {"off": [], "on": []},
    }
    codes = {
        "import click": "import ppyc; ppyc.install(); import click, click.testing",
        "pass": "import ppyc; ppyc.install()",
    }
    for _ in range(args.runs):
        for name, code in codes.items():
            for side, value in (("off", "0"), ("on", "1")):
                timings[name][side].append(
                    wall([sys.executable, "-c", code], {**env, "PPYC_AUTO_REFRESH": value})
                )
    cost = {}
    for name, sides in timings.items():
        ratios = [on / off for on, off in zip(sides["on"], sides["off"], strict=True)]
        cost[name] = {
            "off_median_ms": statistics.median(sides["off"]) * 1000,
            "on_median_ms": statistics.median(sides["on"]) * 1000,
            "ratio_median": statistics.median(ratios),
        }
    result = {
        "python": sys.executable,
        "version": sys.version.split()[0],
        "modules": modules,
        "full_build_s": full_build,
        "rounds": rounds,
        "served_again_median_s": statistics.median(r["served_again_s"] for r in rounds),
        "refresh_median_s": statistics.median(r["refresh_s"] for r in rounds),
        "check_cost": cost,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
