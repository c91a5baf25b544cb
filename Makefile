# ZeroPay: `make run` starts the demo, `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export ZEROPAY_DATABASE_URL ?= sqlite:///var/zeropay.db

.PHONY: run test lint bench migrate demo install clean

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# The demo sends its mail to a local SMTP server it starts itself; read it at /dev/mail.
# A development vault: created on first start, auto-unsealed from this file (loud warnings).
run demo: export ZEROPAY_VAULT_DEV_FILE ?= var/vault-dev.json
run: export ZEROPAY_SMTP_HOST ?= localhost
run: export ZEROPAY_SMTP_PORT ?= 8025
run: export ZEROPAY_DEV_MAIL_DIR ?= var/mail
run: export ZEROPAY_DEV_SMS_FILE ?= var/sms.jsonl
run: $(STAMP)
	mkdir -p var
	$(BIN)/zeropay migrate
	$(BIN)/zeropay demo
	$(BIN)/zeropay devmail --port 8025 --dir var/mail & trap "kill $$!" EXIT; \
	$(BIN)/zeropay serve --host localhost --port 8000

migrate: $(STAMP)
	$(BIN)/zeropay migrate

demo: $(STAMP)
	$(BIN)/zeropay demo

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/lint-imports
	$(BIN)/mypy

# The PostgreSQL half of the suite runs against the local server, started here when it is down.
test: export ZEROPAY_TEST_POSTGRES_URL ?= postgresql://postgres@127.0.0.1:5432/postgres
test: $(STAMP) lint
	scripts/ensure-postgres
	scripts/ensure-browser
	$(BIN)/pytest -q -p no:cacheprovider -n 2

bench: $(STAMP)
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	# pgbench (the TPC-B yardstick) ships in Debian's postgresql-NN package, with the server.
	command -v pgbench >/dev/null || (apt-get update -qq && apt-get install -y -qq postgresql)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis
