# `make` builds the Cython kernels in place; `make test` / `make demo` also create the environment first.
# Python 3.10-3.13: PYTHON=python3.13 (or a path) picks one; by default the first supported of python3,
# python3.13 ... python3.10. Each Python gets its own environment: .venv for the default python3, else
# .venv-<version> (e.g. .venv-3.13).
SUPPORTED := 3.10 3.11 3.12 3.13
pyver = $(shell $(1) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
ifeq ($(origin PYTHON),undefined)
PYTHON := $(firstword $(foreach p,python3 python3.13 python3.12 python3.11 python3.10,\
            $(if $(filter $(SUPPORTED),$(call pyver,$(p))),$(p))) python3)
endif
PYVER  := $(call pyver,$(PYTHON))
VENV   ?= $(if $(filter python3,$(PYTHON)),.venv,.venv-$(PYVER))
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.requirements-installed

.PHONY: all kernels venv check-python test test-onnx demo bench clean distclean

all: kernels

check-python:
	@$(PYTHON) -c 'import sys' 2>/dev/null || { echo "error: $(PYTHON) is not a Python here; this project runs on Python $(SUPPORTED) (make ... PYTHON=python3.12)"; exit 2; }
	@test -n "$(filter $(SUPPORTED),$(PYVER))" || { echo "error: $(PYTHON) is Python $(PYVER); this project runs on Python $(SUPPORTED) (make ... PYTHON=python3.12)"; exit 2; }

bench: venv
	$(PY) setup.py -q build_ext --inplace
	$(PY) bench/bench_kernels.py
	$(PY) bench/bench_detect.py
	$(PY) bench/bench_eval.py
	$(PY) bench/bench_train.py
	$(PY) bench/bench_loader.py

# Builds with the environment's Python when it exists, else with $(PYTHON) if it has Cython and numpy,
# else creates the environment first.
kernels:
	@if [ -x $(PY) ]; then py=$(PY); \
	elif $(PYTHON) -c "import Cython, numpy" 2>/dev/null; then py=$(PYTHON); \
	else $(MAKE) --no-print-directory venv && py=$(PY); fi; \
	echo "$$py setup.py build_ext --inplace"; $$py setup.py build_ext --inplace

# MXNet goes in with --no-deps: its metadata asks numpy < 2, and it runs on numpy 2 (rcnn/compat.py).
$(STAMP): requirements.txt requirements-base.txt requirements-mxnet.txt
	@$(MAKE) --no-print-directory check-python PYTHON=$(PYTHON)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -r requirements-mxnet.txt
	touch $(STAMP)

venv: $(STAMP)

test: venv
	$(PY) setup.py -q build_ext --inplace
	$(PY) -m pytest -q tests

# The detector without MXNet: `pip install ".[onnx,test]"` into an environment of its own (no MXNet in it), the
# published mnet.25 exported to ONNX by the MXNet environment, then the tests of tests/test_onnx_runtime.py run
# from outside the checkout against the installed package.
ONNX_VENV  := .venv-onnx-$(PYVER)
ONNX_MODEL := build/onnx/mnet.25.onnx
SHARED     ?= ../shared
$(ONNX_VENV)/.installed: setup.py pyproject.toml
	@$(MAKE) --no-print-directory check-python PYTHON=$(PYTHON)
	rm -rf $(ONNX_VENV)
	$(PYTHON) -m venv $(ONNX_VENV)
	$(ONNX_VENV)/bin/python -m pip install -q --upgrade pip
	$(ONNX_VENV)/bin/python -m pip install -q ".[onnx,test]"
	touch $@

test-onnx: $(ONNX_VENV)/.installed
	$(ONNX_VENV)/bin/python -m pip install -q --no-deps --force-reinstall .
	@if [ -f $(SHARED)/models/mnet.25-0000.params ] && [ -x .venv/bin/python ]; then \
	    mkdir -p $(dir $(ONNX_MODEL)) && .venv/bin/python -m rcnn.tools.export_onnx --prefix $(SHARED)/models/mnet.25 \
	        --output $(ONNX_MODEL) --overwrite; fi
	cd /tmp && RETINAFACE_INSTALLED=1 RETINAFACE_ONNX_MODEL=$(CURDIR)/$(ONNX_MODEL) RETINAFACE_SHARED=$(abspath $(SHARED)) \
	    $(CURDIR)/$(ONNX_VENV)/bin/python -m pytest -q -p no:cacheprovider -c $(CURDIR)/pytest.ini \
	    --rootdir $(CURDIR) $(CURDIR)/tests/test_onnx_runtime.py

# The embedded default: generate a dataset in the RetinaFace layout, train mnet from scratch on the CPU,
# evaluate on its val split (AP from its label.txt) and draw detections. Re-running resumes/skips.
# ANCHORS=net5 (or any train.py --anchors preset) trains and evaluates that preset under its own names.
ANCHORS     ?= net3
SUFFIX      := $(if $(filter-out net3,$(ANCHORS)),-$(ANCHORS))
DEMO_DATA   := data/demo/retinaface
DEMO_PREFIX := model/demo/mnet-demo$(SUFFIX)
DEMO_OUT    := out/demo$(SUFFIX)
DEMO_EPOCHS := 20
demo: venv
	$(PY) setup.py -q build_ext --inplace
	test -f $(DEMO_DATA)/val/label.txt || $(PY) -m rcnn.dataset.synthetic --output $(DEMO_DATA) --train 300 --val 100 --seed 0
	$(PY) train.py --network mnet --anchors $(ANCHORS) --dataset_path $(DEMO_DATA) --root_path data/demo \
	    --prefix $(DEMO_PREFIX) --pretrained none --image_size 320 --batch_images 8 --lr 0.01 --lr_step 15,19 \
	    --end_epoch $(DEMO_EPOCHS) --frequent 25 --workers 1 --seed 0 --resume
	$(PY) test.py --network $(ANCHORS) --prefix $(DEMO_PREFIX) --epoch $(DEMO_EPOCHS) --dataset_path $(DEMO_DATA) \
	    --mode 0 --scales 2.0 --gpu -1 --output $(DEMO_OUT) --overwrite
	$(PY) retinaface.py --network $(ANCHORS) --prefix $(DEMO_PREFIX) --epoch $(DEMO_EPOCHS) \
	    --image $(DEMO_DATA)/val/images/0--Parade --scale 2.0 --thresh 0.5 --output $(DEMO_OUT)/detections --overwrite
	@echo "demo done: AP in $(DEMO_OUT)/ap.json, PR curve $(DEMO_OUT)/pr_curves.png, drawings in $(DEMO_OUT)/detections/"

clean:
	rm -rf build *.egg-info rcnn/cython/*.so rcnn/cython/*.c rcnn/cython/*.cpp .pytest_cache data/cache data/demo/cache
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +

distclean: clean
	rm -rf .venv .venv-3.* .venv-onnx-*
