#!/usr/bin/env bash
# Ready-to-run venvs for the peers that ppyc is benchmarked against, and how to run a workload
# with each peer active and inactive in the same venv.
#
#   setup_peers.sh [OUTDIR]        every pyenv CPython 3.10-3.13 (or $PEERS_PYTHONS, a list of
#                                  interpreters); venvs in OUTDIR/venvs/PEER-3.x, the lines
#                                  in OUTDIR/peers.jsonl (OUTDIR defaults to build/bench/peers)
#   setup_peers.sh VENV OUT.jsonl  only the CPython of VENV; the peer venvs (next to OUT.jsonl,
#                                  in peer-venvs/) get the packages of VENV (`pip freeze`,
#                                  without ppyc); the lines go to OUT.jsonl
#
# Peers: code-data-share (PyPI, wheels for CPython 3.8-3.12; its sdist fails on 3.13) and
# oxidized-importer (PyPI, wheels up to 3.10, no sdist). One JSON line per (peer, version):
#   {"peer", "python": "3.x", "venv", "venv_python", "env_on", "argv_prefix_on", "env_off",
#    "env_on_per_workload": {CODE: env}, "ready", "why", "archive", "evidence"}
# Run a workload with the peer active as  env_on  + venv_python argv_prefix_on... -c CODE,
# inactive as  env_off + venv_python -c CODE. A peer that does not install or build for a
# version has "ready": false and the error text in "why".
#   code-data-share: its documented three steps. TRACE (PYCDSMODE=TRACE PYCDSLIST=list) the
#     workloads below, dump (cds.dump.run_dump(list, archive)), then SHARE
#     (PYCDSMODE=SHARE PYCDSARCHIVE=archive), served by its pycds.pth at start-up. The .pth
#     is there in both modes (off = it imports cds and does nothing else). Loading an
#     archive costs time in proportion to its size, so each workload has its own archive
#     (env_on_per_workload, keyed by the exact -c code); env_on is the union of them.
#   oxidized-importer: an OxidizedFinder indexing (memory-mapped) a packed-resources file of
#     the venv's site-packages and stdlib (peers_helper.py ox-build), put first on
#     sys.meta_path by a one-line oxidized_bench.pth when OXIDIZED_BENCH_RESOURCES is set.
# Idempotent: existing venvs are reused, archives and resources are rebuilt every run.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
helper=$here/peers_helper.py
peers=(${PEERS:-code-data-share oxidized-importer})

# The workloads code-data-share's archive is traced from (the whole-corpus one covers the
# others; the list is CORPUS of benches/importtime_suite.py).
corpus_mods="attrs, certifi, charset_normalizer, click, idna, jinja2, markdown_it, markupsafe, mdurl, networkx, packaging.version, pygments.lexers, requests, rich.console, six, urllib3"
workloads=("import rich.console" "import requests" "import $corpus_mods")
# The large stack (STACK of benches/importtime_suite.py), where the reference venv has it.
stack_mods="pandas, sympy, django.db.models, django.forms, django.template, django.urls, django.views.generic, django.test"

if [ $# -ge 2 ]; then
  ref_venv=$(cd "$1" && pwd)
  jsonl=$2
  mkdir -p "$(dirname "$jsonl")"
  outdir=$(cd "$(dirname "$jsonl")" && pwd)/peer-venvs
  venvs=$outdir
  pythons=("$("$ref_venv/bin/python" -c 'import os, sys
print(os.path.join(sys.base_prefix, "bin", "python%d.%d" % sys.version_info[:2]))')")
  mkdir -p "$outdir"
  reqs=$outdir/requirements-$(basename "$ref_venv").txt
  "$ref_venv/bin/python" -m pip freeze --disable-pip-version-check --exclude-editable \
    | grep -v -i -E '^(ppyc|code[-_.]data[-_.]share|oxidized[-_.]importer)( |=|@|$)' \
    | grep -v ' @ file:' >"$reqs" || true
  if PPYC_DISABLE=1 "$ref_venv/bin/python" -c "import $stack_mods" 2>/dev/null; then
    workloads+=("import $stack_mods")
  fi
else
  outdir=${1:-$root/build/bench/peers}
  mkdir -p "$outdir"
  outdir=$(cd "$outdir" && pwd)
  jsonl=$outdir/peers.jsonl
  venvs=$outdir/venvs
  if [ -n "${PEERS_PYTHONS:-}" ]; then
    pythons=($PEERS_PYTHONS)
  else
    pythons=($(ls -d "$(pyenv root)"/versions/3.1[0-3].*/bin/python | sort -V))
  fi
  reqs=$root/tests/requirements-corpus.txt
fi
mkdir -p "$venvs"

# The first error lines of a pip log (the compiler's, then pip's own).
reason() {
  grep -E 'fatal error|^ *ERROR:' "$1" | grep -v -E '^ERROR: ERROR' \
    | sed -E -e 's/^ *//' -e 's#/tmp/pip-[^ ]*/src/#src/#' | head -n 3 | paste -s -d ' ' - | cut -c1-600
}

# cds_dump PY LIST ARCHIVE LOG: code-data-share's dump step (its run_dump() ends in exit(0)).
cds_dump() {
  rm -f "$3"
  env -u PYCDSMODE "$1" -c "import cds.dump, sys; cds.dump.run_dump(sys.argv[1], sys.argv[2])" "$2" "$3" >>"$4" 2>&1 \
    && [ -s "$3" ]
}

# setup_peer PEER PY VENV: sets env_on, env_off, env_on_per_workload, archive, evidence; on failure sets why, returns 1.
setup_peer() {
  local peer=$1 py=$2 venv=$3 log=$3.log vpy=$3/bin/python
  local pip=("$vpy" -m pip install --disable-pip-version-check)
  : >"$log"
  if [ ! -x "$vpy" ]; then
    "$py" -m venv "$venv" >>"$log" 2>&1 || { why="venv: $(tail -n 1 "$log")"; return 1; }
  fi
  echo "--- pip install $peer" >>"$log"
  "${pip[@]}" "$peer" >>"$log" 2>&1 || { why="pip install $peer: $(reason "$log")"; return 1; }
  echo "--- pip install -r $reqs" >>"$log"
  "${pip[@]}" -r "$reqs" >>"$log" 2>&1 || { why="pip install -r $reqs: $(reason "$log")"; return 1; }
  local purelib data=$venv/peer-data
  purelib=$("$vpy" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  mkdir -p "$data"
  # Bytecode for every module (what both peers pack; pip already wrote most of it).
  "$vpy" -m compileall -q -j 0 "$purelib" >>"$log" 2>&1 || true
  local probe=rich.console want_off=_frozen_importlib_external.SourceFileLoader want_on
  case $peer in
    code-data-share)
      # One archive per workload (the peer's intended use: trace the program, dump, share;
      # loading maps, pre-faults and pointer-patches the whole archive, so its cost grows
      # with its size) and one for the union of the workloads (env_on).
      local i list img per=()
      rm -f "$data"/cds*
      for i in "${!workloads[@]}"; do
        list=$data/cds-$i.lst img=$data/cds-$i.img
        PYCDSMODE=TRACE PYCDSLIST=$list "$vpy" -c "${workloads[$i]}" >>"$log" 2>&1 \
          || { why="PYCDSMODE=TRACE ${workloads[$i]}: $(tail -n 1 "$log")"; return 1; }
        cds_dump "$vpy" "$list" "$img" "$log" || { why="cds.dump.run_dump: $(tail -n 1 "$log")"; return 1; }
        per+=("$("$vpy" -c 'import json, sys; print(json.dumps(sys.argv[1]) + ": " + json.dumps({"PYCDSMODE": "SHARE", "PYCDSARCHIVE": sys.argv[2]}))' "${workloads[$i]}" "$img")")
      done
      archive=$data/cds.img
      awk '!seen[$0]++' "$data"/cds-*.lst >"$data/cds.lst"
      cds_dump "$vpy" "$data/cds.lst" "$archive" "$log" || { why="cds.dump.run_dump: $(tail -n 1 "$log")"; return 1; }
      env_on="{\"PYCDSMODE\": \"SHARE\", \"PYCDSARCHIVE\": \"$archive\"}"
      env_on_per_workload="{$(IFS=,; echo "${per[*]}")}"
      env_off='{"PYCDSMODE": ""}'
      on=(env PYCDSMODE=SHARE "PYCDSARCHIVE=$archive")
      off=(env PYCDSMODE=)
      want_on=cds.CDSFinder
      ;;
    oxidized-importer)
      archive=$data/oxidized-resources.bin
      "$vpy" "$helper" ox-build "$archive" >>"$log" 2>&1 \
        || { why="ox-build: $(tail -n 1 "$log")"; return 1; }
      echo 'import os, sys; _p = os.environ.get("OXIDIZED_BENCH_RESOURCES"); _f = _p and __import__("oxidized_importer").OxidizedFinder(); _p and (_f.index_file_memory_mapped(_p), sys.meta_path.insert(0, _f))' \
        >"$purelib/oxidized_bench.pth"
      env_on="{\"OXIDIZED_BENCH_RESOURCES\": \"$archive\"}"
      env_off='{"OXIDIZED_BENCH_RESOURCES": ""}'
      on=(env "OXIDIZED_BENCH_RESOURCES=$archive")
      off=(env OXIDIZED_BENCH_RESOURCES=)
      want_on=oxidized_importer.OxidizedFinder
      ;;
  esac
  # Evidence: who loaded rich.console with the peer on and off, and every workload runs.
  local got_on got_off w
  got_on=$("${on[@]}" "$vpy" "$helper" loader "$probe" "import $probe" 2>>"$log") || got_on="failed"
  got_off=$("${off[@]}" "$vpy" "$helper" loader "$probe" "import $probe" 2>>"$log") || got_off="failed"
  evidence="$probe.__loader__: on $got_on, off $got_off"
  [ "$got_on" = "$want_on" ] && [ "$got_off" = "$want_off" ] \
    || { why="not active as expected: $evidence"; return 1; }
  for w in "${workloads[@]}"; do
    "${on[@]}" "$vpy" -c "$w" >>"$log" 2>&1 || { why="$w fails with the peer on: $(tail -n 1 "$log")"; return 1; }
  done
}

tmp=$jsonl.tmp
: >"$tmp"
for py in "${pythons[@]}"; do
  v=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  for peer in "${peers[@]}"; do
    venv=$venvs/$peer-$v
    env_on='{}' env_off='{}' env_on_per_workload='{}' archive="" evidence="" why=""
    echo "=== $peer on CPython $v: $venv" >&2
    if setup_peer "$peer" "$py" "$venv"; then ready=true; else ready=false; fi
    echo "    ready=$ready ${why:+($why)}" >&2
    "$py" "$helper" emit "peer=$peer" "python=$v" "venv=$venv" "venv_python=$venv/bin/python" \
      "env_on:=$env_on" "argv_prefix_on:=[]" "env_off:=$env_off" \
      "env_on_per_workload:=$env_on_per_workload" "ready:=$ready" "why=$why" \
      "archive=$archive" "evidence=$evidence" >>"$tmp"
  done
done
mv "$tmp" "$jsonl"
echo "wrote $jsonl" >&2
