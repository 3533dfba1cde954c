"""Anchor targets for training: labels, box and landmark regression targets and weights per stride."""
import numpy as np

from rcnn.processing.anchors import AnchorCache
from rcnn.processing.bbox_transform import best_overlaps, landmark_transform, nonlinear_transform
from rcnn.names import label_name

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
        # the same anchors in the label layout of each level, (a, h, w): targets are computed in that order, so
        # each level's label is a contiguous slice and each target coordinate one strided copy
        self._ordered = np.vstack([p.reshape(self.feat[s] ** 2, self.num_anchors[s], 4).transpose(1, 0, 2)
                                   .reshape(-1, 4) for s, p in zip(strides, planes)]).astype(np.float64)
        self.pos, self.neg = positive_overlap, negative_overlap
        self.bbox_stds = np.asarray(bbox_stds, dtype=np.float64)
        self.landmark_std = landmark_std

    def label_shapes(self, batch):
        """[(name, shape)] of the label arrays for a batch (15, or 9 without landmarks), in graph order."""
        shapes = []
        for s in self.strides:
            A, hw = self.num_anchors[s], self.feat[s] ** 2
            shapes += [(label_name('label', s), (batch, A * hw)),
                       (label_name('bbox_target', s), (batch, 4 * A, hw)),
                       (label_name('bbox_weight', s), (batch, 4 * A, hw))]
            if self.landmarks:
                shapes += [(label_name('landmark_target', s), (batch, 10 * A, hw)),
                           (label_name('landmark_weight', s), (batch, 10 * A, hw))]
        return shapes

    def empty_labels(self, batch):
        """{label name: zeros (batch, ...) float32} in the shapes of ``label_shapes``."""
        return {n: np.zeros(shape, dtype=np.float32) for n, shape in self.label_shapes(batch)}

    def assign(self, boxes, landmarks):
        """One image: boxes (G, 4), landmarks (G, 5, 3) -> {label name: array without the batch axis}."""
        out = self.empty_labels(1)
        self.assign_into(out, 0, boxes, landmarks)
        return {k: v[0] for k, v in out.items()}

    def assign_into(self, out, b, boxes, landmarks):
        """Write the targets of one image into row `b` of the batch arrays `out` (``empty_labels``' layout).

        The best ground truth of every anchor comes from one pass over the boxes (``best_overlaps``, no
        anchors x faces matrix); targets are computed in the label layout and written with one strided copy
        per level and coordinate, no per-anchor Python. Every value equals the per-anchor definition above.
        """
        anchors = self._ordered
        n = len(anchors)
        labels = np.full(n, -1.0, dtype=np.float32)
        fg = np.zeros(n, dtype=bool)
        box_t = lmk = None
        if len(boxes) == 0:
            labels[:] = 0
        else:
            best, best_iou = best_overlaps(anchors, boxes)
            labels[best_iou < self.neg] = 0
            labels[best_iou >= self.pos] = 1
            fg = labels == 1
            box_t = nonlinear_transform(anchors, boxes[best]) / self.bbox_stds  # float64, stored as float32
            if self.landmarks and fg.any():
                matched = landmarks[best[fg]]                    # (F, 5, 3)
                lmk = (np.nonzero(fg)[0], landmark_transform(anchors[fg], matched) / self.landmark_std,
                       np.repeat((matched[:, :, 2] != LANDMARK_MISSING).astype(np.float32), 2, axis=1))
        start = 0
        for s, count in zip(self.strides, self.counts):
            A, hw = self.num_anchors[s], self.feat[s] ** 2
            sl = slice(start, start + count)
            out[label_name('label', s)][b] = labels[sl]
            target = out[label_name('bbox_target', s)][b].reshape(A, 4, hw)  # channel a*4 + k
            weight = out[label_name('bbox_weight', s)][b].reshape(A, 4, hw)
            if box_t is None:
                target[:] = 0
            else:
                np.copyto(target, box_t[sl].reshape(A, hw, 4).transpose(0, 2, 1), casting='unsafe')
            np.copyto(weight, fg[sl].reshape(A, 1, hw), casting='unsafe')
            if self.landmarks:
                lt = out[label_name('landmark_target', s)][b]
                lw = out[label_name('landmark_weight', s)][b]
                lt[:] = 0
                lw[:] = 0
                if lmk is not None:
                    idx, values, valid = lmk
                    mine = (idx >= start) & (idx < start + count)
                    a, cell = np.divmod(idx[mine] - start, hw)
                    lt.reshape(A, 10, hw)[a, :, cell] = values[mine]
                    lw.reshape(A, 10, hw)[a, :, cell] = valid[mine]
            start += count
