#!/usr/bin/env bash
# Runs cargo-fuzz targets for a bounded time each and records executions and findings.
#
#   scripts/fuzz.sh SECONDS TARGET...
#
# The checked-in seeds (fuzz/corpus/TARGET) are read, never written: what a run discovers
# goes to build/fuzz/corpus/TARGET (kept between runs), crashes to
# build/fuzz/artifacts/TARGET. The table of executions and findings is printed and written
# to build/fuzz/results.md; the exit status is non-zero if any target found anything.
set -euo pipefail
seconds=$1
shift
root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/build/fuzz
mkdir -p "$out"
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
cd "$root/fuzz"
# -a: debug assertions and overflow checks on, so an arithmetic overflow is a finding too.
cargo +nightly fuzz build -a
results=$out/results.md
{
  echo "| target | seconds | executions | exec/s | corpus | findings |"
  echo "|---|---:|---:|---:|---:|---:|"
} >"$results"
failed=0
for t in "$@"; do
  mkdir -p "$out/corpus/$t" "$out/artifacts/$t"
  log=$out/$t.log
  before=$(find "$out/artifacts/$t" -type f | wc -l)
  status=0
  cargo +nightly fuzz run -a "$t" "$out/corpus/$t" "corpus/$t" -- \
    -max_total_time="$seconds" -print_final_stats=1 -rss_limit_mb=2048 \
    -artifact_prefix="$out/artifacts/$t/" >"$log" 2>&1 || status=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  corpus=$(find "$out/corpus/$t" -type f | wc -l)
  findings=$(($(find "$out/artifacts/$t" -type f | wc -l) - before))
  if [ "$status" -ne 0 ] || [ "$findings" -ne 0 ]; then
    failed=1
    echo "=== $t FAILED (exit $status, $findings new artifacts in $out/artifacts/$t); log: $log"
    grep -E "panicked|ERROR|SUMMARY|Test unit written" "$log" | head -20 || true
  fi
  echo "| \`$t\` | $seconds | ${runs:-?} | ${rate:-?} | $corpus | $findings |" >>"$results"
done
cat "$results"
exit "$failed"
