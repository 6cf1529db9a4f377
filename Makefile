# SMU — the two commands of the quick start are `make demo` and `make test`.
# Each creates .venv and installs what it needs on first use.
#
# Installs are hash-pinned: every package (pip and the build backend too)
# comes from requirements.lock, each version with the sha256 of every file
# PyPI serves for it, and pip refuses anything else (--require-hashes).  The
# project itself is then installed from this tree, without dependencies and
# without a build environment from the index.
#
# After changing a dependency in pyproject.toml (or requirements-tools.in),
# run `make lock` and commit requirements.lock with it;
# tests/test_lock.py fails while a pin of pyproject.toml is not in the lock.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
LOCK := requirements.lock
# the lock's tool, pinned, in a venv of its own (not the project's)
PIP_TOOLS := pip-tools==7.6.2
LOCK_VENV := .venv-lock

.PHONY: demo test test-unit lint test-slow bench bench-ingest bench-attack bench-reconcile bench-catchup bench-messaging bench-flood bench-web bench-natlab simnet-adversaries simnet-calibrate vectors clean check-toolchain lock browser lab-deps

$(STAMP): pyproject.toml $(LOCK)
	@$(MAKE) --no-print-directory check-toolchain
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)

# Regenerate requirements.lock from pyproject.toml (dependencies and the dev
# extra) and requirements-tools.in: the newest versions that satisfy them,
# with PyPI's hashes.  The machine's own pip settings (extra indexes,
# find-links, constraints) are left out, so the lock is the same wherever it
# is made.  Then `make` reinstalls .venv from it.
lock:
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install --quiet $(PIP_TOOLS)
	env -u PIP_FIND_LINKS -u PIP_EXTRA_INDEX_URL -u PIP_INDEX_URL -u PIP_CONSTRAINT \
	  PIP_CONFIG_FILE=/dev/null $(LOCK_VENV)/bin/pip-compile --quiet --generate-hashes \
	  --allow-unsafe --extra dev --strip-extras --no-emit-index-url --no-emit-find-links \
	  --output-file $(LOCK) pyproject.toml requirements-tools.in

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
	$(BIN)/mypy --strict node/ protocol/ simnet/

test: lint browser lab-deps
	$(BIN)/pytest -q

# The web app's browser tests drive Debian's Chromium through Debian's
# chromedriver (never a downloaded browser).  As root with apt (CI), install
# them; elsewhere say what is missing: those tests then skip, except in CI.
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian's chromium and chromium-driver for the browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else \
	  echo "note: the browser tests need Debian's chromium and chromium-driver (apt-get install chromium chromium-driver); without them they are skipped"; \
	fi

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

bench-attack: $(STAMP)
	$(BIN)/python bench/attack_cost.py

bench-reconcile: $(STAMP)
	$(BIN)/python bench/reconcile.py

bench-catchup: $(STAMP)
	$(BIN)/python bench/catchup.py

bench-messaging: $(STAMP)
	$(BIN)/python bench/messaging.py

bench-flood: $(STAMP)
	$(BIN)/python bench/flood.py

bench-web: $(STAMP) browser
	$(BIN)/python bench/web.py

bench-natlab: $(STAMP) lab-deps
	$(BIN)/python bench/natlab.py

# every resource-attack scenario with and without its attacker: safety,
# honest delivery, p99 and their ratio (target <= 2); last line one JSON object
SIMNET_ADVERSARIES := wide-dag deep-chain replay-flood mailbox-fill stranger-flood connection-flood eclipse-sybil
simnet-adversaries: $(STAMP)
	$(BIN)/python -m simnet.cli compare $(SIMNET_ADVERSARIES)

# the CPU model's costs measured here (simnet/cpu.py; defaults in simnet/scenario.py Cpu)
simnet-calibrate: $(STAMP)
	$(BIN)/python -m simnet.cli calibrate

bench: bench-ingest bench-attack bench-reconcile bench-catchup bench-messaging bench-flood bench-web bench-natlab

clean:
	rm -rf $(VENV) $(LOCK_VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
