# `make` builds the Cython kernels in place; `make test` / `make demo` also create .venv first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.requirements-installed

.PHONY: all kernels venv bench-venv test demo bench clean distclean

all: kernels

bench: venv bench-venv
	$(PY) setup.py -q build_ext --inplace
	$(PY) bench/bench_kernels.py
	$(PY) bench/bench_detect.py
	$(PY) bench/bench_eval.py
	$(PY) bench/bench_train.py
	$(PY) bench/bench_loader.py

# Builds with .venv's Python when it exists, else with $(PYTHON) if it has Cython and numpy,
# else creates .venv first.
kernels:
	@if [ -x $(PY) ]; then py=$(PY); \
	elif $(PYTHON) -c "import Cython, numpy" 2>/dev/null; then py=$(PYTHON); \
	else $(MAKE) --no-print-directory venv && py=$(PY); fi; \
	echo "$$py setup.py build_ext --inplace"; $$py setup.py build_ext --inplace

$(STAMP): requirements.txt requirements-base.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $(STAMP)

venv: $(STAMP)

# Benchmark/export extras: onnx into .venv, onnxruntime in its own venv (it needs numpy >= 1.24, MXNet < 1.24).
ORT_VENV    := .venv-ort
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP) requirements-bench.txt bench/requirements-ort.txt
	$(PY) -m pip install -q -r requirements-bench.txt
	$(PYTHON) -m venv $(ORT_VENV)
	$(ORT_VENV)/bin/python -m pip install -q --upgrade pip
	$(ORT_VENV)/bin/python -m pip install -q -r bench/requirements-ort.txt
	touch $(BENCH_STAMP)

bench-venv: $(BENCH_STAMP)

test: venv bench-venv
	$(PY) setup.py -q build_ext --inplace
	$(PY) -m pytest -q tests

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
	rm -rf build rcnn/cython/*.so rcnn/cython/*.c rcnn/cython/*.cpp .pytest_cache data/cache data/demo/cache
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) $(ORT_VENV)
