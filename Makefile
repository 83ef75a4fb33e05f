# Quick start: `make mini` (the paper in miniature on CPU) and `make test`.
# Offline: SEKD_DATA_MIRROR=<dir holding human_written_data/> make mini
# Every install is hash-checked against its lock (requirements/<env>.txt; docs/environments.md).
VENV ?= .venv
COMET_VENV ?= .venv-comet
DRIVER_VENV ?= .venv-driver
PYTHON ?= python3
PIP_FLAGS := --quiet --disable-pip-version-check
# The test venvs' locks are PyPI's, for Linux x86_64 and aarch64 and macOS arm64. Where this
# machine's CPU torch wheel lies in PIP_FIND_LINKS (CI), their derived twins <lock>-cpu.txt take it
# instead of PyPI's torch (on Linux x86_64 the CUDA build, several GB). CPU= (empty) forces PyPI's.
LOCAL_TORCH_WHEEL := torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl
# pip's find-links: the environment's, and pip.conf's (which pip also reads, and would prefer the
# local +cpu build from, failing the PyPI lock's hash check)
PIP_LINKS := $(PIP_FIND_LINKS) $(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null)
CPU ?= $(if $(strip $(foreach dir,$(PIP_LINKS),$(wildcard $(dir)/$(LOCAL_TORCH_WHEEL)))),-cpu)
DEV_LOCK := requirements/dev$(CPU).txt
COMET_LOCK := requirements/comet-dev$(CPU).txt
stamp = $(1)/.installed-$(shell cat $(2) pyproject.toml | cksum | cut -d' ' -f1)
STAMP := $(call stamp,$(VENV),$(DEV_LOCK))
COMET_STAMP := $(call stamp,$(COMET_VENV),$(COMET_LOCK))
DRIVER_STAMP := $(call stamp,$(DRIVER_VENV),requirements/driver.txt)
SNAKEMAKE := $(VENV)/bin/snakemake
CORES ?= 2
UV ?= $(VENV)/bin/uv

.PHONY: venv driver mini mini-paper sensitivity artifact bench test test-fast test-tf4 test-cu12 \
	lint format config-docs locks container

# A venv from a hash-locked requirements file (pip --require-hashes), then sekd itself (editable).
define make_venv
	rm -rf $(1)
	$(PYTHON) -m venv $(1)
	$(1)/bin/pip install $(PIP_FLAGS) --require-hashes -r $(2)
	$(if $(3),$(1)/bin/pip install $(PIP_FLAGS) --no-deps --no-build-isolation -e .)
	touch $(call stamp,$(1),$(2))
endef

# The test venv: the driver and every rule's env but COMET's, with CPU torch.
$(STAMP): $(DEV_LOCK) pyproject.toml
	$(call make_venv,$(VENV),$(DEV_LOCK),sekd)

# COMET's env (transformers 4, numpy < 2) with CPU torch: tests/test_comet.py runs there.
$(COMET_STAMP): $(COMET_LOCK) pyproject.toml
	$(call make_venv,$(COMET_VENV),$(COMET_LOCK),sekd)

# The driver alone (snakemake, the SLURM plugin; no torch): tests/test_driver_env.py plans with it.
$(DRIVER_STAMP): requirements/driver.txt pyproject.toml
	$(call make_venv,$(DRIVER_VENV),requirements/driver.txt,)

venv: $(STAMP) $(COMET_STAMP) $(DRIVER_STAMP)

driver: $(DRIVER_STAMP)  ## .venv-driver alone: what a cluster's login node needs (docs/slurm.md)

# Re-resolve every lock from its .in (needs PyPI and uv) and rewrite workflow/envs/*.yaml from them.
locks: $(STAMP)
	$(VENV)/bin/python tools/locks.py compile --uv $(UV)

# `make mini` keeps Table 1 at the config's one seed (within its 10 minutes); `make mini-paper`
# runs it over config/mini.yaml's three seeds (tables.table1.seeds), rerunning the table.
mini: $(STAMP)  ## the miniature study's results/table1.csv (one seed)
	$(SNAKEMAKE) --profile profiles/local --cores $(CORES) results/table1.csv --configfile config/mini.yaml \
		--config 'tables={table1: {seeds: null}}'

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

test: venv  ## every test, the end-to-end workflow run included; COMET's in its own venv
	$(VENV)/bin/pytest -m "not comet"
	$(COMET_VENV)/bin/pytest -m comet tests/test_comet.py

test-fast: $(STAMP)  ## unit tests only
	$(VENV)/bin/pytest -m "not e2e and not comet"

# Training, decoding, losses and DeepSpeed on transformers 4.57 (requirements/tf4.txt), beside the
# transformers-5 venv: the same tests, run with the working tree's sekd (docs/environments.md). Not
# part of `make test`: 14 minutes on the 2-core CI machine, which .ci/run's 45-minute budget lacks.
TF4_VENV ?= .venv-tf4
TF4_LOCK := requirements/tf4$(CPU).txt
TF4_STAMP := $(call stamp,$(TF4_VENV),$(TF4_LOCK))
TF4_TESTS ?= tests/test_train.py tests/test_train_checks.py tests/test_decode.py \
	tests/test_sampling.py tests/test_resume.py tests/test_nonfinite.py tests/test_teacher_store.py \
	tests/test_losses.py tests/test_losses_chunked.py tests/test_deepspeed.py tests/test_gpu_check.py \
	tests/test_transformers_versions.py

$(TF4_STAMP): $(TF4_LOCK) pyproject.toml
	$(call make_venv,$(TF4_VENV),$(TF4_LOCK),)

test-tf4: $(TF4_STAMP)  ## the training/decoding tests on transformers 4.57
	PYTHONPATH=$(CURDIR)/workflow $(TF4_VENV)/bin/python -m pytest -q -m "not e2e and not slurm" $(TF4_TESTS)

# The same tests on the CUDA 12 variant's torch 2.10.0 (requirements/cu12-dev.txt: train-cu12's
# versions plus pytest; environment.cuda "12"). PyPI's Linux x86_64 torch is the CUDA build, which
# runs on CPU too; several GB of NVIDIA libraries. Not part of `make test` (docs/environments.md).
CU12_VENV ?= .venv-cu12
CU12_STAMP := $(call stamp,$(CU12_VENV),requirements/cu12-dev.txt)

$(CU12_STAMP): requirements/cu12-dev.txt pyproject.toml
	$(call make_venv,$(CU12_VENV),requirements/cu12-dev.txt,)

test-cu12: $(CU12_STAMP)  ## the training/decoding tests on the CUDA 12 variant's torch 2.10
	PYTHONPATH=$(CURDIR)/workflow $(CU12_VENV)/bin/python -m pytest -q -m "not e2e and not slurm" $(TF4_TESTS)

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
	PYTHONPATH=workflow $(VENV)/bin/python tools/config_docs.py > config/README.md
