# Every target creates .venv when it is missing and installs what it needs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# One BLAS/OpenMP thread per process unless the caller says otherwise; Dask
# workers are processes, so the pool, not BLAS, uses the cores.
export OMP_WAIT_POLICY ?= PASSIVE
export MLFLOW_ENABLE_TELEMETRY ?= false
export DO_NOT_TRACK ?= true

.PHONY: test bench run train ui lint clean-venv

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev,compare,train,import]"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -m "not gpu" -q

bench: $(STAMP)
	$(PY) benchmarks/kernels.py
	@if [ -f benchmarks/data.py ]; then $(PY) benchmarks/data.py; fi
	@if [ -f benchmarks/pipeline.py ]; then $(PY) benchmarks/pipeline.py; fi
	@if [ -f benchmarks/load.py ]; then $(PY) benchmarks/load.py; fi
	$(PY) benchmarks/accuracy.py
	$(PY) benchmarks/integrity.py

run: $(STAMP)
	$(VENV)/bin/neuroliquid

train: $(STAMP)
	$(VENV)/bin/neuroliquid experiment=train_bptt

ui: $(STAMP)
	@echo "MLflow UI on http://127.0.0.1:5000 (experiments open in its model-training view: pipeline/core/mlflow_ui.py)"
	$(VENV)/bin/mlflow ui --app-name neuroliquid --host 127.0.0.1 --port 5000 \
	    --backend-store-uri sqlite:///$(CURDIR)/mlruns/mlflow.db \
	    --default-artifact-root $(CURDIR)/mlruns/artifacts

lint: $(STAMP)
	$(VENV)/bin/ruff check kernels pipeline tests benchmarks

clean-venv:
	rm -rf $(VENV)
