# Quick start: `make mini` (the paper in miniature on CPU) and `make test`.
# Offline: SEKD_DATA_MIRROR=<dir holding human_written_data/> make mini
VENV ?= .venv
PYTHON ?= python3
STAMP := $(VENV)/.installed-$(shell cat requirements/lock.txt pyproject.toml | cksum | cut -d' ' -f1)
SNAKEMAKE := $(VENV)/bin/snakemake
CORES ?= 2

.PHONY: venv mini mini-paper sensitivity artifact bench test test-fast test-tf5 lint format config-docs container

$(STAMP): requirements/lock.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements/lock.txt
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

mini: $(STAMP)  ## the miniature study's results/table1.csv
	$(SNAKEMAKE) --profile profiles/local --cores $(CORES) results/table1.csv --configfile config/mini.yaml

mini-paper: $(STAMP)  ## the whole study in miniature: both tables, every figure, the report
	$(SNAKEMAKE) --profile profiles/local --cores $(CORES) all --configfile config/mini.yaml
	$(SNAKEMAKE) --profile profiles/local --report results/snakemake-report.zip --configfile config/mini.yaml

sensitivity: $(STAMP)  ## results/sensitivity.csv: each open choice's alternative as its own KD run (config/paper.yaml)
	$(SNAKEMAKE) --profile profiles/local --cores $(CORES) results/sensitivity.csv --configfile config/mini.yaml

artifact: $(STAMP)  ## results/artifact.tar.gz for artifact review (after mini-paper)
	$(SNAKEMAKE) --profile profiles/local --cores $(CORES) results/artifact.tar.gz --configfile config/mini.yaml

bench: $(STAMP)  ## every benchmark; each prints one JSON line of ratios (docs/benchmarks.md)
	$(VENV)/bin/python bench/loss_bench.py
	$(VENV)/bin/python bench/store_bench.py
	$(VENV)/bin/python bench/onpolicy_bench.py
	$(VENV)/bin/python bench/decode_bench.py
	$(VENV)/bin/python bench/teacher_gen_bench.py
	$(VENV)/bin/python bench/dag_bench.py

test: $(STAMP)  ## every test, the end-to-end workflow run included
	$(VENV)/bin/pytest

test-fast: $(STAMP)  ## unit tests only
	$(VENV)/bin/pytest -m "not e2e"

# Training, decoding, losses and DeepSpeed on transformers 5 (requirements/lock-tf5.txt), beside the
# 4.57 venv: the same tests, run with the working tree's sekd (docs/benchmarks.md, "Two
# transformers versions"). Not part of `make test`: 14 minutes on the 2-core CI machine.
TF5_VENV ?= .venv-tf5
TF5_STAMP := $(TF5_VENV)/.installed-$(shell cat requirements/lock-tf5.txt | cksum | cut -d' ' -f1)
TF5_TESTS ?= tests/test_train.py tests/test_train_checks.py tests/test_decode.py \
	tests/test_sampling.py tests/test_resume.py tests/test_nonfinite.py tests/test_teacher_store.py \
	tests/test_losses.py tests/test_losses_chunked.py tests/test_deepspeed.py tests/test_gpu_check.py \
	tests/test_transformers_versions.py

$(TF5_STAMP): requirements/lock-tf5.txt
	$(PYTHON) -m venv $(TF5_VENV)
	$(TF5_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements/lock-tf5.txt
	rm -f $(TF5_VENV)/.installed-* && touch $@

test-tf5: $(TF5_STAMP)  ## the training/decoding tests on transformers 5
	PYTHONPATH=$(CURDIR)/workflow $(TF5_VENV)/bin/python -m pytest -q -m "not e2e and not slurm" $(TF5_TESTS)

lint: $(STAMP)
	$(VENV)/bin/ruff check workflow tests bench tools
	$(VENV)/bin/ruff format --check workflow tests bench tools
	$(VENV)/bin/snakefmt --check workflow/Snakefile workflow/rules
	$(SNAKEMAKE) --lint --configfile config/mini.yaml

format: $(STAMP)
	$(VENV)/bin/ruff format workflow tests bench tools
	$(VENV)/bin/snakefmt workflow/Snakefile workflow/rules

# The image recipe of `--sdm conda apptainer` (docs/environments.md): every rule's conda env, vLLM's
# included; tests/test_container.py checks it is current. Needs no conda or docker.
container: $(STAMP)  ## Dockerfile from the env files (snakemake --containerize, tools/containerize.py)
	$(VENV)/bin/python tools/containerize.py > Dockerfile.tmp
	mv Dockerfile.tmp Dockerfile

config-docs: $(STAMP)  ## config/README.md from the config schema (tests/test_config_docs.py checks it)
	PYTHONPATH=workflow $(VENV)/bin/python -m sekd.config_docs > config/README.md
