# The two commands a new user needs: `make demo` and `make test`. Each installs what it needs first.
SHELL := /bin/bash
export PATH := $(HOME)/.local/bin:$(PATH)
UV := uv

.PHONY: install test lint unit demo bench clean

# make demo ARGS=--keep-running   keeps the stack up after the call (Ctrl-C stops it)
ARGS ?=

install:
	@bash scripts/bootstrap.sh

lint: install
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run mypy kit_settings token_server sample_agent client_harness offline_speech local_stack tests bench

test: install lint
	$(UV) run pytest --cov --cov-report=term

unit: install
	$(UV) run pytest -m "not integration and not e2e"

demo: install
	$(UV) run client-harness demo $(ARGS)

bench: install
	$(UV) run python bench/token_endpoint.py

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache bench/results runs .coverage .coverage.*
