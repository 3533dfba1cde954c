# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Box overlaps with the inclusive-pixel (+1) convention. Numpy twin: ``rcnn.processing.bbox_transform.bbox_overlaps_py``."""
import numpy as np


def bbox_overlaps_cython(const double[:, ::1] boxes, const double[:, ::1] query_boxes):
    """IoU of every box with every query box.

    :param boxes: (N, 4) float64 x1, y1, x2, y2 (inclusive pixels)
    :param query_boxes: (K, 4) float64
    :return: (N, K) float64; 0 where the boxes do not intersect (or a union is not positive)
    """
    cdef Py_ssize_t n = boxes.shape[0], k = query_boxes.shape[0], i, j
    overlaps_np = np.zeros((n, k), dtype=np.float64)
    cdef double[:, ::1] overlaps = overlaps_np
    cdef double iw, ih, box_area, ua
    with nogil:
        for j in range(k):
            box_area = ((query_boxes[j, 2] - query_boxes[j, 0] + 1) *
                        (query_boxes[j, 3] - query_boxes[j, 1] + 1))
            for i in range(n):
                iw = min(boxes[i, 2], query_boxes[j, 2]) - max(boxes[i, 0], query_boxes[j, 0]) + 1
                if iw > 0:
                    ih = min(boxes[i, 3], query_boxes[j, 3]) - max(boxes[i, 1], query_boxes[j, 1]) + 1
                    if ih > 0:
                        ua = ((boxes[i, 2] - boxes[i, 0] + 1) * (boxes[i, 3] - boxes[i, 1] + 1)
                              + box_area - iw * ih)
                        if ua > 0:
                            overlaps[i, j] = iw * ih / ua
    return overlaps_np


def best_overlaps_cython(const double[:, ::1] boxes, const double[:, ::1] query_boxes):
    """For every box the query box of highest IoU and that IoU, without the (N, K) matrix.

    Equal to ``o = bbox_overlaps(boxes, query_boxes); o.argmax(1), o.max(1)``: the IoU is computed with the
    same expression, and ties keep the first query box (0 where a box meets none).

    :return: (argmax (N,) int64, max (N,) float64)
    """
    cdef Py_ssize_t n = boxes.shape[0], k = query_boxes.shape[0], i, j
    best_np = np.zeros(n, dtype=np.int64)
    iou_np = np.zeros(n, dtype=np.float64)
    cdef long long[::1] best = best_np
    cdef double[::1] iou = iou_np
    cdef double iw, ih, box_area, ua, value
    with nogil:
        for j in range(k):
            box_area = ((query_boxes[j, 2] - query_boxes[j, 0] + 1) *
                        (query_boxes[j, 3] - query_boxes[j, 1] + 1))
            for i in range(n):
                iw = min(boxes[i, 2], query_boxes[j, 2]) - max(boxes[i, 0], query_boxes[j, 0]) + 1
                if iw > 0:
                    ih = min(boxes[i, 3], query_boxes[j, 3]) - max(boxes[i, 1], query_boxes[j, 1]) + 1
                    if ih > 0:
                        ua = ((boxes[i, 2] - boxes[i, 0] + 1) * (boxes[i, 3] - boxes[i, 1] + 1)
                              + box_area - iw * ih)
                        if ua > 0:
                            value = iw * ih / ua
                            if value > iou[i]:
                                iou[i] = value
                                best[i] = j
    return best_np, iou_np
