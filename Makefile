# cxrad developer commands. `make help` lists them.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
ARGS ?=

.DEFAULT_GOAL := help

help: ## Show this help
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-10s %s\n", $$1, $$2}'

install: $(STAMP) ## Create .venv and install cxrad with its dev extras

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

run: install ## Run the main job (synthetic films, the default ensemble detector); ARGS=... adds overrides
	$(PY) -m cxrad.run $(ARGS)

sweep: install ## Research sweep: models x backbones x conditioning, W&B offline; ARGS=... adds overrides
	$(PY) -m cxrad.run -m experiment=research_sweep $(ARGS)

select: install ## Leaderboard + final model of a sweep (default the newest): make select SWEEP=outputs/multiruns/<time>
	$(PY) -m cxrad.select $(SWEEP)

test: install ## Run the default test suite (offline, CPU, well under 15 minutes)
	$(PY) -m pytest -q $(ARGS)

test-slow: install ## Run only the slow tests
	$(PY) -m pytest -q -m slow $(ARGS)

bench: install ## Performance benchmarks vs stock anomalib -> benchmarks/results/*.json (~20 min on 2 CPU cores)
	$(PY) benchmarks/patchcore_fit.py
	$(PY) benchmarks/memory.py
	$(PY) benchmarks/knn.py
	$(PY) benchmarks/data_cache.py
	$(PY) benchmarks/report.py

lint: install ## Ruff lint and format check
	$(VENV)/bin/ruff check cxrad tests benchmarks
	$(VENV)/bin/ruff format --check cxrad tests

format: install ## Apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix cxrad tests
	$(VENV)/bin/ruff format cxrad tests

clean: ## Remove outputs and caches (keeps .venv)
	rm -rf outputs multirun .cache .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

.PHONY: help install run sweep select test test-slow bench lint format clean
