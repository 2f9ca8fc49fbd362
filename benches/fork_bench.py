"""Pre-fork servers: the memory each forked worker makes private, stock versus ppyc.

Usage: python benches/fork_bench.py measure --python VENV_PYTHON --out FILE.json
                                    [--workers 8] [--rounds 5]
       python benches/fork_bench.py markdown FILE.json... [--write BENCHMARKS.md]

A pre-fork server (gunicorn, celery, multiprocessing's fork start method) imports its
application in a parent and forks workers, which share every page they do not write.
`measure` runs, in the venv of the import suite (the test corpus installed, site-packages
and stdlib packed, ppyc enabled), for each side in turn (stock: `PPYC_DISABLE=1`; ppyc: the
venv's packs, image or marshal mode as `ppyc status` says), `--rounds` times alternating:

1. a fresh parent imports the corpus of `importtime_suite.py` (and the large stack where it
   is installed) and runs `gc.collect()`, as an application does before it forks;
2. it runs the workload below once (its lazy imports and first calls happen before the
   fork, as after a warm-up), then forks `--workers` workers; each runs the workload, over
   the imported code (a template render, a rich table, a prepared request, version
   parsing, IDNA, charset detection, a graph search, highlighting: functions run,
   specialise and allocate), three times, then `gc.collect()`, and reports ready;
3. with every worker alive and waiting, the parent reads each worker's
   `/proc/PID/smaps_rollup`: `Private_Dirty` (the pages that worker copied or allocated
   since the fork, the memory a worker costs) and `Pss`, and from `/proc/PID/smaps` the
   part of both in ppyc's image memory (mappings named `[anon:ppyc images]`) and in the
   pack mappings; then the workers exit.

Per side, the median over rounds of the mean per worker is reported, with the parent's own
`Rss` after the imports. `markdown` writes the section between the markers of
BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from importtime_suite import CORPUS, STACK

BEGIN = "<!-- fork-bench:begin -->"
END = "<!-- fork-bench:end -->"

# Runs in the measured interpreter: argv = workers, modules (comma-separated).
PARENT = r'''
import gc, importlib, io, json, os, sys

def rollup(pid):
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[-1] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1]) * 1024
    return out

def parts(pid, ranges):
    """Private_Dirty and Pss of ppyc's image memory (the mappings `ranges`) and of the
    pack mappings, from /proc/PID/smaps."""
    out = {"images": {"Private_Dirty": 0, "Pss": 0}, "packs": {"Private_Dirty": 0, "Pss": 0}}
    merged = []  # adjacent image mappings may be one VMA
    for s, n in sorted(ranges):
        if merged and merged[-1][1] == s:
            merged[-1][1] = s + n
        else:
            merged.append([s, s + n])
    where = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split()
            if head and "-" in head[0] and not head[0].endswith(":"):
                lo, hi = (int(x, 16) for x in head[0].split("-"))
                path = head[5] if len(head) > 5 else ""
                where = ("images" if any(s <= lo and hi <= e for s, e in merged) else
                         "packs" if path.endswith(".ppyc") else None)
            elif where and head and head[0].rstrip(":") in ("Private_Dirty", "Pss"):
                out[where][head[0].rstrip(":")] += int(head[1]) * 1024
    return out

def workload():
    import charset_normalizer, idna, jinja2, networkx, packaging.version, pygments
    import pygments.formatters, pygments.lexers, requests, rich.console, rich.table
    jinja2.Template("{% for x in xs %}{{ x|upper }},{% endfor %}").render(xs=["a", "b"])
    table = rich.table.Table("name", "value")
    for i in range(20):
        table.add_row(f"row {i}", str(i * i))
    rich.console.Console(file=io.StringIO(), width=80).print(table)
    requests.Request("GET", "https://example.org/a", params={"q": "1"}).prepare()
    sorted(packaging.version.Version(f"1.{i}.{i % 3}") for i in range(50))
    idna.encode("bücher.example")
    charset_normalizer.from_bytes("héllo wörld, ça va".encode("latin-1")).best()
    networkx.shortest_path(networkx.path_graph(200), 0, 199)
    pygments.highlight("def f(x):\n    return x + 1\n" * 20,
                       pygments.lexers.PythonLexer(), pygments.formatters.NullFormatter())

workers, modules = int(sys.argv[1]), sys.argv[2].split(",")
for m in modules:
    importlib.import_module(m)
workload()  # lazy imports and first calls happen before the fork, as after a warm-up
gc.collect()
served = 0
try:
    import ppyc
    served = ppyc.stats().get("served", 0) if ppyc.installed() else 0
except Exception:
    pass
parent = rollup(os.getpid())
kids = []
for _ in range(workers):
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(ready_r); os.close(go_w)
        for _ in range(3):
            workload()
        gc.collect()
        native = sys.modules.get("ppyc._native")
        ranges = native.image_mappings() if native else []
        os.write(ready_w, json.dumps(ranges).encode() + b"\n")
        os.read(go_r, 1)
        os._exit(0)
    os.close(ready_w); os.close(go_r)
    kids.append((pid, ready_r, go_w))
ranges = [json.loads(os.fdopen(r, "rb", closefd=False).readline()) for _, r, _ in kids]
rows = [{**rollup(pid), "parts": parts(pid, rs)} for (pid, _, _), rs in zip(kids, ranges)]
for pid, r, w in kids:
    os.write(w, b"g")
    os.waitpid(pid, 0)
print(json.dumps({"parent": parent, "workers": rows, "served": served}))
'''


def run_side(python: str, side: str, workers: int, modules: list[str]) -> dict[str, Any]:
    env = dict(os.environ)
    env.pop("PPYC_DISABLE", None)
    if side == "stock":
        env["PPYC_DISABLE"] = "1"
    out = subprocess.run(
        [python, "-c", PARENT, str(workers), ",".join(modules)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return json.loads(out.stdout)


def available(python: str, modules: tuple[str, ...]) -> list[str]:
    code = (
        "import importlib.util, sys\n"
        "print(','.join(m for m in sys.argv[1].split(',') "
        "if importlib.util.find_spec(m.split('.')[0])))"
    )
    out = subprocess.run(
        [python, "-c", code, ",".join(modules)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PPYC_DISABLE": "1"},
    )
    return [m for m in out.stdout.strip().split(",") if m]


def measure(args: argparse.Namespace) -> None:
    python = args.python
    modules = list(CORPUS) + available(python, STACK)
    info = subprocess.run(
        [python, "-c", "import sys, platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    mode = subprocess.run(
        [python, "-c", "import ppyc, json; print(json.dumps(ppyc.stats().get('mode')))"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    rounds: dict[str, list[dict[str, Any]]] = {"stock": [], "ppyc": []}
    for i in range(args.rounds):
        for side in ("stock", "ppyc") if i % 2 == 0 else ("ppyc", "stock"):
            rounds[side].append(run_side(python, side, args.workers, modules))
            print(f"round {i + 1}/{args.rounds} {side} done", file=sys.stderr)
    result = {
        "python": info,
        "mode": json.loads(mode) if mode else None,
        "machine": f"{platform.node()} ({os.cpu_count()} CPUs)",
        "workers": args.workers,
        "modules": modules,
        "rounds": rounds,
    }
    Path(args.out).write_text(json.dumps(result, indent=1))


def per_worker(rounds: list[dict[str, Any]], key: str) -> list[float]:
    """Per round: the mean over workers of `key`, in MiB."""
    return [statistics.mean(w[key] for w in r["workers"]) / 2**20 for r in rounds]


def cell(xs: list[float]) -> str:
    return f"{statistics.median(xs):.1f} ({min(xs):.1f}-{max(xs):.1f})"


def summary(r: dict[str, Any]) -> list[str]:
    st, pp = r["rounds"]["stock"], r["rounds"]["ppyc"]
    lines = [
        f"### CPython {r['python']} ({r['workers']} workers, {len(st)} rounds per side, "
        f"ppyc mode: {r['mode']})",
        "",
        "| measure, MiB | stock | ppyc | ppyc / stock |",
        "|---|---|---|---|",
    ]
    for label, key in (
        ("private dirty per worker", "Private_Dirty"),
        ("Pss per worker", "Pss"),
    ):
        a, b = per_worker(st, key), per_worker(pp, key)
        ratio = statistics.median(b) / statistics.median(a)
        lines.append(f"| {label} | {cell(a)} | {cell(b)} | {ratio:.2f} |")
    for label, part, key in (
        ("of which image memory, private dirty", "images", "Private_Dirty"),
        ("of which image memory, Pss", "images", "Pss"),
        ("of which pack mappings, Pss", "packs", "Pss"),
    ):
        b = [statistics.mean(w["parts"][part][key] for w in x["workers"]) / 2**20 for x in pp]
        lines.append(f"| {label} | | {cell(b)} | |")
    a = [x["parent"]["Rss"] / 2**20 for x in st]
    b = [x["parent"]["Rss"] / 2**20 for x in pp]
    ratio = statistics.median(b) / statistics.median(a)
    lines.append(f"| parent Rss after the imports | {cell(a)} | {cell(b)} | {ratio:.2f} |")
    served = statistics.median(x["served"] for x in pp)
    lines += ["", f"Modules served by ppyc in the parent: {served:.0f}.", ""]
    return lines


def markdown(args: argparse.Namespace) -> None:
    results = [json.loads(Path(p).read_text()) for p in args.files]
    results.sort(key=lambda r: tuple(int(x) for x in r["python"].split(".")[:2]))
    lines = [
        BEGIN,
        f"Measured by `benches/fork_bench.py` on {results[0]['machine']}: a parent imports "
        "the corpus and the large stack, runs `gc.collect()` and forks workers; each runs a "
        "small workload three times and `gc.collect()`; with all alive, each worker's "
        "`/proc/PID/smaps_rollup` is read. Median (min-max) over rounds of the mean per "
        "worker; stock and ppyc alternate. The method is in the script's docstring.",
        "",
    ]
    for r in results:
        lines += summary(r)
    lines.append(END)
    text = "\n".join(lines) + "\n"
    if args.write:
        path = Path(args.write)
        old = path.read_text()
        if BEGIN in old and END in old:
            head, rest = old.split(BEGIN, 1)
            tail = rest.split(END, 1)[1].lstrip("\n")
            new = head + text + ("\n" + tail if tail else "")
        else:
            new = old.rstrip("\n") + "\n\n## Pre-fork workers\n\n" + text
        path.write_text(new)
    else:
        sys.stdout.write(text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    m = sub.add_parser("measure")
    m.add_argument("--python", required=True)
    m.add_argument("--out", required=True)
    m.add_argument("--workers", type=int, default=8)
    m.add_argument("--rounds", type=int, default=5)
    k = sub.add_parser("markdown")
    k.add_argument("files", nargs="+")
    k.add_argument("--write")
    args = p.parse_args()
    {"measure": measure, "markdown": markdown}[args.command](args)


if __name__ == "__main__":
    main()
