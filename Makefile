# Two entry points: `make demo` (set up, run the demo release) and `make test` (set up, run every test).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The benchmark peers (anonypy, maskmypy and their pins, e.g. osmnx's numpy < 1.27) live in their own
# environment, created and used by the benchmark runner: `make bench` never changes .venv.
BENCH_VENV := .venv-bench

.PHONY: setup demo test bench bench-env lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,spark]'
	# pycanon (the reference the k/l tests agree with) pins an old typing-extensions that pydantic
	# cannot use; its checks need only numpy and pandas, so it goes in without its pins.
	$(BIN)/python -m pip install -q --no-deps pycanon
	touch $(STAMP)

demo: setup
	$(BIN)/release demo

test: setup
	$(BIN)/python -m pytest -q

bench:
	$(PYTHON) -m benchmarks.run

bench-env:
	$(PYTHON) -m benchmarks.run --setup-only

lint: setup
	$(BIN)/ruff check release tests benchmarks

clean:
	rm -rf $(VENV) $(BENCH_VENV) out .release-demo
