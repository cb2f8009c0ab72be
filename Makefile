# 养怡 Yangyi — the two commands are `make run` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
DEPLOY := deploy/native

.PHONY: run stop test install services browser migrate lint asyncapi bench-ingest bench-checkin bench-safety bench-alerts bench-settlement bench-vision bench-dashboard

install:
	bash $(DEPLOY)/bootstrap.sh

services: install
	bash $(DEPLOY)/mosquitto.sh install
	bash $(DEPLOY)/timescaledb.sh install

# Benchmarks that publish through a shared broker use the scratch one (deploy/native/common.sh), never
# make run's: their traffic would otherwise queue in make run's persistent sessions. bench-alerts starts an
# empty broker of its own; bench-checkin runs private ones.
SCRATCH_BROKER := bash $(DEPLOY)/with-scratch-broker.sh

migrate: services
	$(VENV)/bin/yangyi-migrate --dsn "$$(bash $(DEPLOY)/timescaledb.sh dsn)"

## Set everything up and run the system with a simulated county; prints the dashboard URL.
run: migrate
	bash $(DEPLOY)/run.sh start

stop:
	bash $(DEPLOY)/run.sh stop

browser: install
	bash $(DEPLOY)/browser.sh install

## Install, start the services and run the whole suite (unit, integration, end-to-end, browser).
test: services browser
	bash $(DEPLOY)/run-tests.sh

lint: install
	$(VENV)/bin/ruff check edge server firmware_bridge tests bench
	$(VENV)/bin/mypy

asyncapi: install
	$(VENV)/bin/yangyi-asyncapi --output docs/asyncapi.yaml

bench-ingest: migrate
	$(SCRATCH_BROKER) $(PY) -m bench.ingest

bench-checkin: migrate
	$(PY) -m bench.checkin

bench-safety: services
	$(SCRATCH_BROKER) $(PY) -m bench.safety

bench-alerts: migrate
	$(PY) -m bench.alerts

bench-settlement: migrate
	$(PY) -m bench.settlement

bench-vision: install
	$(PY) -m bench.vision

bench-dashboard: migrate
	$(PY) -m bench.dashboard
