# afterhours: `make run` starts the whole product, `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export DJANGO_SETTINGS_MODULE ?= afterhours.settings.local

.PHONY: run test test-slow lint format install install-dev demo bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

## Web (http://127.0.0.1:8000), Celery worker and Celery beat together.
## honcho 2.0.0 SIGKILLs what still runs 5 s after Ctrl-C, too soon for a
## worker's warm shutdown (4.5-7 s on the filesystem broker) and not an
## option (nickstenning/honcho#189): the same honcho, waiting 12 s.
run: install demo
	$(BIN)/python -c 'import sys, honcho.command, honcho.manager; honcho.manager.KILL_WAIT = 12; honcho.command.main(sys.argv[1:])' start -f Procfile

demo: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py import_businesses --create-only samples/businesses.json
	$(BIN)/python manage.py ensure_admin

## The whole suite against PostgreSQL and Redis on this machine.
test: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	DJANGO_SETTINGS_MODULE=afterhours.settings.test $(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

test-slow: install-dev
	DJANGO_SETTINGS_MODULE=afterhours.settings.test $(BIN)/pytest -m slow $(PYTEST_ARGS)

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: install-dev
	$(BIN)/python bench/ingest.py

clean:
	rm -rf var/ $(VENV)
