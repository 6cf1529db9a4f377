# SMU — the two commands of the quick start are `make demo` and `make test`.
# Each creates .venv and installs what it needs on first use.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test test-unit lint test-slow bench bench-ingest bench-reconcile bench-catchup bench-messaging bench-flood bench-natlab vectors clean check-toolchain lab-deps

$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory check-toolchain
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# py-libp2p pins fastecdsa, which compiles against GMP: say so clearly.
check-toolchain:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || \
	  { echo "error: SMU needs Python 3.11 or newer (found: $$($(PYTHON) --version 2>&1))."; exit 1; }
	@command -v gcc >/dev/null 2>&1 || \
	  { echo "error: gcc is missing; libp2p's fastecdsa builds from source. Install: apt-get install gcc libgmp-dev"; exit 1; }
	@printf '#include <gmp.h>\nint main(void){return 0;}\n' | gcc -x c - -o /dev/null >/dev/null 2>&1 || \
	  { echo "error: GMP headers are missing; libp2p's fastecdsa needs them. Install: apt-get install libgmp-dev"; exit 1; }

demo: $(STAMP)
	$(BIN)/smu demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict protocol simnet

test: lint lab-deps
	$(BIN)/pytest -q

# The NAT lab (tests/test_lab.py) needs network namespaces (root), iproute2
# and nftables.  As root with apt (CI), install what is missing; otherwise
# say what to run, and the lab tests skip with a one-line reason.
lab-deps:
	@if command -v nft >/dev/null 2>&1 && command -v ip >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nftables iproute2 >/dev/null; \
	else echo "note: the NAT lab tests need root and nftables (as root: apt-get install nftables iproute2)"; fi

# the fast layers only: no real node processes
test-unit: lint
	$(BIN)/pytest -q -m 'not slow and not bench and not process'

test-slow: $(STAMP)
	$(BIN)/pytest -q -m slow

vectors: $(STAMP)
	$(BIN)/python -m tests.vectors.generate

bench-ingest: $(STAMP)
	$(BIN)/python bench/ingest.py

bench-reconcile: $(STAMP)
	$(BIN)/python bench/reconcile.py

bench-catchup: $(STAMP)
	$(BIN)/python bench/catchup.py

bench-messaging: $(STAMP)
	$(BIN)/python bench/messaging.py

bench-flood: $(STAMP)
	$(BIN)/python bench/flood.py

bench-natlab: $(STAMP) lab-deps
	$(BIN)/python bench/natlab.py

bench: bench-ingest bench-reconcile bench-catchup bench-messaging bench-flood

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
