# cython: language_level=3, boundscheck=False, wraparound=False
"""Anchor planes. Numpy twin: ``rcnn.processing.anchors.anchors_plane_py``."""
import numpy as np


def anchors_cython(int height, int width, int stride, const float[:, ::1] base_anchors):
    """Shift the A base anchors over every cell of an (height, width) feature map.

    :param base_anchors: (A, 4) float32 anchors of cell (0, 0)
    :return: (height, width, A, 4) float32; cell (i, j) = base + (j*stride, i*stride, j*stride, i*stride);
             row-major, A fastest
    """
    cdef Py_ssize_t A = base_anchors.shape[0], i, j, a
    out_np = np.empty((height, width, A, 4), dtype=np.float32)
    cdef float[:, :, :, ::1] out = out_np
    cdef float sx, sy
    with nogil:
        for i in range(height):
            sy = i * stride
            for j in range(width):
                sx = j * stride
                for a in range(A):
                    out[i, j, a, 0] = base_anchors[a, 0] + sx
                    out[i, j, a, 1] = base_anchors[a, 1] + sy
                    out[i, j, a, 2] = base_anchors[a, 2] + sx
                    out[i, j, a, 3] = base_anchors[a, 3] + sy
    return out_np
