# Common commands. Installs come from uv.lock into .venv (uv itself is pinned and installed
# there first): `make serve` takes the runtime dependencies only, `make test` adds the test tools.
VENV ?= .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
PYTHON ?= python3
UV_VERSION := 0.13.9
export UV_PROJECT_ENVIRONMENT := $(VENV)
# Installs leave compiled bytecode, as pip's do: with PYTHONDONTWRITEBYTECODE set (as in many
# containers) nothing is cached otherwise, and every start compiles what it imports again
# (more than half of `agenthub serve`'s start-up). uv compiles the dependencies, compileall the
# project's own (editable) sources.
export UV_COMPILE_BYTECODE := 1

.PHONY: install install-dev test lint format serve bench bench-hot upgrade docs-assets clean

$(UV):
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.runtime: pyproject.toml uv.lock | $(UV)
	$(UV) sync -q --frozen --inexact
	$(PY) -m compileall -q src
	touch $@

$(VENV)/.dev: pyproject.toml uv.lock | $(UV)
	$(UV) sync -q --frozen --inexact --extra dev
	$(PY) -m compileall -q src
	touch $@ $(VENV)/.runtime

install: $(VENV)/.runtime

install-dev: $(VENV)/.dev

test: install-dev
	$(PY) -m pytest -n 2 --dist loadgroup --cov --cov-report=term:skip-covered

lint: install-dev
	$(PY) -m ruff check src tests bench examples
	$(PY) -m ruff format --check src tests bench examples
	$(PY) -m mypy
	$(VENV)/bin/lint-imports --no-cache

format: install-dev
	$(PY) -m ruff format src tests bench examples
	$(PY) -m ruff check --fix src tests bench examples

serve: install
	$(VENV)/bin/agenthub serve

bench: install-dev
	$(UV) sync -q --frozen --inexact --extra dev --extra bench
	$(PY) bench/startup.py
	$(PY) bench/profile.py
	$(PY) bench/messages.py
	$(PY) bench/realtime.py
	$(PY) bench/jobs.py
	$(PY) bench/cache.py
	$(PY) bench/load.py
	$(PY) bench/text.py
	$(PY) bench/hotpath.py

# The hot path under load (open and closed loop, login burst) against the raw stack.
bench-hot: install-dev
	$(PY) bench/hotpath.py

# Move every dependency to the newest release its bounds in pyproject.toml allow.
upgrade: | $(UV)
	$(UV) lock --upgrade

# Vendor the API reference's browser files (Swagger UI, ReDoc) from npm, with their licences and
# without source maps: bump a version here, run `make docs-assets`, commit the assets. ReDoc's
# sidebar logo is the one file it loads from elsewhere; it becomes an empty image.
SWAGGER_UI_VERSION := 5.36.0
REDOC_VERSION := 2.5.4
DOCS_ASSETS := src/agenthub/apidocs/assets
FLAT := --transform='s,.*/,,' --wildcards

docs-assets:
	rm -rf $(DOCS_ASSETS)/swagger-ui $(DOCS_ASSETS)/redoc
	mkdir -p $(DOCS_ASSETS)/swagger-ui $(DOCS_ASSETS)/redoc
	cd $(DOCS_ASSETS)/swagger-ui && tar -xzf "$$(npm pack -q swagger-ui-dist@$(SWAGGER_UI_VERSION))" \
	  $(FLAT) package/LICENSE package/NOTICE 'package/swagger-ui-bundle.js*' \
	  package/swagger-ui.css package/favicon-32x32.png --exclude='*.map'
	cd $(DOCS_ASSETS)/redoc && tar -xzf "$$(npm pack -q redoc@$(REDOC_VERSION))" \
	  $(FLAT) package/LICENSE 'package/bundles/redoc.standalone.js*' \
	  'package/bundles/*.worker.js.LICENSE.txt' --exclude='*.map'
	rm $(DOCS_ASSETS)/*/*.tgz
	sed -i -E '\,^(//|/\*)# sourceMappingURL=,d' $(DOCS_ASSETS)/*/*.js $(DOCS_ASSETS)/*/*.css
	sed -i 's,https://cdn.redoc.ly/redoc/logo-mini.svg,data:\,,' $(DOCS_ASSETS)/redoc/redoc.standalone.js

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
