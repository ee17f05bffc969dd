# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# Each creates .venv and installs the pinned dependencies when they are missing or changed.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast install bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

# Runs the job on the embedded defaults: the bundled real listing snapshot, the SQLite file ./digest.db.
demo: $(STAMP)
	$(BIN)/digest fetch --from-file digest/data/listing_2026-08-18.json
	$(BIN)/digest papers list --date 2026-08-18

# The whole suite, slow tests included (this is what .ci/run calls).
test: $(STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

bench: $(STAMP)
	$(BIN)/python bench/ranking_quality.py
	$(BIN)/python bench/rank_speed.py

clean:
	rm -rf $(VENV) build dist *.egg-info digest.db digest.db-wal digest.db-shm outbox
