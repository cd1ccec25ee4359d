# Two commands on a fresh machine: `make audit` and `make test`.
# Both create .venv and install pinned versions; torch is pinned to the CPU build on local disk.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
SCALE  ?= default
OUT    ?= runs/audit
EXECUTOR ?= process

.PHONY: install install-dev audit audit-replicate readme-table test test-fast test-models test-models-full models lint bench check clean protocol docs

$(VENV)/.installed: requirements/base.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -r requirements/base.lock
	$(PIP) install --no-deps -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements/dev.lock
	$(PIP) install -r requirements/dev.lock
	touch $@

# bnlab on real models (timm, torchvision): its own venv, since torch 2.14.1 + torchvision 0.29.1 + timm 1.0.31 install
# together and the main venv's CPU torch 2.13.0 stays as is (requirements/models.lock)
MODELS_VENV := .venv-models
$(MODELS_VENV)/.installed: requirements/models.lock pyproject.toml
	$(PYTHON) -m venv $(MODELS_VENV)
	$(MODELS_VENV)/bin/python -m pip --disable-pip-version-check -q install -r requirements/models.lock
	$(MODELS_VENV)/bin/python -m pip --disable-pip-version-check -q install --no-deps -e .
	touch $@

models: $(MODELS_VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

audit: install
	$(VENV)/bin/bnlab audit --scale $(SCALE) --out $(OUT) --executor $(EXECUTOR)

# the audit and its replication on seeds from 1000 (OUT/replication), then the README's table from both
audit-replicate: install
	$(VENV)/bin/bnlab audit --scale $(SCALE) --out $(OUT) --executor $(EXECUTOR) --replicate

readme-table: install
	$(PY) -m bnlab.report.readme_table $(OUT)

check: install
	$(VENV)/bin/bnlab check

test: install-dev
	$(PY) -m pytest -q
	$(MAKE) test-models

# the study on timm's and torchvision's ResNets and MobileNets, in the models venv: the lean part make test runs
# (twins of 5 real models, a MobileNetV3 study on tiny inputs, the lr grid and resuming; about 3-4 CPU minutes)
test-models: models
	$(MODELS_VENV)/bin/python -m pytest -q -p no:cacheprovider tests/models_venv/test_study_real_models.py

# everything in tests/models_venv, with the end-to-end resnet10t study (2 seeds, 3x32x32, an lr grid; tens of CPU
# minutes on 2 cores): not part of make test
test-models-full: models
	$(MODELS_VENV)/bin/python -m pytest -q -p no:cacheprovider tests/models_venv

test-fast: install-dev
	$(PY) -m pytest -q -m "not slow"

# docs/protocol.md from the claim modules (and the effects measured by the last default audit, when one is given)
protocol: install
	$(PY) -m bnlab.experiments.protocol_page docs/protocol.md

lint: install-dev
	$(VENV)/bin/ruff check src tests bench docs

bench: install-dev
	for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) $(MODELS_VENV) runs .pytest_cache

# the documentation site (mkdocs-material, API reference from the docstrings) into site/; strict: a broken link or
# reference fails the build (tests/test_docs.py runs the same build in make test)
docs: install-dev
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict
