#!/usr/bin/env bash
# Import times, stock versus ppyc marshal mode (benches/import_times.py), for each
# interpreter given (default: every pyenv CPython 3.11-3.13). Per interpreter: a venv with
# ppyc (`pip install .`) and the test corpus, its site-packages and stdlib packed, ppyc
# enabled (SETUP=0 skips that and measures again). Results:
# build/bench/import_times-<version>.{json,md}.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/build/bench
mkdir -p "$out"
pythons=("$@")
if [ ${#pythons[@]} -eq 0 ]; then
  pythons=($(ls -d "$(pyenv root)"/versions/3.1[123].*/bin/python | sort))
fi
for py in "${pythons[@]}"; do
  v=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  venv=$out/imports-venv-$v
  echo "=== CPython $v ($py)"
  [ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
  export PPYC_DISABLE=1 PPYC_NO_PROGRESS=1
  if [ "${SETUP:-1}" = 1 ]; then  # SETUP=0: measure again with the venvs as they are
  "$venv/bin/pip" install --disable-pip-version-check --quiet -r "$root/tests/requirements-dev.txt" \
    -r "$root/tests/requirements-corpus.txt"
  PATH="$venv/bin:$PATH" "$venv/bin/pip" install --disable-pip-version-check --quiet \
    --no-build-isolation --force-reinstall --no-deps "$root"
  "$venv/bin/python" -m ppyc compile --quiet
  "$venv/bin/python" -m ppyc compile --quiet --stdlib
  "$venv/bin/python" -m ppyc enable
  fi
  unset PPYC_DISABLE
  "$venv/bin/python" "$root/benches/import_times.py" --runs "${RUNS:-20}" \
    --json "$out/import_times-$v.json" --markdown "$out/import_times-$v.md"
done
