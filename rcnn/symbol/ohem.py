"""Online hard example mining as an MXNet custom op (``op_type='rpn_fpn_ohem'``).

Every threshold arrives as an op argument; the op reads no global configuration.
Per image and per stride, from the anchor labels (1 face, 0 background, -1 ignored):
  1. at most ``int(fg_fraction * batch_size)`` positives survive; mode 1 keeps the hardest ones
     (lowest face-minus-background logit), mode 0 a random subset; the rest become -1;
  2. ``batch_size - positives`` negatives survive; mode 1 keeps the hardest ones (highest face logit
     margin), mode 0 a random subset; the rest become -1.
"""
from rcnn.compat import mx
import numpy as np

OHEM_RANDOM, OHEM_HARD = 0, 1
OHEM_MODES = {OHEM_RANDOM: 'random sample', OHEM_HARD: 'hardest examples'}


def ohem_labels(fg_score, labels, batch_size, fg_fraction, mode, rng=np.random):
    """Relabel one image's anchors.

    :param fg_score: (M,) face logit minus background logit per anchor
    :param labels: (M,) 1 / 0 / -1
    :return: (M,) new labels (a copy)
    """
    labels = labels.copy()
    max_fg = int(fg_fraction * batch_size)
    fg = np.where(labels == 1)[0]
    if len(fg) > max_fg:
        if mode == OHEM_HARD:
            drop = fg[np.argsort(fg_score[fg], kind='stable')[max_fg:]]
        else:
            drop = rng.choice(fg, size=len(fg) - max_fg, replace=False)
        labels[drop] = -1
    num_bg = batch_size - int((labels == 1).sum())
    bg = np.where(labels == 0)[0]
    if len(bg) > num_bg:
        if mode == OHEM_HARD:
            drop = bg[np.argsort(-fg_score[bg], kind='stable')[num_bg:]]
        else:
            drop = rng.choice(bg, size=len(bg) - num_bg, replace=False)
        labels[drop] = -1
    return labels


class RPNOHEM(mx.operator.CustomOp):
    def __init__(self, batch_size, fg_fraction, mode):
        super().__init__()
        self.batch_size, self.fg_fraction, self.mode = batch_size, fg_fraction, mode

    def forward(self, is_train, req, in_data, out_data, aux):
        score = in_data[0].asnumpy()    # (B, 2, M) class logits
        labels = in_data[1].asnumpy()   # (B, M)
        out = np.empty_like(labels)
        for i in range(labels.shape[0]):
            out[i] = ohem_labels(score[i, 1] - score[i, 0], labels[i], self.batch_size, self.fg_fraction,
                                 self.mode)
        self.assign(out_data[0], req[0], mx.nd.array(out, ctx=out_data[0].context))

    def backward(self, req, out_grad, in_data, out_data, in_grad, aux):
        for i, grad in enumerate(in_grad):
            self.assign(grad, req[i], 0)


@mx.operator.register('rpn_fpn_ohem')
class RPNOHEMProp(mx.operator.CustomOpProp):
    def __init__(self, batch_size='256', fg_fraction='0.25', mode='1'):
        super().__init__(need_top_grad=False)
        self.batch_size, self.fg_fraction, self.mode = int(batch_size), float(fg_fraction), int(mode)
        if self.mode not in OHEM_MODES:
            raise ValueError('rpn_fpn_ohem: mode must be one of %s, got %d' % (sorted(OHEM_MODES), self.mode))

    def list_arguments(self):
        return ['cls_score', 'labels']

    def list_outputs(self):
        return ['labels_ohem']

    def infer_shape(self, in_shape):
        return in_shape, [in_shape[1]], []

    def create_operator(self, ctx, shapes, dtypes):
        return RPNOHEM(self.batch_size, self.fg_fraction, self.mode)

    def declare_backward_dependency(self, out_grad, in_data, out_data):
        return []
