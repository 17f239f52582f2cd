# Fresh machine: `make demo` (runs the main job on CPU) and `make test` (runs the suite).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
WORKDIR ?= workdirs/demo

.PHONY: install demo test test-slow lint clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch's CPU build (the default wheel pulls CUDA libraries), for the transformers checks.
	$(PY) -m pip install --quiet torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test,tpu,hf]"
	touch $(STAMP)

demo: $(STAMP)
	rm -rf $(WORKDIR)
	JAX_PLATFORMS=cpu $(PY) -m jaxlab.launch --config configs/smi_scaling.py --workdir $(WORKDIR)

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test: $(STAMP)
	JAX_PLATFORMS=cpu $(PY) -m pytest -n auto --maxprocesses 4 tests

# The tests marked slow (minutes each, left out of `make test`): AOT compiles of smi_1p6b and smi_13b.
test-slow: $(STAMP)
	JAX_PLATFORMS=cpu $(PY) -m pytest -m slow tests

clean:
	rm -rf $(VENV) workdirs
