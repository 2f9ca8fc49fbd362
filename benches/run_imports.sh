#!/usr/bin/env bash
# The import-time suite of BENCHMARKS.md, measured with `ppyc importtime`
# (benches/importtime_suite.py), for each interpreter given (default: every pyenv CPython
# 3.10-3.13). Per interpreter: a venv with ppyc (`pip install .`), the test corpus and the
# large stack (benches/requirements-stack.txt: pandas, sympy, Django), its site-packages and stdlib
# packed, ppyc enabled; the peers that install for that version are added to the same venv
# (benches/peers/setup_peers.sh) and measured side by side with stock and ppyc.
# Then, per interpreter, pre-fork workers' memory, stock versus ppyc (benches/fork_bench.py).
# SETUP=0 measures again with the venvs as they are; RUNS=N (default 20) runs per side.
# Results: build/bench/suite/*.json (+ an HTML report per interpreter); the import section
# of BENCHMARKS.md is rewritten from them.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/build/bench
results=$out/suite
mkdir -p "$results"
pythons=("$@")
if [ ${#pythons[@]} -eq 0 ]; then
  pythons=($(ls -d "$(pyenv root)"/versions/3.1[0123].*/bin/python | sort -V))
fi
export PPYC_NO_PROGRESS=1
for py in "${pythons[@]}"; do
  v=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  venv=$out/imports-venv-$v
  echo "=== CPython $v ($py)"
  [ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
  if [ "${SETUP:-1}" = 1 ]; then
    export PPYC_DISABLE=1
    pip=("$venv/bin/pip" install --disable-pip-version-check --quiet)
    "${pip[@]}" -r "$root/tests/requirements-dev.txt" -r "$root/tests/requirements-corpus.txt"
    "${pip[@]}" -r "$root/benches/requirements-stack.txt" \
      || echo "warning: the large stack does not install for $v; left out"
    PATH="$venv/bin:$PATH" "${pip[@]}" --no-build-isolation --force-reinstall --no-deps "$root"
    "$venv/bin/python" -m ppyc compile --quiet
    "$venv/bin/python" -m ppyc compile --quiet --stdlib
    "$venv/bin/python" -m ppyc enable
    bash "$root/benches/peers/setup_peers.sh" "$venv" "$results/peers-$v.jsonl"
    unset PPYC_DISABLE
  fi
  "$venv/bin/python" "$root/benches/importtime_suite.py" measure --python "$venv/bin/python" \
    --out "$results" --runs "${RUNS:-20}" --peers "$results/peers-$v.jsonl"
  # Pre-fork workers: the memory each forked worker makes private (benches/fork_bench.py).
  python3 "$root/benches/fork_bench.py" measure --python "$venv/bin/python" \
    --out "$results/fork-$v.json"
done
python3 "$root/benches/importtime_suite.py" markdown "$results" --write "$root/BENCHMARKS.md"
python3 "$root/benches/fork_bench.py" markdown "$results"/fork-*.json --write "$root/BENCHMARKS.md"
