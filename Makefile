# agentloop developer commands. `make help` lists them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install wheelhouse lint typecheck test demo eval-demo improve-demo bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,local,tools]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv: agentloop, its dev tools, the local model and the tool pack

WHEELHOUSE := .wheelhouse
$(WHEELHOUSE)/.filled: pyproject.toml | $(STAMP)
	rm -rf $(WHEELHOUSE)
	$(BIN)/python -m pip wheel --quiet --wheel-dir $(WHEELHOUSE) '.[local,tools]'
	rm -f $(WHEELHOUSE)/agentloop-*.whl
	touch $@

wheelhouse: $(WHEELHOUSE)/.filled  ## the wheels of agentloop's dependencies, for the offline wheel test

lint: $(STAMP)  ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)  ## mypy --strict over src/
	$(BIN)/mypy

test: lint typecheck $(WHEELHOUSE)/.filled  ## lint, type-check and run the whole suite (what CI runs)
	$(BIN)/python -m pytest

demo: $(STAMP)  ## run an agent on the embedded local model, write its trace, show and replay it
	$(BIN)/python examples/demo.py

eval-demo: $(STAMP)  ## evaluate two example agents on the embedded local model, compare them
	$(BIN)/agentloop eval datasets/demo.jsonl \
		--agent agents/demo.toml --agent agents/demo-explain.toml \
		--scorer contains:ignore_case=true --concurrency 1 \
		--out runs/eval-demo-$$(date +%Y%m%dT%H%M%S)

bench: $(STAMP)  ## print agentloop's per-step cost against raw baselines
	$(BIN)/python bench/run.py

clean:  ## remove the environment and caches
	rm -rf $(VENV) $(WHEELHOUSE) .mypy_cache .pytest_cache .ruff_cache

improve-demo: $(STAMP)  ## the improvement loop on the embedded model: run, feedback, critique, revise, export, dataset, eval, compare
	$(BIN)/python examples/improve_demo.py
