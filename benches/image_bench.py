"""Image mode side by side with marshal and stock: the image section of BENCHMARKS.md.

Usage: python benches/image_bench.py measure --python VENV_PYTHON [--out DIR] [--limit N] ...
       python benches/image_bench.py markdown DIR [--write BENCHMARKS.md]

`measure` runs everything for the venv's interpreter (ppyc installed; packs of its stdlib and
site-packages built in image mode; ideally the test corpus installed and `ppyc enable`) in
child processes of that interpreter, and writes DIR/image-<version>.json (default DIR:
build/bench/image/). What it cannot measure (no pack, no corpus, ppyc not enabled, marshal
mode) is recorded with the reason. Children run with every `PPYC_*` variable and
`PYTHONDONTWRITEBYTECODE` removed (stock sides: `PPYC_DISABLE=1`), the collector off while
timing. No time is asserted: targets get a verdict, nothing fails.

1. Load phase, per module of each pack. Image: `Pack(path).load_image(name, filename)`
   (record lookup, pread, checksum, LZ4 decoding, validation, relocation, binding of its
   identifiers); marshal: `marshal.loads` of the module's payload, read beforehand (its
   pread and digest check are not timed, so the comparison leans towards marshal).
   Repeated loads are not representative: a `Pack` binds each identifier once per process
   (interning it) and keeps it, so a module's second image load skips binding, which is most
   of a first load (`runtime/src/ffi/image/load.rs`, `NameCache`); each load also leaks its
   memory by design (immortal objects). So the modules are split in chunks and every chunk
   is loaded by PROCESSES fresh processes, each with a fresh `Pack` (a second `Pack` object
   warms the process-wide one-time costs first: layout probe, first pread), going through
   the chunk in pack order (as imports warm the name cache module after module), per module
   both sides K times, the side that goes first alternating by module and process. The pack
   file is read once before (page cache warm). `--limit N` takes N modules per pack, in runs
   of 25 consecutive ones (evenly spaced single modules would share no identifiers).
   "first": a side's first load of the module, taken only from the processes where it went
   first, best of those; "steady": the best of all K loads in all processes. Reported per
   pack: the median over modules of the per-module ratio marshal/image (min-max) and the
   totals (sums over modules).
2. Allocation: `sys.getallocatedblocks()` after `gc.collect()`, before and after importing
   the corpus (`CORPUS` of benches/importtime_suite.py) in a fresh process; stock and ppyc
   alternating after a warm-up each; medians (min-max), ratio ppyc/stock (target: at most
   0.5). Image objects live outside pymalloc, so this counts what marshal's objects cost.
3. ppyc's own cost per module: one ppyc process imports the corpus; for every module served
   (`__spec__.loader` a `PackLoader`), best of K, alternating, after a warm-up call of each
   (warm `sys.path_importer_cache`, stock `.pyc` files written): the hook's `find_spec(name,
   parent path)` and `PathFinder.find_spec`; `spec.loader.get_code(name)` and
   `SourceFileLoader(name, origin).get_code(name)` (reads the `.pyc`); and the image load of
   1 in steady state (a `Pack` of the same file). "own" = ppyc find + get_code - image load:
   finding, freshness check, lookup and calls, without the load itself; median over modules
   (target: at most 5 us on 3.12).
4. `python -c pass`: PAIRS pairs of fresh processes, stock and ppyc, the order alternating
   pair by pair after 2 warm-ups each; medians (min-max) in ms, the median pairwise
   difference ppyc - stock (target: at most 0.5 ms) and ratio (target: at most 1.03).
5. Sizes, per pack: stored, sections `IMGO` + `IREL` (object areas, LZ4 where it saves, and
   relocation data) against `PAYL` (marshal payloads), `INAM` (identifiers) apart; decoded,
   what a load holds in memory, each module's object area decoded plus its relocation data
   (`Pack.load`'s byte count) against its payload length (target: at most 1.5 for both).

`markdown` renders every image-*.json of DIR as the section of BENCHMARKS.md between its
markers (`--write` replaces it, or appends it with a heading when the file has none).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from importtime_suite import CORPUS

ROOT = Path(__file__).resolve().parent.parent
BEGIN = "<!-- image-bench:begin -->"
END = "<!-- image-bench:end -->"

PROBE = """
import json, sys, sysconfig
r = {"version": "%d.%d.%d" % sys.version_info[:3], "stdlib": sysconfig.get_paths()["stdlib"],
     "hook": any(repr(f) == "<ppyc import hook>" for f in sys.meta_path)}
try:
    import ppyc._native as n
    r["image_support"] = list(n.image_support()[:2])
except Exception as e:
    r["error"] = repr(e)
print(json.dumps(r))
"""
INFO = """
import json, sys
from ppyc._native import Pack
p = Pack(sys.argv[1])
i = p.info()
print(json.dumps({"modules": p.modules(), "mode": i["mode"], "mode_reason": i["mode_reason"],
                  "sections": {s["id"]: s["length"] for s in i["sections"]}}))
"""
LOAD = """
import gc, json, marshal, sys, time
from ppyc._native import Pack
a = json.load(sys.stdin)
pack, warm = Pack(a["path"]), Pack(a["path"])
pack.mode_info()  # decides the mode and makes the (empty) name cache before any timing
todo = [(n, a["root"] + "/" + pack.record(n)["source_path"], pack.payload(n)) for n in a["names"]]
w = min(todo, key=lambda t: len(t[2]))
for _ in range(3):
    warm.load_image(w[0], w[1]), marshal.loads(w[2])
now, out = time.perf_counter_ns, {}
gc.disable()
for i, (name, filename, data) in enumerate(todo):
    sides = ("image", "marshal") if (i + a["seed"]) % 2 == 0 else ("marshal", "image")
    first, best = {}, {}
    try:
        for _ in range(a["k"]):
            for side in sides:
                if side == "image":
                    t = now(); code = pack.load_image(name, filename); t = now() - t
                else:
                    t = now(); code = marshal.loads(data); t = now() - t
                del code
                first.setdefault(side, t)
                best[side] = min(best.get(side, t), t)
    except (ValueError, KeyError) as e:
        out[name] = {"error": str(e)}
        continue
    r = {"went_first": sides[0], "first": first, "best": best, "payload": len(data)}
    if a["sizes"]:
        got = pack.load(pack.find(name)[6], name, filename, 2, "default")
        r["image_bytes"] = got[2] if got[1] == "image" else None
    out[name] = r
print(json.dumps(out))
"""
ALLOC = """
import gc, sys
if %(install)r:
    import ppyc; ppyc.install()
gc.collect(); before = sys.getallocatedblocks()
import %(corpus)s
gc.collect(); after = sys.getallocatedblocks()
served = sum(type(getattr(getattr(m, "__spec__", None), "loader", None)).__name__ == "PackLoader"
             for m in list(sys.modules.values()))
print(after - before, served)
"""
STEADY = """
import gc, importlib, importlib.util, json, os, sys, time
from importlib.machinery import PathFinder, SourceFileLoader
a = json.load(sys.stdin)
if a["install"]:
    import ppyc; ppyc.install()
for c in a["corpus"]:
    importlib.import_module(c)
from ppyc._native import Pack
hook = next(f for f in sys.meta_path if repr(f) == "<ppyc import hook>")
packs = [(Pack(p), root + "/") for p, root in a["packs"]]
def pack_of(name, origin):
    for p, root in packs:
        if origin.startswith(root) and name in p:
            if p.record(name)["source_path"] == origin[len(root):]:
                return p
now, out, skipped = time.perf_counter_ns, {}, {}
for name, mod in sorted(sys.modules.items()):
    spec = getattr(mod, "__spec__", None)
    if type(getattr(spec, "loader", None)).__name__ != "PackLoader" or spec.name != name:
        continue
    parent = name.rpartition(".")[0]
    path = getattr(sys.modules.get(parent), "__path__", None) if parent else None
    pack, stock = pack_of(name, spec.origin), SourceFileLoader(name, spec.origin)
    if pack is None:
        skipped[name] = "no pack of this script holds it"
        continue
    ops = {"ppyc_find": lambda: hook.find_spec(name, path),
           "stock_find": lambda: PathFinder.find_spec(name, path),
           "ppyc_get_code": lambda: spec.loader.get_code(name),
           "stock_get_code": lambda: stock.get_code(name),
           "image_load": lambda: pack.load_image(name, spec.origin)}
    found = ops["ppyc_find"]()
    if type(getattr(found, "loader", None)).__name__ != "PackLoader":
        skipped[name] = "the hook's find_spec gives no PackLoader now"
        continue
    for f in ops.values():
        f()
    if not os.path.exists(importlib.util.cache_from_source(spec.origin)):
        skipped[name] = "no stock .pyc"
        continue
    gc.disable()
    best, order = {}, list(ops)
    for rep in range(a["k"]):
        for key in order[rep % len(order):] + order[:rep % len(order)]:
            t = now(); r = ops[key](); t = now() - t
            del r
            best[key] = min(best.get(key, t), t)
    gc.enable()
    out[name] = best
print(json.dumps({"modules": out, "skipped": skipped}))
"""


def base_env() -> dict[str, str]:
    drop = "PYTHONDONTWRITEBYTECODE"
    return {k: v for k, v in os.environ.items() if not k.startswith("PPYC_") and k != drop}


STOCK_ENV = {**base_env(), "PPYC_DISABLE": "1"}
PPYC_ENV = base_env()
ENVS = {"stock": STOCK_ENV, "ppyc": PPYC_ENV}
CWD = tempfile.gettempdir()  # not the checkout: `''` on sys.path must hold no packages


def child(python: str, code: str, env: dict[str, str], data: object = None, *args: str) -> str:
    stdin = None if data is None else json.dumps(data)
    argv = [python, "-c", code, *args]
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, env=env, cwd=CWD)
    if proc.returncode != 0:
        raise RuntimeError(" ".join(proc.stderr.strip().splitlines()[-3:]) or "failed")
    return proc.stdout


def stats(xs: list[float]) -> dict[str, float]:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


def sample(names: list[str], limit: int | None, run: int = 25) -> list[str]:
    """`limit` names in evenly spaced runs of consecutive ones (a package's modules share
    identifiers, as the modules an import loads one after another do)."""
    if limit is None or len(names) <= limit:
        return names
    runs = -(-limit // run)
    step = (len(names) - run) / max(runs - 1, 1)
    picked = [n for i in range(runs) for n in names[int(i * step) : int(i * step) + run]]
    return list(dict.fromkeys(picked))[:limit]


def find_packs(python: str, stdlib: str) -> list[dict[str, Any]]:
    """The usable packs of the stdlib and site-packages directories, from `ppyc status`."""
    argv = [python, "-m", "ppyc", "status", "--json"]
    proc = subprocess.run(argv, capture_output=True, text=True, env=PPYC_ENV, cwd=CWD, check=True)
    status = json.loads(proc.stdout)
    packs = []
    for entry in status["sys_path"]:
        label = "site-packages" if entry["dir"] in status["site_dirs"] else "stdlib"
        if label == "site-packages" or entry["dir"] == stdlib:
            packs += [
                {"label": label, "path": p["path"], "root": entry["dir"]}
                for p in entry["packs"]
                if p["usable"]
            ]
    return packs


def load_phase(python: str, pack: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    info = json.loads(child(python, INFO, STOCK_ENV, None, pack["path"]))
    s = info["sections"]
    result: dict[str, Any] = {"sections": s, "pack_modules": len(info["modules"])}
    if info["mode"] != "image":
        return {**result, "not_measured": f"marshal mode: {info['mode_reason']}"}
    with open(pack["path"], "rb") as f:  # page cache warm, as for an import of a used pack
        while f.read(1 << 20):
            pass
    names = sample(info["modules"], args.limit)
    chunks = [names[i : i + args.chunk] for i in range(0, len(names), args.chunk)]
    runs: dict[str, list[dict[str, Any]]] = {}
    for seed in range(args.processes):
        for chunk in chunks:
            data = {**pack, "names": chunk, "k": args.k, "seed": seed, "sizes": seed == 0}
            for name, r in json.loads(child(python, LOAD, STOCK_ENV, data)).items():
                runs.setdefault(name, []).append(r)
    modules: dict[str, Any] = {}
    errors = {name: rs[0]["error"] for name, rs in runs.items() if "error" in rs[0]}
    for name, rs in runs.items():
        if name in errors:
            continue
        m: dict[str, Any] = {"payload": rs[0]["payload"], "image_bytes": rs[0].get("image_bytes")}
        for side in ("image", "marshal"):
            firsts = [r["first"][side] for r in rs if r["went_first"] == side]
            m[f"{side}_first"] = min(firsts) if firsts else None
            m[f"{side}_steady"] = min(r["best"][side] for r in rs)
        modules[name] = m
    result.update(modules=modules, errors=errors, sampled=len(names))
    for kind in ("first", "steady"):
        im, ma = f"image_{kind}", f"marshal_{kind}"
        both = [m for m in modules.values() if m[im] and m[ma]]
        if both:
            result[kind] = {
                "image_us": stats([m[im] / 1e3 for m in both]),
                "marshal_us": stats([m[ma] / 1e3 for m in both]),
                "ratio": stats([m[ma] / m[im] for m in both]),
                "total_image_ms": sum(m[im] for m in both) / 1e6,
                "total_marshal_ms": sum(m[ma] for m in both) / 1e6,
            }
    sized = [m for m in modules.values() if m["image_bytes"]]
    decoded, payload = sum(m["image_bytes"] for m in sized), sum(m["payload"] for m in sized)
    stored = s.get("IMGO", 0) + s.get("IREL", 0)
    result["sizes"] = {
        "stored_ratio": stored / s["PAYL"],
        "stored_with_names_ratio": (stored + s.get("INAM", 0)) / s["PAYL"],
        "decoded_bytes": decoded,
        "payload_bytes": payload,
        "decoded_ratio": decoded / payload if payload else None,
    }
    return result


def allocation(python: str, install: bool, runs: int) -> dict[str, Any]:
    code = ALLOC % {"install": install, "corpus": ", ".join(CORPUS)}
    blocks: dict[str, list[float]] = {"stock": [], "ppyc": []}
    served: list[int] = []
    for i in range(-1, runs):  # round -1: the warm-up
        for side in list(ENVS)[:: 1 if i % 2 == 0 else -1]:
            grown, n = map(int, child(python, code, ENVS[side]).split())
            if i >= 0:
                blocks[side].append(grown)
                served += [n] if side == "ppyc" else []
    return {
        "stock_blocks": stats(blocks["stock"]),
        "ppyc_blocks": stats(blocks["ppyc"]),
        "ratio": statistics.median(blocks["ppyc"]) / statistics.median(blocks["stock"]),
        "pairwise_ratio": stats(
            [p / s for p, s in zip(blocks["ppyc"], blocks["stock"], strict=True)]
        ),
        "served": statistics.median(served),
    }


def own_cost(python: str, install: bool, packs: list[dict[str, Any]], k: int) -> dict[str, Any]:
    data = {"corpus": CORPUS, "k": k, "install": install}
    data["packs"] = [(p["path"], p["root"]) for p in packs]
    got = json.loads(child(python, STEADY, PPYC_ENV, data))
    mods = list(got["modules"].values())
    if not mods:
        return {"not_measured": f"no module served ({len(got['skipped'])} skipped)"}
    keys = ("ppyc_find", "stock_find", "ppyc_get_code", "stock_get_code", "image_load")
    result: dict[str, Any] = {f"{key}_us": stats([m[key] / 1e3 for m in mods]) for key in keys}
    ppyc = [(m["ppyc_find"] + m["ppyc_get_code"]) / 1e3 for m in mods]
    stock = [(m["stock_find"] + m["stock_get_code"]) / 1e3 for m in mods]
    return result | {
        "own_us": stats([p - m["image_load"] / 1e3 for p, m in zip(ppyc, mods, strict=True)]),
        "ppyc_total_us": stats(ppyc),
        "stock_total_us": stats(stock),
        "ratio": stats([p / s for p, s in zip(ppyc, stock, strict=True)]),
        "served": len(mods),
        "skipped": got["skipped"],
        "modules": got["modules"],
    }


def startup(python: str, pairs: int) -> dict[str, Any]:
    times: dict[str, list[float]] = {"stock": [], "ppyc": []}
    for i in range(-2, pairs):  # rounds -2 and -1: warm-ups
        for side in list(ENVS)[:: 1 if i % 2 == 0 else -1]:
            start = time.perf_counter()
            subprocess.run([python, "-c", "pass"], env=ENVS[side], cwd=CWD, check=True)
            if i >= 0:
                times[side].append((time.perf_counter() - start) * 1000)
    stock, ppyc = times["stock"], times["ppyc"]
    return {
        "stock_ms": stats(stock),
        "ppyc_ms": stats(ppyc),
        "difference_ms": stats([p - s for p, s in zip(ppyc, stock, strict=True)]),
        "ratio": stats([p / s for p, s in zip(ppyc, stock, strict=True)]),
    }


def machine() -> dict[str, Any]:
    text = Path("/proc/cpuinfo").read_text() + Path("/proc/meminfo").read_text()
    lines = [ln.split(":", 1) for ln in text.splitlines()]
    info = {kv[0].strip(): kv[1].strip() for kv in reversed(lines) if len(kv) == 2}
    return {
        "hostname": platform.node(),
        "cpu": info.get("model name", platform.processor()),
        "cpus": os.cpu_count(),
        "memory_bytes": int(info.get("MemTotal", "0 kB").split()[0]) * 1024,
        "os": f"{platform.system()} {platform.release()}",
    }


def attempt(what: str, f: Callable[..., dict[str, Any]], *args: object) -> dict[str, Any]:
    print(f"=== {what}", flush=True)
    try:
        result = f(*args)
    except Exception as e:  # recorded, not raised: the other measurements still run
        result = {"not_measured": f"{type(e).__name__}: {e}"}
    if "not_measured" in result:
        print(f"    not measured: {result['not_measured']}", flush=True)
    return result


def measure(args: argparse.Namespace) -> None:
    probe = json.loads(child(args.python, PROBE, PPYC_ENV))
    if "error" in probe:
        sys.exit(f"{args.python}: ppyc._native does not import: {probe['error']}")
    v, py, hook = probe["version"], args.python, probe["hook"]
    names = ("k", "processes", "chunk", "limit", "pairs", "alloc_runs")
    meta = {
        "python": {"path": py, "version": v},
        "machine": machine(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "image_support": probe["image_support"],
        "enabled": hook,
        "args": {k: getattr(args, k) for k in names},
    }
    packs = find_packs(py, probe["stdlib"])
    results: dict[str, Any] = {"meta": meta, "packs": []}
    for p in packs:
        results["packs"].append(p | attempt(f"{v} load, {p['label']}", load_phase, py, p, args))
    argv = [py, "-c", "import " + ", ".join(CORPUS)]
    corpus = subprocess.run(argv, env=STOCK_ENV, cwd=CWD, capture_output=True)
    if not packs:
        results["packs_missing"] = "no usable pack on sys.path: `ppyc compile [--stdlib]`"
        results["allocation"] = results["own_cost"] = {"not_measured": "no pack"}
    elif corpus.returncode != 0:
        why = "the test corpus is not installed (tests/requirements-corpus.txt)"
        results["allocation"] = results["own_cost"] = {"not_measured": why}
    else:
        # Not enabled: the children call `ppyc.install()` (a no-op under PPYC_DISABLE).
        meta["activation"] = ".pth (ppyc enable)" if hook else "ppyc.install() in the child"
        results["allocation"] = attempt(
            f"{v} allocation", allocation, py, not hook, args.alloc_runs
        )
        results["own_cost"] = attempt(f"{v} own cost", own_cost, py, not hook, packs, args.k)
    if hook:
        results["startup"] = attempt(f"{v} python -c pass", startup, py, args.pairs)
    else:
        results["startup"] = {"not_measured": "ppyc is not enabled in this venv (`ppyc enable`)"}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"image-{v}.json"
    path.write_text(json.dumps(results, indent=1))
    print(f"=== {v}: {path}", flush=True)


def verdict(value: float | None, target: float) -> str:
    return "-" if value is None else ("met" if value <= target else "**missed**")


def mmm(s: dict[str, float], digits: int = 1) -> str:
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}-{s['max']:.{digits}f})"


def summary(r: dict[str, Any]) -> list[str]:
    """The rows of one interpreter's table of targets."""
    lines = [
        "| measure | stock | ppyc | ppyc vs stock | target | verdict |",
        "|---|---|---|---|---|---|",
    ]
    al, oc, st = (r[key] for key in ("allocation", "own_cost", "startup"))
    for label, x in (("allocated blocks", al), ("own cost", oc), ("`python -c pass`", st)):
        if "not_measured" in x:
            lines.append(f"| {label} | not measured: {x['not_measured']} |||||")
    if "ratio" in al:
        lines.append(
            f"| allocated blocks, corpus ({al['served']:.0f} served) "
            f"| {mmm(al['stock_blocks'], 0)} | {mmm(al['ppyc_blocks'], 0)} | {al['ratio']:.2f} x "
            "| at most 0.5 x "
            f"| {verdict(al['ratio'], 0.5)} |"
        )
    if "own_us" in oc:
        for label, key in (("find_spec", "find"), ("get_code", "get_code"), ("both", "total")):
            s, p = oc[f"stock_{key}_us"], oc[f"ppyc_{key}_us"]
            lines.append(
                f"| {label}, us ({oc['served']} modules) | {mmm(s, 2)} | {mmm(p, 2)} "
                f"| {p['median'] / s['median']:.2f} x | | |"
            )
        load, own = oc["image_load_us"]["median"], oc["own_us"]
        lines.append(
            f"| own: find + check + load minus the image load ({load:.2f}), us | | {mmm(own, 2)} "
            f"| | at most 5 | {verdict(own['median'], 5.0)} |"
        )
    if "ratio" in st:
        d, q = st["difference_ms"]["median"], st["ratio"]["median"]
        lines.append(
            f"| `python -c pass`, ms | {mmm(st['stock_ms'])} | {mmm(st['ppyc_ms'])} "
            f"| {d:+.2f} ms, {q:.3f} x | at most +0.5 ms, 1.03 x "
            f"| {verdict(d, 0.5)}, {verdict(q, 1.03)} |"
        )
    for p in r["packs"]:
        if sz := p.get("sizes"):
            dec = sz["decoded_ratio"]
            lines.append(
                f"| size, {p['label']}: `IMGO`+`IREL` (+`INAM`) / `PAYL`; decoded / payload "
                f"| {sz['payload_bytes'] / 2**20:.1f} MiB payloads "
                f"| {sz['decoded_bytes'] / 2**20:.1f} MiB decoded "
                f"| stored {sz['stored_ratio']:.2f} x ({sz['stored_with_names_ratio']:.2f}); "
                f"decoded {dec or 0:.2f} x | at most 1.5 x "
                f"| {verdict(sz['stored_ratio'], 1.5)}, {verdict(dec, 1.5)} |"
            )
    return lines


def markdown(results: Path) -> str:
    reports = [json.loads(p.read_text()) for p in sorted(results.glob("image-*.json"))]
    if not reports:
        sys.exit(f"no image-*.json in {results}")
    reports.sort(key=lambda r: tuple(map(int, r["meta"]["python"]["version"].split("."))))
    first = reports[0]["meta"]
    m, a = first["machine"], first["args"]
    lines = [
        f"Measured by `benches/image_bench.py` on {m['hostname']} ({m['cpu']}, {m['cpus']} "
        f"CPUs, {m['memory_bytes'] / 2**30:.0f} GiB, {m['os']}), {first['date'][:10]}. Load: "
        f"each pack's modules in {a['processes']} fresh processes per chunk of {a['chunk']}, "
        f"{a['k']} loads per side, module and process, alternating; *first*: a module's first "
        "load in a process, best of the processes where that side went first; *steady*: best "
        "of all; image = `Pack.load_image` (read, check, relocate, bind), marshal = "
        "`marshal.loads` of the payload already in memory; medians over modules in us "
        f"(min-max), totals in ms. Allocation: {a['alloc_runs']} fresh processes per side "
        "importing the corpus, growth of `sys.getallocatedblocks()`. Per-module costs: "
        f"steady state, best of {a['k']}. Start-up: {a['pairs']} pairs of `python -c pass`, "
        "pairwise difference and ratio. The method is in the script's docstring.",
        "",
    ]
    for r in reports:
        lines += [
            f"### CPython {r['meta']['python']['version']}",
            "",
            "| pack | modules (measured) | load | image | marshal | marshal/image per module "
            "| totals image / marshal (ratio) |",
            "|---|---|---|---|---|---|---|",
        ]
        for p in r["packs"]:
            if "not_measured" in p:
                lines.append(f"| {p['label']} | - | not measured: {p['not_measured']} |||||")
            for kind in ("first", "steady"):
                if s := p.get(kind):
                    im, ma = s["total_image_ms"], s["total_marshal_ms"]
                    lines.append(
                        f"| {p['label']} | {p['pack_modules']} ({s['ratio']['n']}) | {kind} "
                        f"| {mmm(s['image_us'])} | {mmm(s['marshal_us'])} | {mmm(s['ratio'], 2)} "
                        f"| {im:.1f} / {ma:.1f} ({ma / im:.2f}) |"
                    )
        lines += ["", *summary(r), ""]
    if any("install" in r["meta"].get("activation", "") for r in reports):
        lines += ["Where ppyc is not enabled, the ppyc side calls `ppyc.install()`.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("measure")
    m.add_argument("--python", required=True, help="the venv's interpreter")
    m.add_argument("--out", type=Path, default=ROOT / "build" / "bench" / "image")
    m.add_argument("--k", type=int, default=5, help="loads per side, module and process")
    m.add_argument("--processes", type=int, default=6, help="fresh processes per chunk (even)")
    m.add_argument("--chunk", type=int, default=250, help="modules per load process")
    m.add_argument("--limit", type=int, help="modules per pack (runs of 25 consecutive ones)")
    m.add_argument("--alloc-runs", type=int, default=7, help="processes per side")
    m.add_argument("--pairs", type=int, default=40, help="`python -c pass` pairs")
    md = sub.add_parser("markdown")
    md.add_argument("results", type=Path)
    md.add_argument("--write", type=Path, help="replace the section between the markers")
    args = parser.parse_args()
    if args.command == "measure":
        if args.processes < 2:
            parser.error("--processes must be at least 2: each side goes first in half")
        args.python = os.path.abspath(args.python)  # children run elsewhere; keep the venv link
        measure(args)
        return
    text = markdown(args.results)
    if args.write is None:
        print(text)
        return
    doc = args.write.read_text()
    if doc.find(BEGIN) < 0 or doc.find(END) < doc.find(BEGIN):
        doc = doc.rstrip("\n") + f"\n\n## Image mode, side by side\n\n{BEGIN}\n{END}\n"
    start, end = doc.find(BEGIN), doc.find(END)
    args.write.write_text(doc[: start + len(BEGIN)] + "\n" + text + "\n" + doc[end:])


if __name__ == "__main__":
    main()
