# `make` builds the Cython kernels in place; `make test` / `make demo` also create .venv first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.requirements-installed

.PHONY: all kernels venv test demo bench clean distclean

all: kernels

kernels:
	$(if $(wildcard $(PY)),$(PY),$(PYTHON)) setup.py build_ext --inplace

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $(STAMP)

venv: $(STAMP)

test: venv
	$(PY) setup.py -q build_ext --inplace
	$(PY) -m pytest -q tests

demo: venv
	$(PY) setup.py -q build_ext --inplace
	$(PY) -m rcnn.tools.demo

bench: venv
	$(PY) setup.py -q build_ext --inplace
	$(PY) bench/bench_kernels.py

clean:
	rm -rf build rcnn/cython/*.so rcnn/cython/*.c rcnn/cython/*.cpp .pytest_cache
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
