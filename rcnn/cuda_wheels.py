"""Make the CUDA 11 libraries of requirements-gpu.txt's ``nvidia-*-cu11`` wheels visible to ``mxnet-cu112``.

``mxnet-cu112`` links against libcudart.so.11.0, cuBLAS 11, cuDNN 8, cuFFT 10, cuRAND 10, cuSOLVER 11,
NVRTC 11.2, NVTX and NCCL 2 by name; ``mxnet-cu117`` against the same and cuSPARSE 11. pip puts those libraries under ``site-packages/nvidia/<package>/lib``, where
the dynamic linker does not look; loading them here by full path (RTLD_GLOBAL) before MXNet is imported
satisfies libmxnet.so's dependencies, so a machine with only the NVIDIA driver needs nothing else.

Called by ``rcnn.compat.import_mxnet`` just before MXNet is imported. Does nothing with the
CPU wheel, when MXNet is already imported, or when the wheels are absent (a system CUDA 11 install then
serves, through LD_LIBRARY_PATH as before). ``python rcnn/cuda_wheels.py`` (run as a file, so it works even
without a driver) prints the library folders (for ``LD_LIBRARY_PATH=... ldd libmxnet.so``) and what it would
load.
"""
import ctypes
import functools
import glob
import importlib.metadata
import os
import sys

# (wheel folder under site-packages/nvidia, library) in dependency order
LIBRARIES = [
    ('cuda_runtime', 'libcudart.so.11.0'),
    ('cublas', 'libcublasLt.so.11'),
    ('cublas', 'libcublas.so.11'),
    ('cufft', 'libcufft.so.10'),
    ('curand', 'libcurand.so.10'),
    ('cusparse', 'libcusparse.so.11'),  # mxnet-cu117 (cu112 does not link it)
    ('cusolver', 'libcusolver.so.11'),
    ('cuda_nvrtc', 'libnvrtc.so.11.2'),
    ('nvtx', 'libnvToolsExt.so.1'),
    ('nccl', 'libnccl.so.2'),
    ('cudnn', 'libcudnn.so.8'),
]
DRIVER = 'libcuda.so.1'
_loaded = []


class CudaSetupError(ImportError):
    """The CUDA build of MXNet is installed but cannot be loaded on this machine."""


@functools.lru_cache(maxsize=None)
def cuda_mxnet():
    """Name of the installed CUDA build of MXNet (e.g. 'mxnet-cu112'), or None."""
    for dist in importlib.metadata.distributions():
        name = (dist.metadata['Name'] or '').lower()
        if name.startswith('mxnet-cu'):
            return name
    return None


def wheel_library(package, library):
    """Full path of a library of an nvidia-* wheel on sys.path, or None."""
    for entry in sys.path:
        path = os.path.join(entry or '.', 'nvidia', package, 'lib', library)
        if os.path.isfile(path):
            return path
    return None


def library_dirs():
    return sorted({os.path.dirname(p) for p in (wheel_library(*spec) for spec in LIBRARIES) if p})


def preload():
    """Load the wheels' libraries (once) when the CUDA build of MXNet is installed and not yet imported."""
    if _loaded or 'mxnet' in sys.modules:
        return list(_loaded)
    build = cuda_mxnet()
    if build is None:
        return []
    found = [(spec, wheel_library(*spec)) for spec in LIBRARIES]
    if not any(path for _, path in found):
        return []  # no wheels: rely on a system CUDA install (LD_LIBRARY_PATH)
    missing = [lib for (pkg, lib), path in found if path is None]
    if missing:
        raise CudaSetupError('%s: the CUDA wheels are only partly installed (missing %s); run '
                             '`pip install -r requirements-gpu.txt`' % (build, ', '.join(missing)))
    try:
        ctypes.CDLL(DRIVER, mode=ctypes.RTLD_GLOBAL)
    except OSError:
        raise CudaSetupError('%s needs the NVIDIA driver library %s, which this machine does not have: install '
                             'the NVIDIA driver (>= 450.80.02 for CUDA 11), or use the CPU build '
                             '(`pip install -r requirements.txt`)' % (build, DRIVER)) from None
    for (_, lib), path in found:
        try:
            ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
        except OSError as err:
            raise CudaSetupError('%s: cannot load %s: %s' % (build, path, err)) from None
        _loaded.append(path)
    return list(_loaded)


def main():
    build = cuda_mxnet()
    print('MXNet build: %s' % (build or 'CPU (nothing to load)'))
    for package, lib in LIBRARIES:
        print('  %-22s %s' % (lib, wheel_library(package, lib) or 'not installed'))
    print('LD_LIBRARY_PATH for ldd: %s' % ':'.join(library_dirs()))
    cudnn = glob.glob(os.path.join(os.path.dirname(wheel_library('cudnn', 'libcudnn.so.8') or ''), 'libcudnn_*.so.8'))
    if cudnn:
        print('cuDNN sub-libraries (found by libcudnn.so.8 through its $ORIGIN runpath): %d' % len(cudnn))


if __name__ == '__main__':
    main()
