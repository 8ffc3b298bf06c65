# Quick start: `make demo` (set up, then run the demo) and `make test` (set up, lint, test).
# Both create or refresh a virtual environment in .venv/ from setup.py.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# What the demo runs (the package and its runtime needs), and what the tests need on top
# (PyTorch for the parity tests and the converter, pytest, ruff, selenium).
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-runtime
# The CPU build of PyTorch for the optional checkpoint converter and its parity tests.
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=

export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: setup browser test test-slow lint demo paint bench check-pypi-torch clean

setup: $(STAMP)

$(DEMO_STAMP): setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(DEMO_STAMP)

$(STAMP): $(DEMO_STAMP)
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[test,convert]"
	touch $(STAMP)

# The painter's browser tests drive Debian's chromium and chromedriver: installed when missing
# (apt-get, as root or with sudo).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@command -v chromedriver >/dev/null && command -v chromium >/dev/null || { \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; }

lint: $(STAMP)
	$(BIN)/ruff check .

# torch is installed above, so the PyTorch parity tests must run: with this set, a missing
# torch fails them instead of skipping them (tests/support: import_torch).
# Two pytest-xdist workers, one per core, in pytest-randomly's order (it prints the seed:
# PYTEST_ARGS=--randomly-seed=N repeats an order, PYTEST_ARGS="-p no:randomly" keeps the
# files' own). --dist loadfile: all the tests of a file run on one worker, so its module-
# and session-scoped fixtures (servers, the long runs of tests/support/runs.py) are
# made once, not once per worker; the session's exports are shared by both workers
# (tests/support/exports.py).
test: export SPADE_TF_REQUIRE_TORCH = 1
test: lint
	$(BIN)/python -m pytest -n 2 --dist loadfile $(PYTEST_ARGS)

# The end-to-end tier (tests marked slow: tests/conftest.py's END_TO_END): whole training
# runs, commands run as processes, the demo, benchmark scripts, load and browser sessions.
# CI runs it after `make test`.
test-slow: export SPADE_TF_REQUIRE_TORCH = 1
test-slow: setup browser
	$(BIN)/python -m pytest -n 2 --dist loadfile -m slow $(PYTEST_ARGS)

demo: $(DEMO_STAMP)
	$(BIN)/python scripts/demo.py --out demo_output

# Paint with the demo's model in a browser (after `make demo`): http://127.0.0.1:8501/
PAINT_PORT ?= 8501
paint: $(DEMO_STAMP)
	$(BIN)/spade-serve --model-base-path demo_output/exports/spade --port 0 \
	  --rest-port $(PAINT_PORT)

# Figures, not tests: ours vs PyTorch (generator, training step), input pipeline, serving.
bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

# PyTorch from PyPI (its CUDA build brings triton) beside TensorFlow: builds a venv with
# PyPI's torch in .cache/ (a few GB) and runs the PyTorch-side tests and the training
# benchmark's PyTorch worker with it (scripts/check_pypi_torch.sh says why).
PYPI_TORCH_VENV ?= .cache/pypi-torch-venv
check-pypi-torch:
	test -x $(PYPI_TORCH_VENV)/bin/python || { $(PYTHON) -m venv $(PYPI_TORCH_VENV) && \
	  $(PYPI_TORCH_VENV)/bin/pip install --quiet --index-url https://pypi.org/simple torch && \
	  $(PYPI_TORCH_VENV)/bin/pip install --quiet --index-url https://pypi.org/simple \
	    -e ".[test,convert]"; }
	bash scripts/check_pypi_torch.sh $(PYPI_TORCH_VENV)

clean:
	rm -rf $(VENV) demo_output .pytest_cache
