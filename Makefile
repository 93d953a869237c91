# The two commands a newcomer types: `make demo` and `make test`. Both set everything up from nothing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
EXTRAS ?= dev,kubernetes,aws,openadr,ieee2030_5,docs,celery
PYTEST_ARGS ?=
# Four pytest workers on the 2-core machine: the Airflow layers mostly wait on Airflow's loops and grid windows, so
# two workers left the cores about a third idle and three about a tenth; with four they are 98 % busy (docs/testing.md).
TEST_WORKERS ?= 4

.PHONY: install browser bytecode demo demo-ui demo-signals test lint typecheck unit contract integration distributed packaging bench docs docs-serve clean lock

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv
	$(BIN)/uv pip install --python $(BIN)/python --compile-bytecode --constraint constraints.txt -e ".[$(EXTRAS)]"
	@touch $(STAMP)

install: $(STAMP)

## browser: Debian's chromium for the Grid page's browser test (apt; Playwright cannot download its own here)
browser:
	@tools/ensure-chromium.sh

## bytecode: compile the checkout's sources, and pytest's rewritten test modules, once before the suite
# Where PYTHONDONTWRITEBYTECODE is set (this machine and CI set it) nothing writes bytecode, so each pytest
# worker rewrote every test module while collecting, and every Python process the suite starts (Airflow
# components, CLI calls) compiled the provider again. Bytecode that is there is still read (docs/testing.md).
bytecode: install
	@PYTHONDONTWRITEBYTECODE= $(BIN)/python -m compileall -q -j 0 airflow_provider_gridaware tests example_dags
	@PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest --collect-only -q -p no:cacheprovider > $(VENV)/collect.log \
		|| { cat $(VENV)/collect.log; exit 1; }

## demo: a real Airflow 3.3 + the grid simulator on accelerated time: the example training task defers, is
## released in the clean window, then the daily report is written; ends (exit 0) after the report
demo: install
	$(BIN)/gridaware demo

## demo-ui: the same, then keeps Airflow (and its UI) up until Ctrl-C
demo-ui: install
	$(BIN)/gridaware demo --keep-running --port $(or $(DEMO_PORT),8080)

## demo-signals: no Airflow: read every source through its hook against the simulator, print each decision
demo-signals: install
	$(BIN)/gridaware demo --signals

## test: lint, type-check, then the whole suite (unit, contract, integration against a real Airflow)
# The browser install (apt, mostly I/O) and the bytecode run beside lint and mypy (which keeps one core busy); the
# workers then collect in about half the time (docs/testing.md).
test: install
	@$(MAKE) --no-print-directory -j 4 --output-sync=target browser lint typecheck bytecode
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadscope $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check airflow_provider_gridaware tests example_dags benchmarks tools
	$(BIN)/ruff format --check airflow_provider_gridaware tests example_dags benchmarks tools

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

contract: install
	$(BIN)/python -m pytest tests/contract $(PYTEST_ARGS)

integration: install
	$(BIN)/python -m pytest tests/integration $(PYTEST_ARGS)

## distributed: the CeleryExecutor topology (two triggerers, two workers) on this machine's PostgreSQL and Redis
distributed: install
	$(BIN)/python -m pytest tests/distributed $(PYTEST_ARGS)

## packaging: build the sdist and wheel, install each into a clean virtualenv, smoke-test it
packaging: install
	$(BIN)/python -m pytest tests/packaging $(PYTEST_ARGS)

bench: install
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

## docs: build the documentation site into site/, strictly (a warning or a broken internal link fails)
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

docs-serve: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --strict

## lock: refresh constraints.txt (our own lock: the upstream Airflow constraints file is not reachable)
lock:
	$(BIN)/uv pip compile pyproject.toml --extra dev --extra kubernetes --extra aws --extra openadr --extra ieee2030_5 --extra docs --extra report --extra celery --universal --python-version 3.10 -o constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache site
	find airflow_provider_gridaware tests example_dags benchmarks tools -name __pycache__ -type d -prune -exec rm -rf {} +
