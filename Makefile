# pulse: `make run` runs the whole pipeline, `make test` runs the tests.
# Both create (or reuse) the virtual environment in .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTHON ?= $(shell command -v python3.11 || command -v python3)
# `make serve` listens on loopback only; HOST=0.0.0.0 to expose it (then set PULSE_API_KEY)
HOST ?= 127.0.0.1
PORT ?= 3000
export PATH := $(abspath $(VENV))/bin:$(PATH)
export PREFECT_LOGGING_EXTRA_LOGGERS ?= features,models,serving,flows
# a loaded machine starts the ephemeral Prefect server slowly (default wait: 20 s); local runs send no telemetry
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 180
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export DO_NOT_TRACK ?= 1
export BENTOML_DO_NOT_TRACK ?= true

.PHONY: run test serve bento worker repro clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned: a looser spec would pull a multi-GB CUDA build
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

run: $(STAMP)  ## the whole pipeline on the default dataset, as a Prefect flow (versioned with DVC)
	$(PY) -m flows.pipeline

test: $(STAMP)  ## the test suite (unit, data, model, end-to-end)
	$(PY) -m pytest

serve: $(STAMP)  ## serve the default run's model (pulse-recommender:latest; never a candidate) on 127.0.0.1:3000; PULSE_MODEL_TAG=... for another, HOST=/PORT= to change
	$(VENV)/bin/bentoml serve serving.service:Recommender --host $(HOST) -p $(PORT)

worker: $(STAMP)  ## run the prefect.yaml deployments on this machine: PREFECT_API_URL=http://HOST:4200/api make worker (pool `pulse`, deploy, worker)
	$(VENV)/bin/prefect work-pool create pulse --type process --overwrite
	$(VENV)/bin/prefect --no-prompt deploy --all
	PULSE_PROJECT_DIR=$(CURDIR) $(VENV)/bin/prefect worker start --pool pulse

bento: $(STAMP)  ## build a Bento of the service and the served model (bentofile.yaml; after `make run`)
	$(VENV)/bin/bentoml build

repro: $(STAMP)  ## the same pipeline through DVC
	$(VENV)/bin/dvc repro

clean:
	rm -rf data artifacts reports features/repo/data .cache
