# Set-up, demo and tests. Everything installs into .venv inside the repository.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install data demo test test-fast bench clean

# torch is installed first and pinned: a CPU build of 2.13.0 is on disk; anything else pulls GBs of CUDA.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install -q --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

data: install
	$(BIN)/convlens data fetch all

# Fetch MNIST, train the articles' CNN with their recipe, evaluate it, and say where to look.
demo: install
	$(BIN)/convlens data fetch mnist
	$(BIN)/convlens train --model simple --dataset mnist --recipe seed

# All tests, the slow full-data ones included (about 3 minutes on 2 cores).
test: data
	$(BIN)/python -m pytest -q

# The quick suite only, for the edit-test loop.
test-fast: data
	$(BIN)/python -m pytest -q -m "not slow"

bench: data
	$(BIN)/python bench/train_speed.py
	$(BIN)/python bench/inspect_speed.py
	$(BIN)/python bench/oip_speed.py
	$(BIN)/python bench/compare_speed.py
	$(BIN)/python bench/explain_speed.py

clean:
	rm -rf $(VENV) runs .pytest_cache
