#!/usr/bin/env bash
# Regenerates the numbers in BENCHMARKS.md (`make bench`).
#   1. build times of `ppyc compile` on a real site-packages (benches/build_times.py), with
#      `python -m compileall -j0` side by side for the cold build;
#   2. criterion microbenchmarks of the pack reader (open, lookup);
#   3. image mode side by side with marshal and stock (benches/image_bench.py), for every
#      pyenv CPython 3.11-3.13 whose venv is ready: the first of build/bench/imports-venv-V
#      (made by benches/run_imports.sh), build/perf-venv-V, build/venv-V in which ppyc
#      imports; what it cannot measure there (no packs, no corpus, not enabled) it reports.
#      IMAGE_BENCH_ARGS adds options (sample sizes: `--limit 200 --pairs 10`...). Results in
#      build/bench/image/; it rewrites its section of BENCHMARKS.md.
#   4. background refresh (benches/refresh_bench.py): time from `pip install -U` to served
#      again, and the check's cost on the import path; build/bench/refresh.json.
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
image=$out/image
rm -f "$image"/image-*.json
seen=" "
for py in $(ls -d "$(pyenv root)"/versions/3.1[123].*/bin/python 2>/dev/null | sort -V); do
  v=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  case "$seen" in *" $v "*) continue ;; esac
  seen="$seen$v "
  for venv in "$out/imports-venv-$v" "$root/build/perf-venv-$v" "$root/build/venv-$v" ""; do
    [ -n "$venv" ] && PPYC_DISABLE=1 "$venv/bin/python" -c 'import ppyc._native' 2>/dev/null && break
  done
  if [ -z "$venv" ]; then
    echo "=== image bench, CPython $v: no venv with ppyc, left out"
    continue
  fi
  echo "=== image bench, CPython $v: $venv"
  # shellcheck disable=SC2086 # IMAGE_BENCH_ARGS: options, split on purpose
  "$venv/bin/python" "$root/benches/image_bench.py" measure --python "$venv/bin/python" \
    --out "$image" ${IMAGE_BENCH_ARGS:-} || echo "warning: the image bench failed for $v"
done
if ls "$image"/image-*.json >/dev/null 2>&1; then
  python3 "$root/benches/image_bench.py" markdown "$image" --write "$root/BENCHMARKS.md"
fi
"$venv/bin/python" "$root/benches/refresh_bench.py" --out "$out/refresh.json"
