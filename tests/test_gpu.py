"""GPU NMS: the extension builds and links wherever nvcc is found; equality with cpu_nms needs a GPU."""
import ctypes
import shutil

import numpy as np
import pytest

from rcnn.processing import nms as N


def _gpu_available():
    try:
        cuda = ctypes.CDLL('libcuda.so.1')
    except OSError:
        return False
    count = ctypes.c_int(0)
    return cuda.cuInit(0) == 0 and cuda.cuDeviceGetCount(ctypes.byref(count)) == 0 and count.value > 0


needs_nvcc = pytest.mark.skipif(shutil.which('nvcc') is None, reason='nvcc not on PATH: gpu_nms is not built')
needs_gpu = pytest.mark.skipif(not _gpu_available(), reason='no CUDA GPU on this machine (bench/gpu_check.sh '
                                                            'runs this comparison on a GPU machine)')


@needs_nvcc
def test_gpu_nms_extension_was_built_and_links():
    from rcnn.cython import gpu_nms
    assert callable(gpu_nms.gpu_nms) and N.gpu_nms is gpu_nms.gpu_nms
    assert N.nms_backend(0) == 'gpu' and N.nms_backend(None) == 'cpu' and N.nms_backend(-1) == 'cpu'
    assert gpu_nms.gpu_nms(np.zeros((0, 5), np.float32), 0.4).shape == (0,)  # no CUDA call for empty input


@needs_nvcc
@needs_gpu
def test_gpu_nms_equals_cpu_nms():
    from rcnn.cython.cpu_nms import cpu_nms
    from rcnn.cython.gpu_nms import gpu_nms
    rng = np.random.RandomState(0)
    for n in (1, 63, 64, 65, 1000, 10000):
        xy = rng.uniform(0, 500, (n, 2))
        dets = np.hstack([xy, xy + rng.uniform(1, 80, (n, 2)), rng.rand(n, 1)]).astype(np.float32)
        for thr in (0.3, 0.4, 0.7):
            np.testing.assert_array_equal(gpu_nms(dets, thr, 0), cpu_nms(dets, thr))
