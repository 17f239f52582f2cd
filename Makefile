# Fresh machine: `make demo` (runs the main job on CPU) and `make test` (runs the suite).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
WORKDIR ?= workdirs/demo

.PHONY: install demo test test-slow test-seqio lint clean mutate

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
	JAX_PLATFORMS=cpu $(PY) -m pytest -n auto --maxprocesses 4 --durations=30 tests

# The tests marked slow (minutes each, left out of `make test`): AOT compiles of smi_1p6b and smi_13b.
test-slow: $(STAMP)
	JAX_PLATFORMS=cpu $(PY) -m pytest -m slow tests

# The tests marked seqio (docs/seqio.md; left out of `make test`), after installing the seqio extra
# (seqio, TensorFlow: about 600 MB, a minute) into the venv. They fail, not skip, without seqio.
SEQIO_STAMP := $(VENV)/.seqio-installed

$(SEQIO_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -c constraints.txt -e ".[seqio]"
	touch $(SEQIO_STAMP)

test-seqio: $(SEQIO_STAMP)
	JAX_PLATFORMS=cpu $(PY) -m pytest -m seqio tests

# Mutation testing (docs/mutation.md), not in CI: mutmut over the modules of pyproject.toml's
# [tool.mutmut] (a fresh mutants/ copy each time), a per-module table, then the curated JAX-level
# mutants of tests/mutation/curated.py on a temporary copy of the repository. Fails if a mutant
# survives that docs/mutation.md does not list as equivalent, or a curated mutant survives.
# MUTANTS='jaxlab.smi.*' runs a subset of mutmut's mutants, CURATED='name ...' of the curated ones.
MUTANTS ?=
CURATED ?=
MUTATE_JOBS ?= 2
MUTATE_STAMP := $(VENV)/.mutate-installed

$(MUTATE_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -c constraints.txt -e ".[mutate]"
	touch $(MUTATE_STAMP)

mutate: $(MUTATE_STAMP)
	rm -rf mutants && mkdir mutants
	@start=$$(date +%s); \
	echo "mutmut run (log: mutants/mutmut-run.log)"; \
	JAX_PLATFORMS=cpu $(VENV)/bin/mutmut run --max-children $(MUTATE_JOBS) $(MUTANTS) \
	  > mutants/mutmut-run.log 2>&1 || { tail -c 3000 mutants/mutmut-run.log; exit 1; }; \
	$(PY) -m tests.mutation.summary; summary=$$?; \
	$(PY) -m tests.mutation.run $(CURATED); curated=$$?; \
	echo "make mutate: $$(( ($$(date +%s) - start) / 60 )) min"; \
	test $$summary -eq 0 && test $$curated -eq 0

clean:
	rm -rf $(VENV) workdirs
