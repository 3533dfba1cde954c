"""Training metrics, looked up by output name (never by position).

Names printed per stride s (strides 32, 16, 8), as in the published training log:
RPNAcc_s{s}, RPNAcc_s{s}_BG, RPNAcc_s{s}_FG, RPNL1Loss_s{s}, RPNLandMarkL1Loss_s{s}; plus
RPNLogLoss_s{s} (cross-entropy over the anchors OHEM kept).
"""
from rcnn.compat import mx
import numpy as np
from rcnn.names import head_name

__all__ = ['get_metrics', 'RPNAccMetric', 'RPNLogLossMetric', 'RPNRegressionMetric']


class _ByName(mx.metric.EvalMetric):
    def __init__(self, name, output_names, wanted):
        self._idx = []
        for w in wanted:
            full = w + '_output'
            if full not in output_names:
                raise ValueError('metric %s needs output %s; graph outputs: %s' % (name, full, output_names))
            self._idx.append(output_names.index(full))
        super().__init__(name)

    def outputs(self, preds):
        return [preds[i].asnumpy() for i in self._idx]


class RPNAccMetric(_ByName):
    """Accuracy over the anchors OHEM kept: overall, background (label 0), face (label 1)."""

    def __init__(self, stride, output_names):
        super().__init__('RPNAcc_s%d' % stride, output_names,
                         [head_name('cls_prob', stride), head_name('label', stride)])

    def reset(self):
        super().reset()
        self.counts = np.zeros((3, 2))  # rows: all, bg, fg; cols: correct, total

    def update(self, labels, preds):
        prob, label = self.outputs(preds)               # (B, 2, M), (B, M)
        pred = prob.argmax(axis=1)
        for row, mask in enumerate((label != -1, label == 0, label == 1)):
            self.counts[row] += ((pred[mask] == label[mask]).sum(), mask.sum())
        self.sum_metric, self.num_inst = self.counts[0]

    def get(self):
        names = [self.name, self.name + '_BG', self.name + '_FG']
        values = [c / t if t else float('nan') for c, t in self.counts]
        return names, values


class RPNLogLossMetric(_ByName):
    """Mean cross-entropy of the anchors OHEM kept."""

    def __init__(self, stride, output_names):
        super().__init__('RPNLogLoss_s%d' % stride, output_names,
                         [head_name('cls_prob', stride), head_name('label', stride)])

    def update(self, labels, preds):
        prob, label = self.outputs(preds)
        keep = label != -1
        p = np.take_along_axis(prob, np.clip(label, 0, 1).astype(np.int64)[:, None, :], axis=1)[:, 0]
        self.sum_metric += float(-np.log(np.maximum(p[keep], 1e-14)).sum())
        self.num_inst += int(keep.sum())


class RPNRegressionMetric(_ByName):
    """Summed smooth-L1 loss per used positive anchor (weights > 0 divided by the values per anchor).

    The running value covers the batches that had such anchors; batches without any (faces whose
    landmarks are all missing, as in WIDER boxes without points) add nothing to it, and before the first
    such anchor the value is 0 (no loss was computed), never NaN.
    """

    def get(self):
        return self.name, (self.sum_metric / self.num_inst if self.num_inst else 0.0)

    def __init__(self, name, loss, weight, per_anchor, output_names):
        super().__init__(name, output_names, [loss, weight])
        self.per_anchor = per_anchor

    def update(self, labels, preds):
        loss, weight = self.outputs(preds)
        self.sum_metric += float(loss.sum())
        self.num_inst += int((weight > 0).sum()) / self.per_anchor


def get_metrics(output_names, strides, landmarks=True):
    """CompositeEvalMetric with the per-stride metrics, in the order of the published log."""
    metric = mx.metric.CompositeEvalMetric()
    for s in strides:
        metric.add(RPNAccMetric(s, output_names))
        metric.add(RPNRegressionMetric('RPNL1Loss_s%d' % s, head_name('bbox_loss', s),
                                       head_name('bbox_weight', s), 4, output_names))
        if landmarks:
            metric.add(RPNRegressionMetric('RPNLandMarkL1Loss_s%d' % s, head_name('landmark_loss', s),
                                           head_name('landmark_weight', s), 10, output_names))
        metric.add(RPNLogLossMetric(s, output_names))
    return metric
