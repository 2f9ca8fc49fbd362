"""The import-time suite of BENCHMARKS.md, measured with `ppyc importtime`.

Usage: python benches/importtime_suite.py measure --python VENV_PYTHON --out DIR [--runs N]
                                         [--peers PEERS.jsonl]
       python benches/importtime_suite.py markdown DIR [--write BENCHMARKS.md]

`measure` runs, for the venv's interpreter (ppyc installed and enabled, the test corpus
installed, site-packages and stdlib packed), `ppyc importtime WORKLOAD --json` for every
workload (stock and ppyc alternating in fresh processes: spec/IMPORTTIME.md), keeping the
JSON and, for `import requests`, the HTML report. With `--peers`, each peer that is ready for
this interpreter is measured side by side: stock, ppyc and the peer alternate in one loop
(wall time of fresh processes), in the same venv. `markdown` turns the results of every
interpreter into the import section of BENCHMARKS.md (between its markers).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

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
# The large stack (benches/requirements-stack.txt): pandas, sympy and the parts of Django a
# project's modules import before its settings are read.
STACK = (
    "pandas",
    "sympy",
    "django.db.models",
    "django.forms",
    "django.template",
    "django.urls",
    "django.views.generic",
    "django.test",
)
# (slug, label, python -c code); the large stack only where it is installed.
WORKLOADS = (
    ("pass", "python -c pass", "pass"),
    ("rich", "import rich.console", "import rich.console"),
    ("requests", "import requests", "import requests"),
    ("networkx", "import networkx", "import networkx"),
    ("corpus", "whole corpus", "import " + ", ".join(CORPUS)),
    ("stack", "large stack (pandas, sympy, django)", "import " + ", ".join(STACK)),
)
BEGIN = "<!-- importtime-suite:begin -->"
END = "<!-- importtime-suite:end -->"


def version_of(python: str) -> str:
    out = subprocess.run(
        [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PPYC_DISABLE": "1"},
    )
    return out.stdout.strip()


def importable(python: str, module: str) -> bool:
    proc = subprocess.run(
        [python, "-c", f"import {module}"],
        capture_output=True,
        env={**os.environ, "PPYC_DISABLE": "1"},
    )
    return proc.returncode == 0


def measure(python: str, out: Path, runs: int, peers: Path | None) -> None:
    v = version_of(python)
    out.mkdir(parents=True, exist_ok=True)
    for slug, label, code in WORKLOADS:
        if slug == "stack" and not importable(python, ", ".join(STACK)):
            print(f"=== {v} {label}: the large stack is not installed, left out", flush=True)
            continue
        print(f"=== {v} {label}", flush=True)
        args = [python, "-m", "ppyc", "importtime", "-c", code, "--runs", str(runs), "--json"]
        if slug == "requests":
            args += ["--html", str(out / f"importtime-{v}-{slug}.html")]
        if slug in ("rich", "requests"):
            args += ["--memory", "--processes", "4"]
        proc = subprocess.run(args, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"ppyc importtime failed for {label} on {v}:\n{proc.stderr}")
        report = json.loads(proc.stdout)
        report["bench"] = {"slug": slug, "label": label}
        (out / f"importtime-{v}-{slug}.json").write_text(json.dumps(report, indent=1))
    if peers is not None and peers.exists():
        for line in peers.read_text().splitlines():
            peer = json.loads(line)
            if peer.get("python") != v:
                continue
            if not peer.get("ready"):
                (out / f"peer-{v}-{peer['peer']}.json").write_text(json.dumps(peer))
                continue
            result = side_by_side(python, peer, runs)
            (out / f"peer-{v}-{peer['peer']}.json").write_text(json.dumps(result, indent=1))


def once(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, env=env)
    elapsed = (time.perf_counter() - start) * 1000
    if proc.returncode != 0:
        sys.exit(f"{argv} failed:\n{proc.stderr.decode(errors='replace')}")
    return elapsed


def side_by_side(python: str, peer: dict[str, Any], runs: int) -> dict[str, Any]:
    """Stock, ppyc and the peer alternating in one loop, in the same venv."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("PPYC_")}
    peer_python = peer.get("venv_python") or python
    variants = {
        "stock": ([python], {**base, **peer.get("env_off", {}), "PPYC_DISABLE": "1"}),
        "ppyc": ([python], {**base, **peer.get("env_off", {})}),
        "peer": (
            [peer_python, *peer.get("argv_prefix_on", [])],
            {**base, **peer.get("env_on", {}), "PPYC_DISABLE": "1"},
        ),
    }
    result: dict[str, Any] = {"peer": peer["peer"], "python": peer["python"], "runs": runs}
    workloads: dict[str, Any] = {}
    for slug, label, code in WORKLOADS:
        if slug not in ("pass", "rich", "requests", "corpus", "stack"):
            continue
        if slug == "stack" and not importable(python, ", ".join(STACK)):
            continue
        print(f"=== {peer['python']} {label}: stock, ppyc, {peer['peer']}", flush=True)
        # A peer whose data is traced per program (code-data-share's archive) gets the one
        # made for this workload: its best case.
        own = peer.get("env_on_per_workload", {}).get(code)
        here = dict(variants)
        if own is not None:
            prefix, env = here["peer"]
            here["peer"] = (prefix, {**env, **own})
        for prefix, env in here.values():  # warm-up
            once([*prefix, "-c", code], env)
        times: dict[str, list[float]] = {name: [] for name in here}
        for _ in range(runs):
            for name, (prefix, env) in here.items():
                times[name].append(once([*prefix, "-c", code], env))
        workloads[slug] = {
            "label": label,
            "times_ms": times,
            "median_ms": {n: statistics.median(t) for n, t in times.items()},
            "pairwise_ratio": {
                n: statistics.median(a / b for a, b in zip(t, times["stock"], strict=True))
                for n, t in times.items()
                if n != "stock"
            },
        }
    result["workloads"] = workloads
    return result


def fmt_ms(us: float) -> str:
    return f"{us / 1000:.1f}"


def load_us(phases: dict[str, float]) -> float:
    """The time spent making code objects, in either mode (spec/IMPORTTIME.md section 3)."""
    return sum(phases.get(k, 0.0) for k in ("unmarshal_us", "relocate_us", "bind_us"))


def markdown(results: Path) -> str:
    reports = sorted(results.glob("importtime-*.json"))
    if not reports:
        sys.exit(f"no importtime-*.json in {results}")
    by_version: dict[str, list[dict[str, Any]]] = {}
    for path in reports:
        report = json.loads(path.read_text())
        v = ".".join(report["meta"]["python"]["version"].split(".")[:2])
        by_version.setdefault(v, []).append(report)
    order = [slug for slug, _, _ in WORKLOADS]
    lines: list[str] = []
    first = next(iter(by_version.values()))[0]["meta"]
    m = first["machine"]
    lines += [
        f"Measured with `ppyc importtime` on {m['hostname']} ({m['cpu']}, {m['cpus']} CPUs, "
        f"{m['memory_bytes'] / 2**30:.0f} GiB, {m['os']}), {first['date'][:10]}. Per "
        f"workload: {first['runs']} fresh processes per side after {first['warmup']} "
        "warm-up, stock and ppyc alternating; wall time medians (min-max) in ms; the ratio "
        "is ppyc/stock computed pair by pair (median; below 1 means ppyc is faster). "
        "Self time: the sum over modules of `-X importtime` self times (median per module "
        "over a second set of as many runs); load: ppyc's time making code objects "
        "(`marshal.loads` in marshal mode, relocate and bind in image mode) and the mode "
        "the workload used. "
        "Memory: 4 processes of the workload running together per side, Pss per process "
        "(and its pack mappings), from `/proc/PID/smaps_rollup`.",
        "",
    ]
    for v in sorted(by_version, key=lambda s: tuple(map(int, s.split(".")))):
        rs = sorted(by_version[v], key=lambda r: order.index(r["bench"]["slug"]))
        meta = rs[0]["meta"]
        lines += [
            f"### CPython {meta['python']['version']}",
            "",
            "| workload | stock wall | ppyc wall | ratio (pairwise) | spread warnings "
            "| stock self | ppyc self | load (mode) | served / imported "
            "| Pss stock | Pss ppyc (packs) |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rs:
            w = r["wall"]
            served = sum(1 for x in r["modules"] if x["ppyc"] and x["ppyc"]["served"])
            mem = r.get("memory")
            pss = (
                (
                    f"{mem['stock']['pss_bytes'] / 2**20:.1f} MiB",
                    f"{mem['ppyc']['pss_bytes'] / 2**20:.1f} MiB "
                    f"({mem['ppyc']['pack_pss_bytes'] / 2**20:.1f})",
                )
                if mem
                else ("-", "-")
            )
            lines.append(
                f"| `{r['bench']['label']}` "
                f"| {w['stock']['median']:.1f} ({w['stock']['min']:.1f}-{w['stock']['max']:.1f}) "
                f"| {w['ppyc']['median']:.1f} ({w['ppyc']['min']:.1f}-{w['ppyc']['max']:.1f}) "
                f"| {w['ratio']['median']:.3f} "
                f"| {len(w['warnings'])} "
                f"| {fmt_ms(r['sides']['stock']['total_self_us'])} "
                f"| {fmt_ms(r['sides']['ppyc']['total_self_us'])} "
                f"| {fmt_ms(load_us(r['phases']))} ({r['meta']['ppyc'].get('mode') or 'none'}) "
                f"| {served} / {r['sides']['ppyc']['modules']} "
                f"| {pss[0]} | {pss[1]} |"
            )
        lines.append("")
    peers = sorted(results.glob("peer-*.json"))
    if peers:
        lines += [
            "### Peers, side by side",
            "",
            "Stock, ppyc and the peer alternating in one loop (wall time of fresh processes, "
            "medians in ms; ratios to stock computed pair by pair; below 1 is faster). Stock "
            "and ppyc run in the suite's venv, the peer in a venv with the same packages "
            "(`benches/peers/setup_peers.sh`); code-data-share with an archive traced from "
            "that very workload (its documented use), oxidized-importer with one packed-"
            "resources file of the venv's site-packages and the stdlib.",
            "",
            "| CPython | peer | workload | stock | ppyc | peer | ppyc ratio | peer ratio |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for path in peers:
            p = json.loads(path.read_text())
            if not p.get("workloads"):
                why = " ".join(str(p.get("why") or "not ready").split())
                why = why if len(why) <= 140 else why[:137] + "..."
                lines.append(f"| {p['python']} | {p['peer']} | - | not measured: {why} |||||")
                continue
            for wl in p["workloads"].values():
                med, ratio = wl["median_ms"], wl["pairwise_ratio"]
                lines.append(
                    f"| {p['python']} | {p['peer']} | `{wl['label']}` | {med['stock']:.1f} "
                    f"| {med['ppyc']:.1f} | {med['peer']:.1f} | {ratio['ppyc']:.3f} "
                    f"| {ratio['peer']:.3f} |"
                )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("measure")
    m.add_argument("--python", required=True)
    m.add_argument("--out", type=Path, required=True)
    m.add_argument("--runs", type=int, default=20)
    m.add_argument("--peers", type=Path)
    md = sub.add_parser("markdown")
    md.add_argument("results", type=Path)
    md.add_argument("--write", type=Path, help="replace the section between the markers")
    args = parser.parse_args()
    if args.command == "measure":
        measure(args.python, args.out, args.runs, args.peers)
        return
    text = markdown(args.results)
    if args.write is None:
        print(text)
        return
    doc = args.write.read_text()
    start, end = doc.find(BEGIN), doc.find(END)
    if start < 0 or end < start:
        sys.exit(f"{args.write} has no {BEGIN} ... {END} section")
    args.write.write_text(doc[: start + len(BEGIN)] + "\n" + text + "\n" + doc[end:])


if __name__ == "__main__":
    main()
