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
    d = np.asarray(dets, dtype=np.float32)
    cdef Py_ssize_t n = d.shape[0]
    order_np = np.argsort(-d[:, 4], kind='stable').astype(np.intp)
    # coordinates in score order, contiguous: the inner loop reads memory sequentially
    s = np.ascontiguousarray(d[order_np, :4].T)
    cdef const float[::1] x1 = s[0], y1 = s[1], x2 = s[2], y2 = s[3]
    areas_np = ((s[2] - s[0] + 1) * (s[3] - s[1] + 1)).astype(np.float32)
    cdef const float[::1] areas = areas_np
    remaining_np = np.arange(n, dtype=np.intp)   # positions (in score order) not yet suppressed
    cdef Py_ssize_t[::1] remaining = remaining_np
    keep_np = np.empty(n, dtype=np.int64)
    cdef long long[::1] keep = keep_np
    cdef const Py_ssize_t[::1] order = order_np
    cdef Py_ssize_t count = n, nkeep = 0, t, j, i, new_count
    cdef float ix1, iy1, ix2, iy2, iarea, w, h, inter, ovr
    # With thresh > 0 a pair without overlap (IoU 0, or NaN for empty unions) never suppresses: skip it early.
    cdef bint positive = thresh > 0
    with nogil:
        while count > 0:
            i = remaining[0]
            keep[nkeep] = order[i]
            nkeep += 1
            ix1 = x1[i]
            iy1 = y1[i]
            ix2 = x2[i]
            iy2 = y2[i]
            iarea = areas[i]
            new_count = 0
            for t in range(1, count):
                j = remaining[t]
                w = max(<float>0.0, min(ix2, x2[j]) - max(ix1, x1[j]) + 1)
                if positive and w == 0:
                    remaining[new_count] = j
                    new_count += 1
                    continue
                h = max(<float>0.0, min(iy2, y2[j]) - max(iy1, y1[j]) + 1)
                inter = w * h
                ovr = inter / (iarea + areas[j] - inter)
                if not (ovr >= thresh):
                    remaining[new_count] = j
                    new_count += 1
            count = new_count
    return keep_np[:nkeep]
