# Two commands matter: `make demo` and `make test`. Both set up what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# `make test-compat`: the oldest Airflow and providers that pyproject.toml allows (constraints-compat.txt).
COMPAT_VENV := .venv-compat
COMPAT_BIN := $(COMPAT_VENV)/bin
COMPAT_STAMP := $(COMPAT_VENV)/.installed
DIST := build/dist

.PHONY: venv demo test test-compat lint bench bench-full screenshots clean

# Both distributions editable: knit-airflow (the provider) and knit-airflow-devtools (include/).
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml include/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt -r requirements-dev.txt
	$(BIN)/pip install -q --no-deps -e . -e include
	touch $(STAMP)

# Built anew only when a range, a floor or a test dependency changes; pip resolves our ranges under
# the floor pins. The provider is reinstalled from a fresh wheel on every run (below); the devtools
# stay editable, as they work on this checkout (its dags/ and plugins/).
$(COMPAT_STAMP): constraints-compat.txt requirements-dev.txt pyproject.toml include/pyproject.toml
	rm -rf $(COMPAT_VENV)
	$(PYTHON) -m venv $(COMPAT_VENV)
	$(COMPAT_BIN)/pip install -q --upgrade pip
	$(COMPAT_BIN)/pip install -q -c constraints-compat.txt -r requirements-dev.txt . -e ./include
	touch $(COMPAT_STAMP)

venv: $(STAMP)

# The shell reads DEMO_ARGS again, so a URL holding & must be quoted inside it; a URL given as
# KNIT_DEMO_DATABASE_URL='...' (a variable of make's command line or of the environment) reaches
# the demo through the environment, as written.
demo: $(STAMP)
	$(BIN)/python -m knit_devtools.demo $(DEMO_ARGS)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The unit suite and one `airflow dags test` of the main DAG on the oldest supported Airflow, against
# the BUILT provider wheel (not the source tree). Left out, as `make test` runs them on the newest
# Airflow and they exercise nothing that differs between Airflow versions: tests/e2e but that one DAG
# run, tests/faults and tests/ui (whole process stacks and a browser: minutes); tests/packaging (the
# wheel against the image's pins); tests/simulator (no Airflow in it); and the heavy tests of code
# that runs without Airflow: the property test of normalization in any order (about 4 minutes) and
# the standalone receiver's load, limit and process tests. Deselected: the connection form, which
# Airflow 3.1 builds from FAB's wtforms widgets, not from the provider info (README).
# (Folders are listed, not --ignore'd: pytest would ignore tests/e2e/test_dags_test.py with its folder.)
COMPAT_SKIP := tests/normalize/test_any_order.py tests/webhook/test_receiver_metrics.py \
	tests/webhook/test_webhook_server.py tests/webhook/test_receiver_limits.py tests/webhook/test_receiver_budget.py
COMPAT_TESTS := $(filter-out tests/e2e tests/faults tests/ui tests/packaging tests/simulator tests/__pycache__, \
	$(patsubst %/,%,$(wildcard tests/*/))) $(wildcard tests/test_*.py) tests/e2e/test_dags_test.py \
	$(addprefix --ignore=,$(COMPAT_SKIP)) \
	--deselect tests/test_provider_info.py::test_airflow_builds_the_knit_connection_form

test-compat: $(COMPAT_STAMP)
	rm -rf build
	$(COMPAT_BIN)/pip wheel -q --no-deps -w $(DIST) .
	$(COMPAT_BIN)/pip install -q --no-deps --force-reinstall $(DIST)/knit_airflow-*.whl
	$(COMPAT_BIN)/python -c "import knit_provider as k; assert '/site-packages/' in k.__file__, k.__file__"
	$(COMPAT_BIN)/pip list 2>/dev/null | grep -E '^(apache-airflow|knit-airflow)'
	$(COMPAT_BIN)/python -m pytest $(COMPAT_TESTS) $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The README's pictures of the Airflow UI, taken by the browser tests (tests/ui) into docs/img/.
screenshots: $(STAMP)
	KNIT_SCREENSHOT_DIR=docs/img $(BIN)/python -m pytest tests/ui/test_airflow_ui.py -q

bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

bench-full: $(STAMP)
	$(BIN)/python -m bench --full $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(COMPAT_VENV) build .cache .demo .pytest_cache .mypy_cache .ruff_cache
