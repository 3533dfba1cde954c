"""Non-maximum suppression and box voting.

One entry point, ``nms(dets, thresh, device_id=None)``, picks the fastest available implementation:
the CUDA kernel when a GPU id is given and ``gpu_nms`` was built, else the Cython CPU kernel, else numpy.
All three apply the same rule: boxes are visited by descending score and a box is suppressed when its
IoU (+1 pixel widths, float32) with an already kept box is >= ``thresh``.
"""
import logging

import numpy as np

try:
    from rcnn.cython.cpu_nms import cpu_nms
except ImportError:
    cpu_nms = None
try:
    from rcnn.cython.gpu_nms import gpu_nms
except ImportError:  # built only where CUDA was found
    gpu_nms = None

__all__ = ['nms', 'py_nms', 'bbox_vote', 'nms_backend', 'VOTE_MAX_OUTPUTS']
logger = logging.getLogger(__name__)
VOTE_MAX_OUTPUTS = 750  # box voting stops after this many output boxes (as the original)


def py_nms(dets, thresh):
    """Numpy twin of the kernels. dets (N, >=5) -> (K,) int64 kept indices, by descending score."""
    d = np.asarray(dets, dtype=np.float32)
    if d.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    x1, y1, x2, y2, scores = d[:, 0], d[:, 1], d[:, 2], d[:, 3], d[:, 4]
    areas = (x2 - x1 + np.float32(1)) * (y2 - y1 + np.float32(1))
    order = np.argsort(-scores, kind='stable')
    suppressed = np.zeros(d.shape[0], dtype=bool)
    keep = []
    thresh = np.float32(thresh)
    with np.errstate(divide='ignore', invalid='ignore'):
        for pos, i in enumerate(order):
            if suppressed[i]:
                continue
            keep.append(i)
            rest = order[pos + 1:]
            rest = rest[~suppressed[rest]]
            if rest.size == 0:
                continue
            w = np.maximum(np.float32(0), np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + np.float32(1))
            h = np.maximum(np.float32(0), np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + np.float32(1))
            inter = w * h
            ovr = inter / (areas[i] + areas[rest] - inter)
            suppressed[rest[ovr >= thresh]] = True
    return np.asarray(keep, dtype=np.int64)


def nms_backend(device_id=None):
    """Name of the implementation ``nms`` uses: 'gpu', 'cpu' (Cython) or 'numpy'."""
    if device_id is not None and device_id >= 0 and gpu_nms is not None:
        return 'gpu'
    return 'cpu' if cpu_nms is not None else 'numpy'


def nms(dets, thresh, device_id=None):
    """Greedy NMS. dets (N, >=5) x1, y1, x2, y2, score -> (K,) int64 kept row indices, best first.

    :param device_id: a CUDA device id (>= 0) to use the GPU kernel when built; None/-1 = CPU
    """
    dets = np.asarray(dets)
    if dets.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    backend = nms_backend(device_id)
    if backend == 'gpu':
        return gpu_nms(dets, thresh, device_id)
    if backend == 'cpu':
        return cpu_nms(np.ascontiguousarray(dets, dtype=np.float32), thresh)
    return py_nms(dets, thresh)


def bbox_vote(det, thresh, max_outputs=VOTE_MAX_OUTPUTS):
    """Box voting (the test-time alternative to NMS of the multi-scale WIDER mode).

    :param det: (N, 5) x1, y1, x2, y2, score, sorted by descending score
    :param thresh: IoU (+1 widths) at or above which a box joins the current top box's group
    :return: (M, 5) float64; each group of >= 2 boxes becomes its score-weighted mean box with the
             group's maximum score; a group of one box is dropped unless it is the very last candidate.
    """
    det = np.asarray(det, dtype=np.float64)
    out = []
    while det.shape[0] > 0 and len(out) < max_outputs:
        top = det[0]
        w = np.maximum(0.0, np.minimum(top[2], det[:, 2]) - np.maximum(top[0], det[:, 0]) + 1)
        h = np.maximum(0.0, np.minimum(top[3], det[:, 3]) - np.maximum(top[1], det[:, 1]) + 1)
        inter = w * h
        area = (det[:, 2] - det[:, 0] + 1) * (det[:, 3] - det[:, 1] + 1)
        iou = inter / (area[0] + area - inter)
        in_group = iou >= thresh
        group, det = det[in_group], det[~in_group]
        if group.shape[0] <= 1:
            if det.shape[0] == 0:  # the very last candidate is kept as is
                out.append(group[0])
            continue
        weights = group[:, 4:5]
        box = (group[:, :4] * weights).sum(axis=0) / weights.sum()
        out.append(np.concatenate((box, [group[:, 4].max()])))
    if not out:
        return np.zeros((0, 5), dtype=np.float64)
    return np.vstack(out)[:max_outputs]
