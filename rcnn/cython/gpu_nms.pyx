# cython: language_level=3
# distutils: language = c++
"""Greedy NMS on a CUDA device (kernel in nms_kernel.cu).

Rule (identical to ``cpu_nms``): boxes visited by descending score; a box is suppressed when its IoU
(+1 pixel widths, float32) with an already kept box is >= ``thresh``.
"""
import numpy as np

cdef extern from "gpu_nms.hpp":
    int gpu_nms_sorted(const float* boxes, int n, float thresh, int device_id, int* keep_out,
                       char* errbuf, int errlen) nogil


def gpu_nms(dets, float thresh, int device_id=0):
    """:param dets: (N, >=5) x1, y1, x2, y2, score
    :return: (K,) int64 indices of kept rows, by descending score
    """
    d = np.asarray(dets, dtype=np.float32)
    cdef int n = d.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(-d[:, 4], kind='stable')
    cdef float[:, ::1] sorted_dets = np.ascontiguousarray(d[order, :5])
    keep_np = np.zeros(n, dtype=np.int32)
    cdef int[::1] keep = keep_np
    cdef char errbuf[256]
    cdef int num
    with nogil:
        num = gpu_nms_sorted(&sorted_dets[0, 0], n, thresh, device_id, &keep[0], errbuf, 256)
    if num < 0:
        raise RuntimeError('gpu_nms: CUDA error: %s' % errbuf.decode(errors='replace'))
    return order[keep_np[:num]].astype(np.int64)
