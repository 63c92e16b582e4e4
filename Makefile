# Two entry points: `make demo` (train + evaluate STAP-CRNN with BC learning on every fold of
# the embedded synthetic scenes) and `make test` (`make test-fast`: without the tests marked
# slow, the end-to-end runs).  Both create .venv when it is missing.
PYTHON ?= python3
# test processes (pytest-xdist): auto = one per CPU core, at most 4 (each holds torch and starts
# `asc` subprocesses of about 1 GB: more would cost memory for little time); TEST_WORKERS=N asks
# for N, TEST_WORKERS=0 runs the suite in this process
TEST_WORKERS ?= auto
XDIST := -n $(TEST_WORKERS) --maxprocesses=4
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
	$(BIN)/python -m pip install -q -e ".[dev]" 2>&1 | grep -v "is ignored" || true
	$(BIN)/python -c "import asc, torch, torchaudio, lightning, nnAudio, wandb" && touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/asc cv --config experiments/demo.yaml

test: $(STAMP)
	$(BIN)/python -m pytest -q $(XDIST) tests

lint: $(STAMP)
	$(BIN)/ruff check .

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q $(XDIST) -m "not slow" tests

clean:
	rm -rf $(VENV) runs wandb .pytest_cache
