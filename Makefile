# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Both create .venv if it is missing and (re)install only when pyproject.toml changed.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.dltool-installed

.PHONY: install demo test test-fast lint format bench bench-data bench-sweeps bench-cluster clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

demo: install
	$(BIN)/dltool train configs/student_pass.yaml

# --dist loadgroup keeps the tests that share a trained run, the PostgreSQL server or the Ray
# cluster on one worker (tests/conftest.py: SHARED_UNITS), so each is made once. compileall first: the tests start many
# Python processes (commands, sweep workers, Ray nodes), and where PYTHONDONTWRITEBYTECODE is set (this machine sets it) each
# one would compile dltool's source again (up to 0.3 s each); it writes only what changed.
test: install
	$(BIN)/python -m compileall -q src
	$(BIN)/python -m pytest -n 2 --dist loadgroup

# Everything but the tests marked slow (those that train or start a process).
test-fast: install
	$(BIN)/python -m compileall -q src
	$(BIN)/python -m pytest -m "not slow" -n 2

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

format: install
	$(BIN)/ruff format src tests
	$(BIN)/ruff check --fix src tests

# About 30 minutes on 2 cores; run it on a quiet machine. predict_csv.py runs before
# compare.py, whose Targets section reads results-predict.md. cnn_speed.py (about 13 minutes):
# the MNIST convnet against plain Keras and the matmul peak (results-cnn.md).
bench: install
	$(BIN)/python benchmarks/options.py
	$(BIN)/python benchmarks/predict_csv.py
	$(BIN)/python benchmarks/compare.py
	$(BIN)/python benchmarks/report.py
	$(BIN)/python benchmarks/internals.py
	$(BIN)/python benchmarks/export_predict.py
	$(BIN)/python benchmarks/cnn_speed.py

# Data bigger than memory: image folders of 2,000 / 6,000 / 25,000 images and a 10-million-row
# CSV against plain Keras (generated once into /tmp/dltool-bench-data, about 1.5 GB). About
# 15 minutes on 2 cores; run it on a quiet machine.
bench-data: install
	$(BIN)/python benchmarks/data_scale.py

# Search quality, pruning and throughput of sweeps (benchmarks/results-sweeps.md): about
# 30 minutes on 2 cores, and it starts a PostgreSQL server like the tests do.
bench-sweeps: install
	$(BIN)/python benchmarks/sweeps.py

# Sweeps on a local two-node Ray cluster against --jobs 2 (overhead per trial), and mirrored
# training on 2 logical CPU devices against 1 (benchmarks/results-cluster.md): about 10 minutes.
bench-cluster: install
	$(BIN)/python benchmarks/cluster.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .hypothesis src/*.egg-info
