"""Build-time benchmark of `ppyc compile` on a real site-packages (BENCHMARKS.md).

Usage: python benches/build_times.py SITE_PACKAGES [--runs N] [--json FILE]

Run with the interpreter whose site-packages it is (ppyc installed in it). Measures, each
scenario alternated with its comparison where there is one:
  warm     every .pyc fresh, no previous pack (`ppyc compile --force`), alternating with
  rebuild  one package's sources changed, previous pack present (`ppyc compile`): a delta
           beside the unchanged base (spec/FORMAT.md §13); it checks that one was written
           and the base left alone, and reports the delta's size
  cold     no .pyc at all: `ppyc compile --force` versus `python -m compileall -q -j0`
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

TAG = sys.implementation.cache_tag
ENV = {**os.environ, "PPYC_NO_PROGRESS": "1"}


def run(*args: str) -> float:
    start = time.perf_counter()
    subprocess.run(args, check=True, env=ENV, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def ppyc(*args: str) -> float:
    return run(sys.executable, "-m", "ppyc", "compile", "--quiet", *args)


def drop_pycs(site: Path) -> None:
    for pyc in site.rglob(f"*.{TAG}.pyc"):
        pyc.unlink()


def count_modules(site: Path) -> int:
    out = subprocess.run(
        [sys.executable, "-m", "ppyc", "inspect", str(site)],
        check=True,
        capture_output=True,
        text=True,
        env=ENV,
    ).stdout
    for line in out.splitlines():
        if "modules" in line and line.strip().startswith("size:"):
            return int(line.split(",")[-1].split()[0])
    raise RuntimeError("no module count in `ppyc inspect` output")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("site", type=Path)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--package", default="requests", help="the package changed for rebuild")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    site: Path = args.site.resolve()
    sources = sorted(p for p in site.rglob("*.py") if "__pycache__" not in p.parts)
    results: dict[str, object] = {
        "python": sys.version.split()[0],
        "site": str(site),
        "py_files": len(sources),
        "source_bytes": sum(p.stat().st_size for p in sources),
        "runs": args.runs,
        "cpus": os.cpu_count(),
    }

    # Make every .pyc fresh and a pack exist, then time warm builds.
    run(sys.executable, "-m", "compileall", "-q", "-j0", str(site))
    ppyc("--force", str(site))
    results["modules"] = count_modules(site)

    # Warm and rebuild alternate: a warm build (a whole pack), then one package changed
    # (a comment appended to each of its files) and a rebuild.
    package = site / args.package
    originals = {p: (p.read_bytes(), p.stat()) for p in package.rglob("*.py")}

    def restore() -> None:
        # The original bytes and times: their `.pyc` files are fresh again.
        for p, (data, st) in originals.items():
            p.write_bytes(data)
            os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))

    pack = site / "__pycache__" / f"__ppyc__.{TAG}.ppyc"
    delta = pack.with_suffix(".ppyd")
    warm, rebuild, delta_bytes = [], [], []
    try:
        for i in range(args.runs):
            restore()
            pack.unlink(missing_ok=True)
            delta.unlink(missing_ok=True)
            warm.append(ppyc("--force", str(site)))  # every .pyc fresh, no previous pack
            base = pack.stat()
            for p, (data, _) in originals.items():
                p.write_bytes(data + f"\n# ppyc benchmark edit {i}\n".encode())
            rebuild.append(ppyc(str(site)))
            after = pack.stat()
            if (after.st_ino, after.st_mtime_ns) != (base.st_ino, base.st_mtime_ns):
                raise RuntimeError("the rebuild rewrote the base pack instead of a delta")
            if not delta.exists():
                raise RuntimeError(f"the rebuild wrote no delta `{delta}`")
            delta_bytes.append(delta.stat().st_size)
    finally:
        restore()
        ppyc(str(site))
    results["rebuild_package"] = args.package
    results["rebuild_files"] = len(originals)
    results["pack_bytes"] = pack.stat().st_size
    results["delta_bytes"] = statistics.median(delta_bytes) if delta_bytes else None

    # Cold: no .pyc; ppyc and compileall alternated.
    cold_ppyc, cold_compileall = [], []
    cold_runs = max(2, args.runs // 2)
    for _ in range(cold_runs):
        drop_pycs(site)
        cold_compileall.append(run(sys.executable, "-m", "compileall", "-q", "-j0", str(site)))
        drop_pycs(site)
        cold_ppyc.append(ppyc("--force", "--write-pyc", str(site)))
    shutil.rmtree(site / "__pycache__" / "ppyc-bench", ignore_errors=True)

    def stats(xs: list[float]) -> dict[str, float]:
        return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)}

    results["warm"] = stats(warm)
    results["rebuild"] = stats(rebuild)
    results["cold_ppyc"] = stats(cold_ppyc)
    results["cold_compileall"] = stats(cold_compileall)
    results["cold_runs"] = cold_runs
    results["rebuild_over_warm"] = statistics.median(rebuild) / statistics.median(warm)
    results["cold_ppyc_over_compileall"] = statistics.median(cold_ppyc) / statistics.median(
        cold_compileall
    )
    text = json.dumps(results, indent=2)
    if args.json:
        args.json.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
