#!/usr/bin/env bash
# One-shot GPU check for a machine with an NVIDIA GPU, a CUDA toolkit (nvcc) and Python 3 with
# numpy, Cython, setuptools and OpenCV. Installs the GPU requirements where it can, builds the kernels,
# runs bench/gpu_check.py and prints one summary table (also written to $OUT/gpu_check.txt or
# bench/gpu_check_result.txt). Finishes in a few minutes.
#
#   bash bench/gpu_check.sh [--prefix ../shared/models/mnet.25] [--images ../shared/images]
#
# MXNet: uses the MXNet already installed (NVIDIA's MXNet container 24.06: 1.9.1 on CUDA 12.4, the route for
# Hopper), else installs mxnet-$MXNET_BUILD==1.9.1 (MXNET_BUILD=cu112, the default, or cu117) with --no-deps from
# $WHEELHOUSE or the package index. The cu1xx builds need the CUDA 11 runtime, cuBLAS 11, cuDNN 8 and NCCL 2
# (requirements-gpu.txt's wheels, or a system install on the library path); the check records which are missing
# instead of failing silently.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
RESULT=${OUT:-bench}/gpu_check.txt
[ -n "${OUT:-}" ] || RESULT=bench/gpu_check_result.txt
START=$(date +%s)
echo "== nvidia-smi"; nvidia-smi || echo "nvidia-smi failed"
echo "== GPU requirements"
BUILD=mxnet-${MXNET_BUILD:-cu112}
case "$BUILD" in mxnet-cu112|mxnet-cu117) ;; *) echo "error: MXNET_BUILD must be cu112 or cu117"; exit 2 ;; esac
if $PY -c "from rcnn.compat import import_mxnet; import_mxnet()" 2>/dev/null; then
    echo "MXNet already installed: $($PY -c 'from rcnn.compat import import_mxnet; m = import_mxnet(); print(m.__version__, m.__file__)')"
elif [ -n "${WHEELHOUSE:-}" ]; then
    $PY -m pip install -q --no-deps --no-index --find-links "$WHEELHOUSE" "$BUILD==1.9.1" || echo "$BUILD install from $WHEELHOUSE failed"
else
    timeout 90 $PY -m pip install -q --no-deps --retries 0 --timeout 10 "$BUILD==1.9.1" || echo "$BUILD install failed (no package index reachable, or no wheel for this Python)"
fi
for pkg in cv2 easydict tqdm; do $PY -c "import $pkg" 2>/dev/null || timeout 30 $PY -m pip install -q --retries 0 --timeout 10 "$pkg" 2>/dev/null || echo "missing python package: $pkg"; done
echo "== build kernels"
$PY setup.py build_ext --inplace 2>&1 | grep -E "setup.py|error|Error" ; ls rcnn/cython/*.so
command -v cuobjdump >/dev/null && cuobjdump --list-elf rcnn/cython/gpu_nms*.so 2>/dev/null | sed 's/.*\(sm_[0-9]*\).*/  SASS: \1/' | sort -u
echo "== checks"
$PY bench/gpu_check.py --out "$RESULT" "$@"
RC=$?
echo "gpu_check finished in $(( $(date +%s) - START )) s, exit $RC; table in $RESULT"
exit $RC
