# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Greedy NMS on the CPU. Numpy twin: ``rcnn.processing.nms.py_nms``.

Rule: boxes are visited by descending score; a box is suppressed when its IoU (+1 pixel widths,
float32 arithmetic) with an already kept box is >= ``thresh``.
"""
import numpy as np


def cpu_nms(dets, float thresh):
    """:param dets: (N, >=5) x1, y1, x2, y2, score (any float dtype; computed in float32)
    :return: (K,) int64 indices of kept rows, by descending score
    """
    d = np.ascontiguousarray(dets[:, :5], dtype=np.float32)
    cdef Py_ssize_t n = d.shape[0]
    order_np = np.argsort(-d[:, 4], kind='stable').astype(np.intp)
    keep_np = np.empty(n, dtype=np.int64)
    areas_np = ((d[:, 2] - d[:, 0] + 1) * (d[:, 3] - d[:, 1] + 1)).astype(np.float32)
    suppressed_np = np.zeros(n, dtype=np.uint8)
    cdef const float[:, ::1] b = d
    cdef const Py_ssize_t[::1] order = order_np
    cdef const float[::1] areas = areas_np
    cdef unsigned char[::1] suppressed = suppressed_np
    cdef long long[::1] keep = keep_np
    cdef Py_ssize_t _i, _j, i, j, nkeep = 0
    cdef float ix1, iy1, ix2, iy2, iarea, w, h, inter, ovr
    with nogil:
        for _i in range(n):
            i = order[_i]
            if suppressed[i]:
                continue
            keep[nkeep] = i
            nkeep += 1
            ix1 = b[i, 0]
            iy1 = b[i, 1]
            ix2 = b[i, 2]
            iy2 = b[i, 3]
            iarea = areas[i]
            for _j in range(_i + 1, n):
                j = order[_j]
                if suppressed[j]:
                    continue
                w = max(<float>0.0, min(ix2, b[j, 2]) - max(ix1, b[j, 0]) + 1)
                h = max(<float>0.0, min(iy2, b[j, 3]) - max(iy1, b[j, 1]) + 1)
                inter = w * h
                ovr = inter / (iarea + areas[j] - inter)
                if ovr >= thresh:
                    suppressed[j] = 1
    return keep_np[:nkeep]
