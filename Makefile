# iad-pipeline: `make demo` and `make test` do all set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU installs pin PyTorch's CPU build; on a GPU machine run `make install CONSTRAINTS=`.
CONSTRAINTS ?= constraints-cpu.txt
IAD_HOME ?= $(CURDIR)/.iad
DAGSTER_HOME ?= $(IAD_HOME)/dagster
PORT ?= 3000
export IAD_HOME DAGSTER_HOME

.PHONY: install demo test ui bench lint clean

# A local Dagster instance for the demo's runs: telemetry off (these machines are offline),
# and one step at a time in each concurrency pool (grpo_run's `gpu` pool: one training).
MAKE_INSTANCE = mkdir -p $(DAGSTER_HOME) && { test -f $(DAGSTER_HOME)/dagster.yaml || \
	printf 'telemetry:\n  enabled: false\nconcurrency:\n  pools:\n    default_limit: 1\n' \
	> $(DAGSTER_HOME)/dagster.yaml; }

$(BIN)/.installed: pyproject.toml $(CONSTRAINTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		$(if $(CONSTRAINTS),-c $(CONSTRAINTS)) -e '.[dev]'
	touch $@

install: $(BIN)/.installed

demo: install  ## install, then run the pipeline on synthetic datasets (demo profile)
	$(MAKE_INSTANCE)
	IAD_PROFILE=demo $(BIN)/python -m assets.demo

test: install  ## install, then run the whole test suite
	$(BIN)/python -m pytest

ui: install  ## the Dagster UI on http://127.0.0.1:$(PORT), with the runs of `make demo`
	$(MAKE_INSTANCE)
	IAD_PROFILE=$${IAD_PROFILE:-demo} $(BIN)/dg dev -p $(PORT)

bench: install  ## benchmarks: print ratios measured in one run
	$(BIN)/python bench/bench_download.py
	$(BIN)/python bench/bench_samples.py
	$(BIN)/python bench/bench_annotate.py
	$(BIN)/python bench/bench_questions.py
	$(BIN)/python bench/bench_knowledge.py
	$(BIN)/python bench/bench_tiny_model.py
	$(BIN)/python bench/bench_rewards.py
	$(BIN)/python bench/bench_trainer.py
	$(BIN)/python bench/bench_scoring.py
	$(BIN)/python bench/bench_warehouse.py
	$(BIN)/python bench/bench_inference.py
	$(BIN)/python bench/bench_emit_heatmap.py
	$(BIN)/python bench/bench_ray.py

lint: install
	$(BIN)/ruff check iad_pipeline assets training eval tests bench
	$(BIN)/ruff format --check iad_pipeline assets training eval tests bench

clean:  ## remove the virtualenv and the demo data (never touches $IAD_HOME/data)
	rm -rf $(VENV) $(IAD_HOME)/demo $(DAGSTER_HOME)
