# Set-up, demo and tests. Everything installs into .venv inside the repository.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

DEMO_RUN := runs/demo-simple-mnist

.PHONY: install browser data demo docs test test-fast bench clean

# torch is installed first and pinned: a CPU build of 2.13.0 is on disk; anything else pulls GBs of CUDA.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install -q --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Debian's Chromium for the browser tests (Playwright drives it; its own browser download fails here).
browser:
	@command -v chromium >/dev/null || apt-get install -y --no-install-recommends chromium \
		|| (apt-get update && apt-get install -y --no-install-recommends chromium) \
		|| (echo "could not install chromium: run 'apt-get install chromium' as root" && exit 1)

data: install
	$(BIN)/convlens data fetch all

# Fetch MNIST, train the articles' CNN with their recipe (once), and write its report.html.
demo: install
	$(BIN)/convlens data fetch mnist
	@test -f $(DEMO_RUN)/model.safetensors && echo "$(DEMO_RUN) is trained already; delete it to train again" \
		|| $(BIN)/convlens train --model simple --dataset mnist --recipe seed --out $(DEMO_RUN)
	$(BIN)/convlens report $(DEMO_RUN)

# Run every command of docs/tour.md on fresh runs (about 8 minutes on 2 cores), redraw its figures, note its times.
docs: data browser
	$(BIN)/python docs/tour_runner.py

# All tests, the slow ones included (16-19 minutes on 2 cores; make test-fast skips the slow ones).
test: data browser
	$(BIN)/python -m pytest -q

# The quick suite only, for the edit-test loop.
test-fast: data browser
	$(BIN)/python -m pytest -q -m "not slow"

bench: data
	$(BIN)/python bench/train_speed.py
	$(BIN)/python bench/inspect_speed.py
	$(BIN)/python bench/oip_speed.py
	$(BIN)/python bench/compare_speed.py
	$(BIN)/python bench/explain_speed.py
	$(BIN)/python bench/web_speed.py

clean:
	rm -rf $(VENV) runs .pytest_cache
