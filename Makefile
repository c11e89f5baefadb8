# iGPT server. Two commands on a fresh machine:
#   make run    serve the embedded tier on http://127.0.0.1:7860 (installs what it needs)
#   make test   run the whole test suite (installs what it needs)
# torch is pinned to the release that lies on this kind of machine's disk; an open range
# would pull a multi-GB CUDA build.

VENV ?= .venv
HOST ?= 127.0.0.1
PORT ?= 7860
DATA ?= data
PYTHON ?= python3
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

PIP := $(VENV)/bin/pip
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export PIP_CACHE_DIR ?= $(CURDIR)/$(VENV)/.cache/pip
# Never download weights at run time.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: run test lint bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# Each stamp is redone when pyproject.toml changes.
$(VENV)/.embedded: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q $(TORCH_PINS)
	$(PIP) install -q -e '.[embedded]'
	touch $@

$(VENV)/.all: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q $(TORCH_PINS)
	$(PIP) install -q -e '.[embedded,full,dev]'
	touch $@ $(VENV)/.embedded

run: $(VENV)/.embedded
	@echo "iGPT server (embedded tier): http://$(HOST):$(PORT)/  API: /api  OpenAPI: /docs"
	$(VENV)/bin/igpt-server --host $(HOST) --port $(PORT) --data-dir $(DATA)

test: $(VENV)/.all
	$(VENV)/bin/pytest

lint: $(VENV)/.all
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: $(VENV)/.all
	$(VENV)/bin/python bench/segment_quality.py
	$(VENV)/bin/python bench/routing.py
	$(VENV)/bin/python bench/speech.py
	$(VENV)/bin/python bench/gpu.py --smoke

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache test-output
