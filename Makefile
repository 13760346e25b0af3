# lmvisor: `make run` runs the main job, `make test` lints, type-checks and tests.
# Both create .venv and install the project with its dev extras on first use.
# `make bench`, `make soak` and `make fuzz` are the long runs, kept out of `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# DSPy 3.4.1 lives in its own venv, used only by benchmarks for same-run baselines.
DSPY_VENV := .venv-dspy
DSPY_STAMP := $(DSPY_VENV)/.installed-stamp
SRC := lmvisor tests bench examples soak

.PHONY: install run test lint format bench bench-env soak fuzz clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/python examples/daemon.py

lint: install
	$(BIN)/ruff check $(SRC)
	$(BIN)/ruff format --check $(SRC)
	$(BIN)/mypy --strict lmvisor
	$(BIN)/mypy --strict bench/*.py soak/*.py

format: install
	$(BIN)/ruff check --fix $(SRC)
	$(BIN)/ruff format $(SRC)

test: lint
	$(BIN)/python -m pytest -q

$(DSPY_STAMP):
	$(PY) -m venv $(DSPY_VENV)
	$(DSPY_VENV)/bin/python -m pip install -q 'dspy==3.4.1' optuna && touch $(DSPY_STAMP) \
		|| echo "dspy==3.4.1 could not be installed: benchmarks print no DSPy baseline" >&2

bench-env: $(DSPY_STAMP)

bench: install bench-env
	@for f in bench/[!_]*.py; do echo "# $$f" >&2; $(BIN)/python $$f || exit 1; done

soak: install
	$(BIN)/python soak/router.py
	$(BIN)/python soak/pyreqwest_exit.py --runs 100
	$(BIN)/python soak/daemon.py

# schemathesis against the daemon's OpenAPI document, with many more examples than make test.
FUZZ_EXAMPLES ?= 500
fuzz: install
	LMVISOR_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -q tests/server/test_openapi_fuzz.py

clean:
	rm -rf $(VENV) $(DSPY_VENV) .mypy_cache .ruff_cache .pytest_cache
