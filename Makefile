# Two commands on a fresh clone with only python3 and make:
#   make demo   set up .venv, then sync the sample warehouse into the local sandbox emulators
#   make test   set up .venv, then run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench ui install clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# DAGSTER_HOME: the demo's runs show in `make ui` too (one history), as the runs of any CLI with it set
demo: $(STAMP)
	@mkdir -p .dagster_home && cp -n dagster_project/dagster.yaml .dagster_home/dagster.yaml || true
	DAGSTER_HOME=$(CURDIR)/.dagster_home $(BIN)/syncer demo

test: $(STAMP) lint
	$(BIN)/python -m pytest -n 2 -q

# ruff (pyflakes, import order) and the layering contracts in pyproject.toml ([tool.importlinter])
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

# the credentials the demo's destinations name and the sandbox accepts (syncer/demo/setup.py SANDBOX_SECRETS)
SANDBOX_SECRETS := SANDBOX_META_TOKEN=sandbox-meta-token SANDBOX_DATAMANAGER_KEY=sandbox-datamanager-key \
	SANDBOX_KLAVIYO_KEY=sandbox-klaviyo-key SANDBOX_TWILIO_ACCOUNT_SID=AC00000000000000000000000000000001 \
	SANDBOX_TWILIO_KEY=sandbox-twilio-key

# Dagster UI on the demo project with the sandbox emulators, both on 127.0.0.1; Ctrl-C (or a SIGTERM to
# make or to the launcher, with or without a terminal) stops both: scripts/ui.py. Lines start with @ so
# make does not echo the sandbox tokens.
ui: $(STAMP)
	@test -f examples/demo/warehouse.duckdb || $(BIN)/syncer -p examples/demo sample-data --customers 20000
	@mkdir -p .dagster_home && cp -n dagster_project/dagster.yaml .dagster_home/dagster.yaml || true
	@echo "starting the sandbox and dagster dev on examples/demo (tokens: syncer/demo/setup.py SANDBOX_SECRETS)"
	@$(SANDBOX_SECRETS) DAGSTER_HOME=$(CURDIR)/.dagster_home \
	$(BIN)/python scripts/ui.py --project examples/demo --port $(or $(UI_PORT),3000) --sandbox-port $(or $(SANDBOX_PORT),8510)

bench: $(STAMP)
	$(BIN)/python bench/run_bench.py

clean:
	rm -rf $(VENV) examples/demo/.syncer examples/demo/warehouse.duckdb
