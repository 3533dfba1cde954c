"""Head outputs of one FPN level -> candidate boxes, scores and landmarks (pure numpy).

The detector calls this for every level, scale and flip of an image; tests call it directly with head
maps they build, so that training targets can be checked against exactly what inference decodes.
"""
import numpy as np

from rcnn.processing.bbox_transform import clip_boxes, landmark_pred, nonlinear_pred

__all__ = ['decode_level']


def decode_level(cls_prob, bbox_deltas, anchors, threshold, size, landmark_deltas=None, score_mult=1.0):
    """Candidates of one image at one stride.

    :param cls_prob: (2A, H, W) softmax output, background planes first (channels 0..A-1), faces A..2A-1
    :param bbox_deltas: (4A, H, W) dx, dy, dw, dh per anchor (channel a*4 + k)
    :param anchors: (H*W*A, 4) anchor plane in (i, j, a) order (``AnchorCache.get``)
    :param threshold: minimum face probability (after ``score_mult``)
    :param size: (height, width) of the network input before padding: boxes are clipped to it
    :param landmark_deltas: (10A, H, W) or None
    :param score_mult: multiplier of the face probability (the original's ``decay4`` on stride 4)
    :return: None when nothing passes, else (boxes (K, 4) float64, scores (K,), landmarks (K, 5, 2) or None)
    """
    A = cls_prob.shape[0] // 2
    prob = cls_prob[A:].transpose(1, 2, 0).reshape(-1)  # (A, H, W) -> (H*W*A,) in anchor order (i, j, a)
    if score_mult != 1.0:
        prob = prob * score_mult
    keep = np.where(prob >= threshold)[0]
    if keep.size == 0:
        return None
    anchors = anchors[keep]
    deltas = bbox_deltas.transpose(1, 2, 0).reshape(-1, 4)[keep]  # (4A, H, W) -> (H*W*A, 4)
    boxes = clip_boxes(nonlinear_pred(anchors, deltas), size)
    points = None
    if landmark_deltas is not None:
        points = landmark_pred(anchors, landmark_deltas.transpose(1, 2, 0).reshape(-1, 5, 2)[keep])
    return boxes, prob[keep], points
