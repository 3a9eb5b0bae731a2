# kerasflow: `make demo` trains the default digits model; `make test` runs the suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-extended lint format bench docs docs-build clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/kerasflow train

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mkdocs build --strict --site-dir site
	@# Two workers (pytest-xdist), a whole test file each: a file's module fixtures are built once.
	$(BIN)/python -m pytest -q -m "not extended and not alone" -n 2 --dist loadfile --durations=25
	@# Then the measurements that need the machine to themselves.
	$(BIN)/python -m pytest -q -m "alone and not extended"

# The documentation site (docs/, mkdocs.yml) on http://127.0.0.1:8000, rebuilt on save.
docs: $(STAMP)
	$(BIN)/mkdocs serve --dev-addr 127.0.0.1:8000

docs-build: $(STAMP)
	$(BIN)/mkdocs build --strict --site-dir site

test-extended: $(STAMP)
	$(BIN)/python -m pytest -q -m extended

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	for b in benchmarks/*.py; do $(BIN)/python $$b --quick || exit 1; done

clean:
	rm -rf $(VENV) build dist site *.egg-info .pytest_cache .ruff_cache
