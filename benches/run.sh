#!/usr/bin/env bash
# Regenerates the numbers in BENCHMARKS.md (`make bench`).
#   1. build times of `ppyc compile` on a real site-packages (benches/build_times.py), with
#      `python -m compileall -j0` side by side for the cold build;
#   2. criterion microbenchmarks of the pack reader (open, lookup).
# Results land in build/bench/; BENCHMARKS.md quotes them.
set -euo pipefail
PY=${1:-python3}
root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/build/bench
venv=$out/venv
mkdir -p "$out"
[ -x "$venv/bin/python" ] || "$PY" -m venv "$venv"
"$venv/bin/pip" install --disable-pip-version-check --quiet -r "$root/tests/requirements-dev.txt"
(cd "$root/benches" && "$venv/bin/pip" install --disable-pip-version-check --quiet -r requirements-bench.txt)
PATH="$venv/bin:$PATH" "$venv/bin/pip" install --disable-pip-version-check --quiet \
  --no-build-isolation --force-reinstall --no-deps "$root"
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
"$venv/bin/python" "$root/benches/build_times.py" "$site" --runs "${RUNS:-5}" --json "$out/build_times.json"
(cd "$root" && cargo bench -p ppyc-benches --bench pack -- --noplot) 2>&1 | tee "$out/criterion.txt"
