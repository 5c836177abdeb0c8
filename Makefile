# agentloop developer commands. `make help` lists them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PHOENIX := .venv-phoenix

.DEFAULT_GOAL := help
MCP_SERVERS := .mcp-servers
EVERYTHING  := $(MCP_SERVERS)/node_modules/@modelcontextprotocol/server-everything/dist/index.js

.PHONY: help install wheelhouse chromium phoenix screenshot mcp-servers lint typecheck test demo eval-demo improve-demo bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip "setuptools>=69"
	$(BIN)/python -m pip install --quiet -e '.[dev,local,tools,ray,view,otel,mcp]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv: agentloop, its dev tools, the local model, the tool pack, Ray, the viewer, otel, the MCP SDK

# Debian's chromium, which the viewer's browser tests drive through Playwright (Playwright's
# own browser download is not used). Installed with apt-get when missing (sudo unless root).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
chromium:  ## install headless Chromium (Debian package) for the browser tests, if missing
	@command -v chromium >/dev/null || { \
		$(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium; }

$(PHOENIX)/.installed:
	$(PYTHON) -m venv $(PHOENIX)
	$(PHOENIX)/bin/python -m pip install --quiet --upgrade pip
	$(PHOENIX)/bin/python -m pip install --quiet 'arize-phoenix>=20,<21'
	touch $@

phoenix: $(PHOENIX)/.installed  ## Arize Phoenix in its own .venv-phoenix: the OTLP receiver the otel tests start

screenshot: $(STAMP) phoenix chromium  ## refresh docs/images/phoenix-run.png: a run as Phoenix shows it
	$(BIN)/python tests/phoenix_server/screenshot.py

$(EVERYTHING): tests/mcp_servers/package.json tests/mcp_servers/package-lock.json
	mkdir -p $(MCP_SERVERS)
	cp tests/mcp_servers/package.json tests/mcp_servers/package-lock.json $(MCP_SERVERS)/
	cd $(MCP_SERVERS) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

mcp-servers: $(EVERYTHING)  ## install the MCP reference server the tests start (npm, pinned)

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

test: lint typecheck chromium phoenix mcp-servers $(WHEELHOUSE)/.filled  ## lint, type-check and run the whole suite (what CI runs)
	$(BIN)/python -m pytest

demo: $(STAMP)  ## run an agent on the embedded local model, write its trace, show and replay it
	$(BIN)/python examples/demo.py

eval-demo: $(STAMP)  ## evaluate two example agents on the embedded local model, compare them
	$(BIN)/agentloop eval datasets/demo.jsonl \
		--agent agents/demo.toml --agent agents/demo-explain.toml \
		--scorer contains:ignore_case=true --concurrency 1 \
		--out runs/eval-demo-$$(date +%Y%m%dT%H%M%S)

bench: $(STAMP)  ## print agentloop's per-step cost against raw baselines, and the viewer's timings
	$(BIN)/python bench/run.py
	$(BIN)/python bench/viewer.py

clean:  ## remove the environment and caches
	rm -rf $(VENV) $(PHOENIX) $(MCP_SERVERS) $(WHEELHOUSE) .mypy_cache .pytest_cache .ruff_cache

improve-demo: $(STAMP)  ## the improvement loop on the embedded model: run, feedback, critique, revise, export, dataset, eval, compare
	$(BIN)/python examples/improve_demo.py
