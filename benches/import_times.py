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


def once(code: str, stock: bool) -> float:
    env = dict(os.environ)
    env.pop("PPYC_DISABLE", None)
    if stock:
        env["PPYC_DISABLE"] = "1"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    return time.perf_counter() - start


def served(code: str) -> dict:
    """What ppyc served for `code` (one extra run, not timed)."""
    probe = code + "\nimport json, ppyc; print(json.dumps(ppyc.stats()))"
    out = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    ).stdout
    stats = json.loads(out.splitlines()[-1])
    return {"served": stats["served"], "fallbacks": stats["fallbacks"]}


def measure(code: str, runs: int, warmup: int) -> dict:
    for _ in range(warmup):
        once(code, True)
        once(code, False)
    stock: list[float] = []
    packed: list[float] = []
    for i in range(runs):
        # Alternate which side goes first, so neither always runs after the other.
        if i % 2 == 0:
            stock.append(once(code, True))
            packed.append(once(code, False))
        else:
            packed.append(once(code, False))
            stock.append(once(code, True))
    pairs = [p / s for s, p in zip(stock, packed, strict=True)]
    return {
        "stock": {"min": min(stock), "median": statistics.median(stock), "max": max(stock)},
        "ppyc": {"min": min(packed), "median": statistics.median(packed), "max": max(packed)},
        "ratio_of_medians": statistics.median(packed) / statistics.median(stock),
        "median_pair_ratio": statistics.median(pairs),
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
        f"CPython {results['python']}: {args.runs} runs per side, alternating, "
        f"after {args.warmup} warm-up runs; wall time of the whole process.",
        "",
        "| workload | stock median (min-max) | ppyc median (min-max) | ppyc/stock "
        "(medians) | ppyc/stock (median of pairs) | modules served |",
        "|---|---|---|---|---|---|",
    ]
    for label, code in WORKLOADS.items():
        r = measure(code, args.runs, args.warmup)
        r["served"] = served(code)
        results["workloads"][label] = r
        s, p = r["stock"], r["ppyc"]
        lines.append(
            f"| `{label}` | {s['median'] * 1e3:.1f} ms ({s['min'] * 1e3:.1f}-{s['max'] * 1e3:.1f})"
            f" | {p['median'] * 1e3:.1f} ms ({p['min'] * 1e3:.1f}-{p['max'] * 1e3:.1f})"
            f" | {r['ratio_of_medians']:.3f} | {r['median_pair_ratio']:.3f}"
            f" | {r['served']['served']} |"
        )
        print(lines[-1], flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if args.markdown:
        args.markdown.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
