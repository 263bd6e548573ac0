# Every target bootstraps the virtualenv it needs; nothing else has to be installed by hand.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv demo test dev lint unit integration e2e clean chaos bench

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(PY) -m devstack demo

dev: venv
	$(PY) -m devstack serve

bench: venv
	$(PY) bench/run.py $(BENCH_ARGS)

chaos: venv
	$(PY) -m devstack chaos

lint: venv
	$(PY) -m ruff check .

test: venv lint deploy-plan
	$(PY) -m pytest -q

unit: venv
	$(PY) -m pytest -q tests/unit

integration: venv
	$(PY) -m pytest -q tests/integration

e2e: venv
	$(PY) -m pytest -q tests/e2e

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .devstack.env

# --- Deploy to Tencent Cloud (docs/deploy.md) ------------------------------------------------------
.PHONY: package cam-policy deploy smoke
DEPLOY_PY := PYTHONPATH=layers/ciflow $(PY)

package: venv
	$(PY) -m deploy.package

cam-policy: venv
	$(DEPLOY_PY) -m deploy.cam

# DEPLOY_ARGS=--no-validation skips the platform's input rules, which do not list Python3.9 (docs/deploy.md).
deploy: package
	$(DEPLOY_PY) -m deploy.deploy $(DEPLOY_ARGS)

# The real multi-scf component run offline on serverless.yml, its API calls checked (docs/deploy.md).
# Skipped, saying so, without node or npm; scf-plan installs itself once into ~/.cache or build/.
.PHONY: deploy-plan
SCF_PLAN ?= ../shared/tools/scf-plan/scf-plan
deploy-plan: venv
	$(PY) -m deploy.plan --tool $(SCF_PLAN) --env-file .env.example

smoke: venv
	$(DEPLOY_PY) -m deploy.smoke

# --- Operate (docs/operating.md): make ciflow ARGS="status --prefix uploads/" -----------------------
.PHONY: ciflow
ciflow: venv
	PYTHONPATH=layers/ciflow $(PY) -m ciflow $(ARGS)

# --- Explore the state machine (tests/property/explore.py): make explore ARGS="--examples 5000" -------
.PHONY: explore
explore: venv
	PYTHONPATH=layers/ciflow:functions:. $(PY) -m tests.property.explore $(ARGS)
