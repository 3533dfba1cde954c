"""Anchor targets for training: labels, box and landmark regression targets and weights per stride."""
import numpy as np

from rcnn.processing.anchors import AnchorCache
from rcnn.processing.bbox_transform import bbox_overlaps, landmark_transform, nonlinear_transform

__all__ = ['AnchorAssigner']
LANDMARK_MISSING = -1.0


class AnchorAssigner:
    """Assigns the anchors of a square training input to ground truth.

    Per anchor: IoU < negative_overlap -> 0 (background); IoU >= positive_overlap -> 1 (face);
    in between -> -1 (ignored); no GT -> all 0. Box targets (``nonlinear_transform``) and landmark
    targets (``landmark_transform``) against the anchor's best GT, weight 1 on face anchors only; a
    landmark point flagged missing gets weight 0 (per point; the original judged all five from point 0).

    :param anchor_cfg: {'stride': {SCALES, BASE_SIZE, RATIOS}} (str keys, as in the config)
    :param strides: strides in graph order, e.g. (32, 16, 8)
    :param image_size: side of the square input, a multiple of the largest stride
    :param landmarks: False for a box-only model (no landmark targets/weights)
    """

    def __init__(self, anchor_cfg, strides, image_size, positive_overlap=0.5, negative_overlap=0.3,
                 bbox_stds=(1.0, 1.0, 1.0, 1.0), landmark_std=1.0, landmarks=True):
        self.landmarks = landmarks
        cfg = {int(s): v for s, v in anchor_cfg.items()}
        cache = AnchorCache(cfg, strides)
        self.strides = tuple(strides)
        self.num_anchors = {s: len(cache.base[s]) for s in strides}
        self.feat = {s: image_size // s for s in strides}
        planes = [cache.get(s, self.feat[s], self.feat[s]) for s in strides]  # (H*W*A, 4), (h, w, a) order
        self.counts = [len(p) for p in planes]
        self.anchors = np.vstack(planes).astype(np.float64)
        self.pos, self.neg = positive_overlap, negative_overlap
        self.bbox_stds = np.asarray(bbox_stds, dtype=np.float64)
        self.landmark_std = landmark_std

    def label_shapes(self, batch):
        """[(name, shape)] of the label arrays for a batch (15, or 9 without landmarks), in graph order."""
        shapes = []
        for s in self.strides:
            A, hw = self.num_anchors[s], self.feat[s] ** 2
            shapes += [('face_label_stride%d' % s, (batch, A * hw)),
                       ('face_bbox_target_stride%d' % s, (batch, 4 * A, hw)),
                       ('face_bbox_weight_stride%d' % s, (batch, 4 * A, hw))]
            if self.landmarks:
                shapes += [('face_landmark_target_stride%d' % s, (batch, 10 * A, hw)),
                           ('face_landmark_weight_stride%d' % s, (batch, 10 * A, hw))]
        return shapes

    def assign(self, boxes, landmarks):
        """One image: boxes (G, 4), landmarks (G, 5, 3) -> {label name: array without the batch axis}."""
        n = len(self.anchors)
        labels = np.full(n, -1.0, dtype=np.float32)
        box_t = np.zeros((n, 4), dtype=np.float32)
        lmk_t = np.zeros((n, 10), dtype=np.float32)
        lmk_w = np.zeros((n, 10), dtype=np.float32)
        if len(boxes) == 0:
            labels[:] = 0
        else:
            overlaps = bbox_overlaps(self.anchors, boxes)          # (N, G)
            best = overlaps.argmax(axis=1)
            best_iou = overlaps[np.arange(n), best]
            labels[best_iou < self.neg] = 0
            labels[best_iou >= self.pos] = 1
            box_t[:] = nonlinear_transform(self.anchors, boxes[best]) / self.bbox_stds
            fg = labels == 1
            if self.landmarks and fg.any():
                matched = landmarks[best[fg]]                    # (F, 5, 3)
                lmk_t[fg] = landmark_transform(self.anchors[fg], matched) / self.landmark_std
                valid = (matched[:, :, 2] != LANDMARK_MISSING).astype(np.float32)  # (F, 5)
                lmk_w[fg] = np.repeat(valid, 2, axis=1)
        box_w = np.repeat((labels == 1).astype(np.float32)[:, None], 4, axis=1)
        out, start = {}, 0
        for s, count in zip(self.strides, self.counts):
            A, f = self.num_anchors[s], self.feat[s]
            sl = slice(start, start + count)
            start += count
            # (h, w, a) anchor order -> the head layouts: label (a, h, w); targets channel a*k + j
            out['face_label_stride%d' % s] = labels[sl].reshape(f, f, A).transpose(2, 0, 1).reshape(-1)
            kinds = [('bbox_target', box_t, 4), ('bbox_weight', box_w, 4)]
            if self.landmarks:
                kinds += [('landmark_target', lmk_t, 10), ('landmark_weight', lmk_w, 10)]
            for name, arr, k in kinds:
                out['face_%s_stride%d' % (name, s)] = arr[sl].reshape(f * f, A * k).T.copy()
        return out
