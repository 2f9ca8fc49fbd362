"""Import-time benchmark: stock versus ppyc marshal mode, in fresh processes (BENCHMARKS.md).

Usage: python benches/import_times.py [--runs N] [--json FILE] [--markdown FILE]

Run with the interpreter of a venv that has ppyc and the test corpus installed, its
site-packages and its standard library packed (`ppyc compile`, `ppyc compile --stdlib`) and
ppyc enabled (`ppyc enable`). Each workload runs as `python -c CODE` in a fresh process,
alternating stock (`PPYC_DISABLE=1`: the `.pth` line does not even import ppyc) and ppyc,
after warm-up runs; reports min/median/max per side, the ratio of medians and the median of
the pairwise ratios. `python -c pass` measures what the hook itself adds to start-up.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

CORPUS = (
    "attrs",
    "certifi",
    "charset_normalizer",
    "click",
    "idna",
    "jinja2",
    "markdown_it",
    "markupsafe",
    "mdurl",
    "networkx",
    "packaging.version",
    "pygments.lexers",
    "requests",
    "rich.console",
    "six",
    "urllib3",
)
WORKLOADS = {
    "python -c pass": "pass",
    "import rich.console": "import rich.console",
    "import requests": "import requests",
    "import networkx": "import networkx",
    "whole corpus": "import " + ", ".join(CORPUS),
}


# The child reports the time of the workload itself (after start-up, before teardown),
# which is less noisy than the whole process's wall time on a busy machine.
TIMED = "import time as _t\n_s = _t.perf_counter()\n{code}\nprint(_t.perf_counter() - _s)"


def once(code: str, stock: bool) -> tuple[float, float]:
    """(wall time of the process, time of the workload inside it)."""
    env = dict(os.environ)
    env.pop("PPYC_DISABLE", None)
    if stock:
        env["PPYC_DISABLE"] = "1"
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", TIMED.format(code=code)],
        check=True,
        env=env,
        capture_output=True,
        text=True,
    ).stdout
    return time.perf_counter() - start, float(out.splitlines()[-1])


def served(code: str) -> dict:
    """What ppyc served for `code` (one extra run, not timed)."""
    # Stats taken before the probe imports json (which the hook would serve too).
    probe = code + "\nimport ppyc; _s = ppyc.stats()\nimport json; print(json.dumps(_s))"
    out = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    ).stdout
    stats = json.loads(out.splitlines()[-1])
    return {"served": stats["served"], "fallbacks": stats["fallbacks"]}


def summary(stock: list[float], packed: list[float]) -> dict:
    pairs = [p / s for s, p in zip(stock, packed, strict=True)]
    return {
        "stock": {"min": min(stock), "median": statistics.median(stock), "max": max(stock)},
        "ppyc": {"min": min(packed), "median": statistics.median(packed), "max": max(packed)},
        "ratio_of_medians": statistics.median(packed) / statistics.median(stock),
        "median_pair_ratio": statistics.median(pairs),
    }


def measure(code: str, runs: int, warmup: int) -> dict:
    for _ in range(warmup):
        once(code, True)
        once(code, False)
    stock: list[tuple[float, float]] = []
    packed: list[tuple[float, float]] = []
    for i in range(runs):
        # Alternate which side goes first, so neither always runs after the other.
        if i % 2 == 0:
            stock.append(once(code, True))
            packed.append(once(code, False))
        else:
            packed.append(once(code, False))
            stock.append(once(code, True))
    return {
        "wall": summary([w for w, _ in stock], [w for w, _ in packed]),
        "in_process": summary([t for _, t in stock], [t for _, t in packed]),
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()

    import ppyc

    results = {
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "ppyc": ppyc.__version__,
        "workloads": {},
    }
    lines = [
        f"CPython {results['python']}: {args.runs} runs per side, alternating, after "
        f"{args.warmup} warm-up runs. Wall: the whole process; import: the workload measured "
        "inside the process (start-up and teardown excluded). Medians (min-max) in ms.",
        "",
        "| workload | stock wall | ppyc wall | ratio | stock import | ppyc import | ratio "
        "| pairwise ratio (import) | served |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def cell(d: dict) -> str:
        return f"{d['median'] * 1e3:.1f} ({d['min'] * 1e3:.1f}-{d['max'] * 1e3:.1f})"

    for label, code in WORKLOADS.items():
        r = measure(code, args.runs, args.warmup)
        r["served"] = served(code)
        results["workloads"][label] = r
        w, i = r["wall"], r["in_process"]
        lines.append(
            f"| `{label}` | {cell(w['stock'])} | {cell(w['ppyc'])} | {w['ratio_of_medians']:.3f}"
            f" | {cell(i['stock'])} | {cell(i['ppyc'])} | {i['ratio_of_medians']:.3f}"
            f" | {i['median_pair_ratio']:.3f} | {r['served']['served']} |"
        )
        print(lines[-1], flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if args.markdown:
        args.markdown.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
