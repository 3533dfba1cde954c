# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Box overlaps with the inclusive-pixel (+1) convention. Numpy twin: ``rcnn.processing.bbox_transform.bbox_overlaps_py``."""
import numpy as np


cdef inline double _iou(const double[:, ::1] boxes, Py_ssize_t i, const double[:, ::1] query_boxes, Py_ssize_t j,
                        double box_area) nogil:
    """IoU of boxes[i] and query_boxes[j] (box_area: the query box's); 0 where they do not intersect."""
    cdef double iw, ih, ua
    iw = min(boxes[i, 2], query_boxes[j, 2]) - max(boxes[i, 0], query_boxes[j, 0]) + 1
    if iw > 0:
        ih = min(boxes[i, 3], query_boxes[j, 3]) - max(boxes[i, 1], query_boxes[j, 1]) + 1
        if ih > 0:
            ua = (boxes[i, 2] - boxes[i, 0] + 1) * (boxes[i, 3] - boxes[i, 1] + 1) + box_area - iw * ih
            if ua > 0:
                return iw * ih / ua
    return 0.0


def bbox_overlaps_cython(const double[:, ::1] boxes, const double[:, ::1] query_boxes):
    """IoU of every box with every query box.

    :param boxes: (N, 4) float64 x1, y1, x2, y2 (inclusive pixels)
    :param query_boxes: (K, 4) float64
    :return: (N, K) float64; 0 where the boxes do not intersect (or a union is not positive)
    """
    cdef Py_ssize_t n = boxes.shape[0], k = query_boxes.shape[0], i, j
    overlaps_np = np.zeros((n, k), dtype=np.float64)
    cdef double[:, ::1] overlaps = overlaps_np
    cdef double box_area
    with nogil:
        for j in range(k):
            box_area = ((query_boxes[j, 2] - query_boxes[j, 0] + 1) *
                        (query_boxes[j, 3] - query_boxes[j, 1] + 1))
            for i in range(n):
                overlaps[i, j] = _iou(boxes, i, query_boxes, j, box_area)
    return overlaps_np


def best_overlaps_cython(const double[:, ::1] boxes, const double[:, ::1] query_boxes):
    """For every box the query box of highest IoU and that IoU, without the (N, K) matrix.

    Equal to ``o = bbox_overlaps(boxes, query_boxes); o.argmax(1), o.max(1)``: the IoU is computed by the
    same function, and ties keep the first query box (0 where a box meets none).

    :return: (argmax (N,) int64, max (N,) float64)
    """
    cdef Py_ssize_t n = boxes.shape[0], k = query_boxes.shape[0], i, j
    best_np = np.zeros(n, dtype=np.int64)
    iou_np = np.zeros(n, dtype=np.float64)
    cdef long long[::1] best = best_np
    cdef double[::1] iou = iou_np
    cdef double box_area, value
    with nogil:
        for j in range(k):
            box_area = ((query_boxes[j, 2] - query_boxes[j, 0] + 1) *
                        (query_boxes[j, 3] - query_boxes[j, 1] + 1))
            for i in range(n):
                value = _iou(boxes, i, query_boxes, j, box_area)
                if value > iou[i]:
                    iou[i] = value
                    best[i] = j
    return best_np, iou_np
