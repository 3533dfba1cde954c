"""Box and landmark encoding/decoding, IoU and clipping (inclusive-pixel convention).

Every encoder has its decoder next to it; ``decode(anchors, encode(anchors, gt)) == gt`` (up to float
error). Widths are ``x2 - x1 + 1`` and centres ``x1 + 0.5 * (w - 1)`` throughout.
"""
import numpy as np

try:
    from rcnn.cython.bbox import bbox_overlaps_cython, best_overlaps_cython
except ImportError:  # kernels not built
    bbox_overlaps_cython = best_overlaps_cython = None

__all__ = ['bbox_overlaps', 'bbox_overlaps_py', 'best_overlaps', 'nonlinear_transform', 'nonlinear_pred',
           'landmark_transform', 'landmark_pred', 'clip_boxes', 'flip_boxes', 'flip_landmarks',
           'FLIP_ORDER']

# After a horizontal flip the left eye becomes the right eye and the mouth corners swap; nose stays.
FLIP_ORDER = (1, 0, 2, 4, 3)
_EPS = 1e-14  # guards the centre offsets against zero-width anchors (as the original targets do)


def bbox_overlaps_py(boxes, query_boxes):
    """IoU matrix, numpy twin of the Cython kernel.

    :param boxes: (N, 4) x1, y1, x2, y2
    :param query_boxes: (K, 4)
    :return: (N, K) float64; 0 where boxes do not intersect or the union is not positive
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    q = np.asarray(query_boxes, dtype=np.float64).reshape(-1, 4)
    iw = np.minimum(b[:, None, 2], q[None, :, 2]) - np.maximum(b[:, None, 0], q[None, :, 0]) + 1
    ih = np.minimum(b[:, None, 3], q[None, :, 3]) - np.maximum(b[:, None, 1], q[None, :, 1]) + 1
    area_b = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    area_q = (q[:, 2] - q[:, 0] + 1) * (q[:, 3] - q[:, 1] + 1)
    inter = iw * ih
    union = area_b[:, None] + area_q[None, :] - inter
    valid = (iw > 0) & (ih > 0) & (union > 0)
    out = np.zeros(inter.shape, dtype=np.float64)
    np.divide(inter, union, out=out, where=valid)
    return out


def bbox_overlaps(boxes, query_boxes):
    """(N, 4) x (K, 4) -> (N, K) float64 IoU; the Cython kernel when built."""
    b = np.ascontiguousarray(np.asarray(boxes, dtype=np.float64).reshape(-1, 4))
    q = np.ascontiguousarray(np.asarray(query_boxes, dtype=np.float64).reshape(-1, 4))
    if bbox_overlaps_cython is not None:
        return bbox_overlaps_cython(b, q)
    return bbox_overlaps_py(b, q)


def best_overlaps(boxes, query_boxes):
    """(argmax (N,) int64, max (N,) float64) of the IoU of every box over the query boxes: equal to the argmax
    and max of ``bbox_overlaps`` (first query box on ties), without the (N, K) matrix when the kernels are built."""
    b = np.ascontiguousarray(np.asarray(boxes, dtype=np.float64).reshape(-1, 4))
    q = np.ascontiguousarray(np.asarray(query_boxes, dtype=np.float64).reshape(-1, 4))
    if best_overlaps_cython is not None:
        return best_overlaps_cython(b, q)
    overlaps = bbox_overlaps_py(b, q)
    best = overlaps.argmax(axis=1)
    return best, overlaps[np.arange(len(b)), best]


def _centres(boxes):
    w = boxes[:, 2] - boxes[:, 0] + 1.0
    h = boxes[:, 3] - boxes[:, 1] + 1.0
    return w, h, boxes[:, 0] + 0.5 * (w - 1.0), boxes[:, 1] + 0.5 * (h - 1.0)


def nonlinear_transform(ex_rois, gt_rois):
    """Regression targets of gt boxes w.r.t. anchors.

    :param ex_rois: (N, 4) anchors
    :param gt_rois: (N, 4) matched ground truth
    :return: (N, 4) float dx = (gcx - acx) / (aw + eps), dy likewise, dw = ln(gw / aw), dh = ln(gh / ah)
    """
    ex_rois = np.asarray(ex_rois, dtype=np.float64)
    gt_rois = np.asarray(gt_rois, dtype=np.float64)
    aw, ah, ax, ay = _centres(ex_rois)
    gw, gh, gx, gy = _centres(gt_rois)
    return np.stack(((gx - ax) / (aw + _EPS), (gy - ay) / (ah + _EPS),
                     np.log(gw / aw), np.log(gh / ah)), axis=1)


def nonlinear_pred(boxes, box_deltas):
    """Decode regression deltas into boxes (inverse of ``nonlinear_transform``).

    :param boxes: (N, 4) anchors
    :param box_deltas: (N, 4) dx, dy, dw, dh
    :return: (N, 4) float64 x1, y1, x2, y2 of the predicted boxes
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    d = np.asarray(box_deltas, dtype=np.float64).reshape(-1, 4)
    w, h, cx, cy = _centres(boxes)
    pcx = d[:, 0] * w + cx
    pcy = d[:, 1] * h + cy
    pw = np.exp(d[:, 2]) * w
    ph = np.exp(d[:, 3]) * h
    return np.stack((pcx - 0.5 * (pw - 1.0), pcy - 0.5 * (ph - 1.0),
                     pcx + 0.5 * (pw - 1.0), pcy + 0.5 * (ph - 1.0)), axis=1)


def landmark_transform(ex_rois, gt_landmarks):
    """Landmark targets w.r.t. anchors.

    :param ex_rois: (N, 4) anchors
    :param gt_landmarks: (N, 5, 2) or (N, 5, 3) (x, y[, flag]); the flag is ignored
    :return: (N, 10) float p0x, p0y, p1x, ..., p4y with p_x = (x - acx) / (aw + eps), p_y likewise
    """
    ex_rois = np.asarray(ex_rois, dtype=np.float64)
    pts = np.asarray(gt_landmarks, dtype=np.float64)[:, :, :2]
    aw, ah, ax, ay = _centres(ex_rois)
    dx = (pts[:, :, 0] - ax[:, None]) / (aw[:, None] + _EPS)
    dy = (pts[:, :, 1] - ay[:, None]) / (ah[:, None] + _EPS)
    return np.stack((dx, dy), axis=2).reshape(-1, 10)


def landmark_pred(boxes, landmark_deltas):
    """Decode landmark deltas (inverse of ``landmark_transform``).

    :param boxes: (N, 4) anchors
    :param landmark_deltas: (N, 5, 2) or (N, 10)
    :return: (N, 5, 2) float64 points x = d_x * aw + acx, y = d_y * ah + acy
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    d = np.asarray(landmark_deltas, dtype=np.float64).reshape(-1, 5, 2)
    w, h, cx, cy = _centres(boxes)
    return np.stack((d[:, :, 0] * w[:, None] + cx[:, None],
                     d[:, :, 1] * h[:, None] + cy[:, None]), axis=2)


def clip_boxes(boxes, im_shape):
    """Clip (N, 4k) boxes in place-free fashion to [0, W-1] x [0, H-1]; im_shape = (H, W, ...)."""
    boxes = np.array(boxes, copy=True)
    h, w = im_shape[0], im_shape[1]
    boxes[:, 0::4] = np.clip(boxes[:, 0::4], 0, w - 1)
    boxes[:, 1::4] = np.clip(boxes[:, 1::4], 0, h - 1)
    boxes[:, 2::4] = np.clip(boxes[:, 2::4], 0, w - 1)
    boxes[:, 3::4] = np.clip(boxes[:, 3::4], 0, h - 1)
    return boxes


def flip_boxes(boxes, width):
    """Mirror (N, 4) boxes in an image of the given width: x1' = W - x2 - 1, x2' = W - x1 - 1."""
    out = np.array(boxes, copy=True)
    out[:, 0] = width - boxes[:, 2] - 1
    out[:, 2] = width - boxes[:, 0] - 1
    return out


def flip_landmarks(landmarks, width):
    """Mirror (N, 5, 2|3) landmarks: x' = W - x - 1 and points reordered by FLIP_ORDER (flags travel)."""
    out = np.array(landmarks, copy=True)[:, FLIP_ORDER, :]
    out[:, :, 0] = width - out[:, :, 0] - 1
    return out
