# Common commands. `make test` installs everything into a fresh .venv and runs the suite.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: install test lint format serve bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

test: install
	$(PY) -m pytest -n 2

lint: install
	$(PY) -m ruff check src tests bench
	$(PY) -m ruff format --check src tests bench
	$(PY) -m mypy

format: install
	$(PY) -m ruff format src tests bench
	$(PY) -m ruff check --fix src tests bench

serve: install
	$(VENV)/bin/agenthub serve

bench: install
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) bench/profile.py
	$(PY) bench/messages.py
	$(PY) bench/realtime.py
	$(PY) bench/jobs.py
	$(PY) bench/cache.py
	$(PY) bench/load.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
