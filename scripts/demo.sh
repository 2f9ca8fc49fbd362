#!/usr/bin/env bash
# `make demo`: the main job end to end on an embedded default: a small venv of popular
# packages (tests/requirements-corpus.txt) plus the interpreter's own standard library.
set -euo pipefail
PY=${1:-python3}
root=$(cd "$(dirname "$0")/.." && pwd)
venv=$root/build/demo-venv
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "venv for $($PY -c 'import sys; print(sys.version.split()[0])') at build/demo-venv"
[ -x "$venv/bin/python" ] || "$PY" -m venv "$venv"
"$venv/bin/pip" install --disable-pip-version-check --quiet -r "$root/tests/requirements-dev.txt"
"$venv/bin/pip" install --disable-pip-version-check --quiet -r "$root/tests/requirements-corpus.txt"
step "pip install . (builds the extension and the ppyc command)"
PATH="$venv/bin:$PATH" "$venv/bin/pip" install --disable-pip-version-check --quiet --no-build-isolation --force-reinstall --no-deps "$root"
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')

step "ppyc compile --stdlib --force   (site-packages and the standard library, from scratch)"
"$venv/bin/ppyc" compile --stdlib --force
step "ppyc compile --stdlib   (again: incremental, everything reused)"
"$venv/bin/ppyc" compile --stdlib
step "ppyc inspect $site   (first lines)"
"$venv/bin/ppyc" inspect "$site" | head -n 24
step "ppyc inspect $site rich.console"
"$venv/bin/ppyc" inspect "$site" rich.console
step "ppyc verify   (digests, and every module against what its source compiles to)"
"$venv/bin/ppyc" verify

step "ppyc enable   (every run of this interpreter now imports from packs)"
"$venv/bin/ppyc" enable
step "ppyc status"
"$venv/bin/ppyc" status
step "import rich.console, requests, jinja2 with ppyc: what was served"
"$venv/bin/python" - <<'PY'
import jinja2
import requests
import rich.console

import ppyc

s = ppyc.stats()
fallbacks = s["fallbacks"] or "none"
print(f"served {s['served']} modules from packs, fallbacks: {fallbacks}, "
      f"{s['bytes'] / 1e6:.1f} MB of code unmarshalled from the mappings")
for p in s["packs"]:
    if p.get("served"):
        print(f"  {p['served']:4d} from {p['path']}")
PY
step "ppyc importtime -c 'import rich.console, requests, jinja2' --runs 10 --html build/demo-importtime.html"
(unset PPYC_DISABLE; "$venv/bin/ppyc" importtime -c "import rich.console, requests, jinja2" --runs 10 \
  --top 12 --html "$root/build/demo-importtime.html")
step "ppyc disable   (back to the stock importer; the packs stay)"
"$venv/bin/ppyc" disable
