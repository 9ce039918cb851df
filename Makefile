# material-alch3mist — every target sets up what it needs, so each works on a fresh clone.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV      := .venv
BIN       := $(VENV)/bin
STAMP     := $(VENV)/.installed
DEMO_OUT  ?= out/demo
DEMO_REQUEST ?= Material Alch3mist, genérame una vaca con piel de cocodrilo y con una melena en llamas
PYTEST_ARGS ?=

.PHONY: help venv system-deps test-deps demo lint test up bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/'

$(STAMP): requirements.txt requirements-dev.txt requirements-hunyuan3d.txt backend/pyproject.toml
	test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	bash scripts/install-hunyuan3d.sh $(VENV)  # the optional hunyuan3d-local engine (--no-deps)
	touch $@

venv: $(STAMP)  ## the backend's virtual environment (.venv)

system-deps:  ## Debian packages: Mesa EGL for offscreen rendering, Chromium for browser tests
	bash scripts/install-system-deps.sh

test-deps: venv system-deps  ## test servers' own environments: TRELLIS stand-in, glTF validator, Open WebUI
	bash scripts/setup-engine-test-servers.sh
	bash scripts/openwebui-venv.sh

demo: venv system-deps  ## run the whole chain once on the embedded default (tiny preset, preview engine)
	$(BIN)/alch3mist generate "$(DEMO_REQUEST)" --preset tiny --engine-3d preview --seed 7 --out $(DEMO_OUT)
	@echo
	@echo "Demo outputs in $(DEMO_OUT)/ — open $(DEMO_OUT)/viewer.html in a browser; manifest.json says what ran."

lint: venv  ## ruff + mypy
	$(BIN)/ruff check backend tests pipelines tools bench
	$(BIN)/mypy

test: test-deps lint  ## every test: unit, integration (real backend), end-to-end (real Open WebUI + Chromium)
	$(BIN)/pytest $(PYTEST_ARGS)

up: venv system-deps  ## backend + a local Open WebUI with the Alch3mist pipe and tool installed, ready to chat
	bash scripts/openwebui-venv.sh
	bash scripts/up.sh

bench: venv system-deps  ## CPU benchmarks (tiny preset): chain overhead, API overhead, mesh, render
	$(BIN)/python -m bench

clean:  ## remove outputs (keeps the environments)
	rm -rf out test-artifacts
