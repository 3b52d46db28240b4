# HOMEPOT: `make run` starts everything on the embedded default, `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml agent_client/pyproject.toml | sha1sum | cut -c1-12)
HOMEPOT_PORT ?= 8000
export HOMEPOT_PORT

.PHONY: install run manage test test-fast lint bench screenshots clean

# The embedded default is a development setup: DEBUG on (and with it a
# development SECRET_KEY), SQLite, file cache and file broker under var/.
# Without DEBUG the settings refuse to start with no SECRET_KEY, as production must.
DEV_ENV := DEBUG=true

install: $(STAMP)

$(STAMP): pyproject.toml agent_client/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]' -e ./agent_client
	rm -f $(VENV)/.installed-* && touch $@

# Embedded default: SQLite, file cache and file broker under var/, no services needed.
run: install
	mkdir -p var
	$(DEV_ENV) $(BIN)/python manage.py migrate --noinput
	$(DEV_ENV) $(BIN)/python manage.py demo_setup --token-file var/demo-token
	@echo "HOMEPOT on http://127.0.0.1:$(HOMEPOT_PORT)/admin/ and /api/docs: web, worker, beat,"
	@echo "a simulated fleet of $${HOMEPOT_FLEET:-24} devices and one real agent (Ctrl-C stops everything)"
	$(DEV_ENV) PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho -f Procfile.dev start

# A management command on the embedded default, with the settings `make run` uses:
#   make manage ARGS="homepot_user alice --role operator"
# Only the command's own output is printed (scripts can capture it).
manage:
	@test -x $(BIN)/python || $(MAKE) --no-print-directory install >&2
	@$(DEV_ENV) $(BIN)/python manage.py $(ARGS)

# Uses DATABASE_URL / REDIS_URL when set (CI sets both), else SQLite and files.
test: install
	DEBUG=true $(BIN)/pytest

# Without the real-browser suite (tests/browser, marker `browser`).
test-fast: install
	DEBUG=true $(BIN)/pytest -m "not browser"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: install
	$(BIN)/python bench/auth_bench.py
	$(BIN)/python bench/telemetry_bench.py
	$(BIN)/python bench/agent_footprint.py --minutes 3
	$(BIN)/python bench/lab_footprint.py --minutes 3
	$(BIN)/python bench/ssh_bench.py
	$(BIN)/python bench/alert_bench.py
	$(BIN)/python bench/dashboard_bench.py
	$(BIN)/python bench/longpoll_latency.py
	$(BIN)/python bench/cold_start_bench.py
	$(BIN)/python bench/partition_bench.py
	$(BIN)/python bench/fleet_soak.py --agents 500 --seconds 60

# PNGs of the dashboard, a device page and a thermal view from a seeded demo, in Chromium.
screenshots: install
	$(BIN)/python bench/screenshots.py

clean:
	rm -rf var staticfiles
