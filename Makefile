# ppyc: the two entry points are `make demo` and `make test` (README.md).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.ONESHELL:

PYTHON ?= python3
BUILD := $(CURDIR)/build
PYENV_ROOT ?= $(shell pyenv root 2>/dev/null || echo $$HOME/.pyenv)
# Every CPython 3.10-3.14 this machine has (as CI has the same image).
TEST_PYTHONS ?= $(sort $(wildcard $(PYENV_ROOT)/versions/3.1[0-4].*/bin/python))
PIP_FLAGS := --disable-pip-version-check --quiet
# The tests of every interpreter: none found is a failure, not a run that tests nothing.
define need_pythons
if [ -z "$(strip $(TEST_PYTHONS))" ]; then
  echo "error: no CPython 3.10-3.14 found under $(PYENV_ROOT)/versions (expected" \
    "$(PYENV_ROOT)/versions/3.1[0-4].*/bin/python; or set TEST_PYTHONS)" >&2
  exit 1
fi
endef
export CARGO_TERM_COLOR ?= never
export PPYC_NO_PROGRESS := 1

.PHONY: demo test lint rust-test fuzz fuzz-smoke browser python-test soak wheels bench clean

## demo: pack this interpreter's stdlib and a small venv of popular packages, then inspect
## and verify the result.
demo:
	bash scripts/demo.sh "$(PYTHON)"

## test: every test, on every installed CPython 3.10+.
test: lint fuzz-smoke rust-test browser python-test

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	cargo fmt --manifest-path fuzz/Cargo.toml --all -- --check
	cargo clippy --manifest-path fuzz/Cargo.toml --all-targets --locked -- -D warnings
	$(PYTHON) -m venv $(BUILD)/lint-venv
	$(BUILD)/lint-venv/bin/pip install $(PIP_FLAGS) ruff==0.17.6
	$(BUILD)/lint-venv/bin/ruff check python tests compiler/src compiler/tests importtime/tests benches scripts
	$(BUILD)/lint-venv/bin/ruff format --check python tests compiler/src compiler/tests importtime/tests benches scripts

rust-test:
	$(need_pythons)
	PPYC_TEST_PYTHONS="$(subst $(eval) ,:,$(TEST_PYTHONS))" \
	  cargo test --workspace --exclude ppyc-runtime --exclude ppyc-cli --locked --release

# cargo-fuzz targets (fuzz/, RELIABILITY.md): `make fuzz` runs each for FUZZ_SECONDS,
# `make test` each for FUZZ_SMOKE_SECONDS; executions and findings land in
# build/fuzz/results.md. Installs cargo-fuzz if missing (the nightly toolchain is needed).
FUZZ_TARGETS := pack_open index_lookup record_decode image marshal importtime
FUZZ_SECONDS ?= 300
FUZZ_SMOKE_SECONDS ?= 30

fuzz:
	bash scripts/fuzz.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz-smoke:
	bash scripts/fuzz.sh $(FUZZ_SMOKE_SECONDS) $(FUZZ_TARGETS)

# Debian's Chromium: the `ppyc importtime --html` report is opened in it by the tests.
browser:
	if ! command -v chromium >/dev/null; then
	  sudo=$$( [ "$$(id -u)" = 0 ] || echo sudo )
	  $$sudo apt-get update -qq
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null
	fi
	chromium --version

# One venv per interpreter, with ppyc installed by `pip install .` (the user's way).
python-test:
	$(need_pythons)
	for py in $(TEST_PYTHONS); do
	  v=$$($$py -c 'import sys; print("%d.%d" % sys.version_info[:2])')
	  venv=$(BUILD)/venv-$$v
	  echo "=== CPython $$v ($$py)"
	  [ -x $$venv/bin/python ] || $$py -m venv $$venv
	  $$venv/bin/pip install $(PIP_FLAGS) -r tests/requirements-dev.txt
	  PATH=$$venv/bin:$$PATH $$venv/bin/pip install $(PIP_FLAGS) --no-build-isolation --force-reinstall --no-deps .
	  (cd tests && $$venv/bin/python -m pytest -q -p no:cacheprovider python)
	done

## soak: the long soak (tests/python/soak.py, RELIABILITY.md): SOAK_ITERATIONS (default 1000)
## stock/ppyc pairs of corpus imports with random hash seeds and flags, per interpreter;
## reports in build/soak/. `make test` runs 12 per interpreter. Run after `make test`.
SOAK_ITERATIONS ?= 1000
soak:
	$(need_pythons)
	for py in $(TEST_PYTHONS); do
	  v=$$($$py -c 'import sys; print("%d.%d" % sys.version_info[:2])')
	  echo "=== soak, CPython $$v"
	  (cd tests && SOAK_ITERATIONS=$(SOAK_ITERATIONS) $(BUILD)/venv-$$v/bin/python -m pytest -q \
	    -p no:cacheprovider python/test_soak.py)
	done

## bench: regenerate the numbers of BENCHMARKS.md (import times and peers with every pyenv
## CPython 3.10-3.13, then build times and criterion with $(PYTHON), and image mode side by
## side in the import venvs of 3.11-3.13); results land in build/bench/.
bench:
	bash benches/run_imports.sh
	bash benches/run.sh "$(PYTHON)"

clean:
	rm -rf $(BUILD) target
