#!/usr/bin/env bash
# One-shot GPU check for a machine with an NVIDIA GPU, a CUDA toolkit (nvcc) and Python 3 with
# numpy, Cython, setuptools and OpenCV. Installs the GPU requirements where it can, builds the kernels,
# runs bench/gpu_check.py and prints one summary table (also written to $OUT/gpu_check.txt or
# bench/gpu_check_result.txt). Finishes in a few minutes.
#
#   bash bench/gpu_check.sh [--prefix ../shared/models/mnet.25] [--images ../shared/images]
#
# MXNet: installs mxnet-cu112==1.9.1 (the CUDA build of our pinned MXNet) from $WHEELHOUSE or the
# package index. That build needs the CUDA 11.2 runtime, cuBLAS 11, cuDNN 8 and NCCL 2 on the library
# path; the check records which are missing instead of failing silently.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
RESULT=${OUT:-bench}/gpu_check.txt
[ -n "${OUT:-}" ] || RESULT=bench/gpu_check_result.txt
START=$(date +%s)
echo "== nvidia-smi"; nvidia-smi || echo "nvidia-smi failed"
echo "== GPU requirements"
if ! $PY -c "import mxnet" 2>/dev/null; then
    if [ -n "${WHEELHOUSE:-}" ]; then
        $PY -m pip install -q --no-index --find-links "$WHEELHOUSE" mxnet-cu112==1.9.1 || echo "mxnet-cu112 install from $WHEELHOUSE failed"
    else
        timeout 90 $PY -m pip install -q --retries 0 --timeout 10 mxnet-cu112==1.9.1 || echo "mxnet-cu112 install failed (no package index reachable, or no wheel for this Python)"
    fi
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
