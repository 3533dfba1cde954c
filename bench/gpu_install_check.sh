#!/usr/bin/env bash
# What of the one-command GPU install can be checked on a machine without a GPU or NVIDIA driver:
#   bash bench/gpu_install_check.sh [cu112|cu117] [VENV]   (default cu112, VENV /tmp/retinaface-gpu-<build>; ~3.7 GB)
# 1. `pip install -r requirements-gpu.txt` (cu117: requirements-gpu-cu117.txt), then `pip install --no-deps
#    mxnet-<build>==1.9.1`, into a fresh venv;
# 2. `ldd libmxnet.so` with the wheels' folders: every CUDA 11 library resolves through them (only the driver's
#    libcuda.so.1 is left, which the NVIDIA driver provides);
# 3. without a driver, importing MXNet (what loading an MXNet model does) stops with the loader's message naming
#    libcuda.so.1;
# 4. with a stand-in driver (a stub libcuda.so.1 whose every call answers CUDA_ERROR_NO_DEVICE, built here from the
#    cu* symbols libmxnet.so imports; it only imitates "driver installed, no GPU"), `import mxnet` works through
#    the loader alone, and RetinaFace(ctx_id=0) fails with the detector's clear no-GPU message.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-cu112}
case "$BUILD" in
    cu112) REQS=requirements-gpu.txt ;;
    cu117) REQS=requirements-gpu-cu117.txt ;;
    *) echo "error: build must be cu112 or cu117, got $BUILD"; exit 2 ;;
esac
VENV=${2:-/tmp/retinaface-gpu-$BUILD}
PY=$VENV/bin/python
if [ ! -x "$PY" ]; then python3 -m venv "$VENV"; fi
"$PY" -m pip install -q -r "$ROOT/$REQS" 2>&1 | grep -v "^WARNING: Location" || true
"$PY" -m pip install -q --no-deps "mxnet-$BUILD==1.9.1" 2>&1 | grep -v "^WARNING: Location" || true
SITE=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
LIB=$SITE/mxnet/libmxnet.so
cd "$ROOT"

echo "== 1. installed"
"$PY" -m pip list 2>/dev/null | grep -iE "^(mxnet|nvidia)" | sed 's/^/   /'

echo "== 2. ldd libmxnet.so through the wheels' library folders"
DIRS=$("$PY" rcnn/cuda_wheels.py | sed -n 's/^LD_LIBRARY_PATH for ldd: //p')
LD_LIBRARY_PATH=$DIRS ldd "$LIB" | grep -E "cuda|cublas|cudnn|cufft|curand|cusolver|nvrtc|nvToolsExt|nccl" | sed 's/^/   /'
UNRESOLVED=$(LD_LIBRARY_PATH=$DIRS ldd "$LIB" | grep "not found" | awk '{print $1}' | tr '\n' ' ')
echo "   not found: ${UNRESOLVED:-none}"
if [ "$UNRESOLVED" != "libcuda.so.1 " ]; then echo "FAIL: expected only the driver's libcuda.so.1 to be missing"; exit 1; fi

echo "== 3. no NVIDIA driver: import mxnet through rcnn.compat"
if "$PY" -c "import retinaface; from rcnn.compat import import_mxnet; import_mxnet()" 2> /tmp/gpu_check_import.err; then
    echo "FAIL: imported without a driver"; exit 1; fi
tail -1 /tmp/gpu_check_import.err | sed 's/^/   /'
grep -q "libcuda.so.1" /tmp/gpu_check_import.err

echo "== 4. stand-in driver (every call: CUDA_ERROR_NO_DEVICE)"
STUB=$(mktemp -d)
{
  echo '/* stand-in for the NVIDIA driver: no device */'
  for sym in $(nm -D --undefined-only "$LIB" | awk '$2 ~ /^cu[A-Z]/ {print $2}' | sed 's/@.*//' | sort -u) \
             cuInit cuDriverGetVersion cuGetProcAddress cuDeviceGetCount; do
    echo "int $sym(void) { return 100; }"
  done
} | sort -u > "$STUB/cuda_stub.c"
gcc -shared -fPIC -o "$STUB/libcuda.so.1" -Wl,-soname,libcuda.so.1 "$STUB/cuda_stub.c"
LD_LIBRARY_PATH=$STUB "$PY" - <<'EOF'
import rcnn.cuda_wheels as cw
import retinaface
from rcnn.compat import import_mxnet
mx = import_mxnet()  # restores numpy's names, loads the CUDA wheels' libraries, then imports mxnet
print('   import mxnet: ok, version %s, CUDA build: %s, libraries preloaded: %d'
      % (mx.__version__, mx.runtime.Features().is_enabled('CUDA'), len(cw._loaded)))
try:
    retinaface.RetinaFace('../shared/models/mnet.25', 0, ctx_id=0)
except ValueError as err:
    print('   RetinaFace(ctx_id=0): %s: %s' % (type(err).__name__, err))
else:
    raise SystemExit('FAIL: RetinaFace(ctx_id=0) did not refuse')
EOF
rm -rf "$STUB"
echo "gpu install check ($BUILD): OK"
