# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# Each creates .venv and installs the pinned dependencies when they are missing or changed.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast install bench clean browser postgres

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

# The whole day on the embedded defaults: the bundled real listing snapshot, a fresh SQLite file, three
# demo subscribers, mails received by a real SMTP server on 127.0.0.1 into ./outbox/.
demo: $(STAMP)
	PREFECT_SERVER_ANALYTICS_ENABLED=false $(BIN)/digest demo

# Debian's Chromium for the end-to-end browser test (Playwright drives it; no browser download).
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

# Debian's PostgreSQL server binaries for the tests that also run on PostgreSQL (tests/pg_server.py starts
# a throw-away server with them; the package's own cluster is not used). Debian keeps pg_ctl off PATH.
postgres:
	@ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || command -v pg_ctl >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; }

# The whole suite, slow tests included, on SQLite and PostgreSQL (this is what .ci/run calls).
test: $(STAMP) browser postgres
	$(BIN)/python -m pytest

test-fast: $(STAMP) postgres
	$(BIN)/python -m pytest -m "not slow"

bench: $(STAMP)
	$(BIN)/python bench/ranking_quality.py
	$(BIN)/python bench/rank_speed.py
	$(BIN)/python bench/render_speed.py
	$(BIN)/python bench/sign_speed.py
	$(BIN)/python bench/send_speed.py

clean:
	rm -rf $(VENV) build dist *.egg-info digest.db digest.db-wal digest.db-shm outbox
