"""Head outputs of one FPN level -> candidate boxes, scores and landmarks (pure numpy).

The detector calls this for every level, scale and flip of an image; tests call it directly with head
maps they build, so that training targets can be checked against exactly what inference decodes.
"""

import numpy as np

from rcnn.names import HEAD_KINDS, parse_head_name
from rcnn.presets import MASK_PRESETS, PRESET_FOR_STRIDES
from rcnn.processing.bbox_transform import clip_boxes, landmark_pred, nonlinear_pred

__all__ = ['decode_level', 'two_class_softmax', 'head_layout', 'HeadLayoutError', 'HEAD_KINDS']


def decode_level(cls_prob, bbox_deltas, anchors, threshold, size, landmark_deltas=None, score_mult=1.0,
                 landmark_std=1.0, type_prob=None):
    """Candidates of one image at one stride.

    :param cls_prob: (2A, H, W) softmax output, background planes first (channels 0..A-1), faces A..2A-1
    :param bbox_deltas: (4A, H, W) dx, dy, dw, dh per anchor (channel a*4 + k)
    :param anchors: (H*W*A, 4) anchor plane in (i, j, a) order (``AnchorCache.get``)
    :param threshold: minimum face probability (after ``score_mult``)
    :param size: (height, width) of the network input before padding: boxes are clipped to it
    :param landmark_deltas: (10A, H, W) or None
    :param score_mult: multiplier of the face probability (the original's ``decay4`` on stride 4)
    :param landmark_std: the landmark deltas are multiplied by this first (0.2 for the Anti-Cov ``net3l``)
    :param type_prob: (3A, H, W) softmax of the Anti-Cov type head, or None; the mask probability of anchor a
                      is channel 2A + a
    :return: None when nothing passes, else (boxes (K, 4) float64, scores (K,), landmarks (K, 5, 2) or None,
             mask scores (K,) or None)
    """
    A = cls_prob.shape[0] // 2
    cells = cls_prob.shape[1] * cls_prob.shape[2]
    prob = cls_prob[A:].transpose(1, 2, 0).reshape(-1)  # (A, H, W) -> (H*W*A,) in anchor order (i, j, a)
    if score_mult != 1.0:
        prob = prob * score_mult
    keep = np.flatnonzero(prob >= threshold)
    if keep.size == 0:
        return None
    cell, a = np.divmod(keep, A)  # anchor index = (i*W + j)*A + a: only the kept anchors' deltas are read
    deltas = bbox_deltas.reshape(A, 4, cells)[a, :, cell]  # channel a*4 + k -> (K, 4)
    anchors = anchors[keep]
    boxes = clip_boxes(nonlinear_pred(anchors, deltas), size)
    points = masks = None
    if landmark_deltas is not None:
        deltas = landmark_deltas.reshape(A, 10, cells)[a, :, cell].reshape(-1, 5, 2)  # channel a*10 + k
        points = landmark_pred(anchors, deltas * landmark_std if landmark_std != 1.0 else deltas)
    if type_prob is not None:
        masks = type_prob.reshape(-1, cells)[2 * A + a, cell]
    return boxes, prob[keep], points, masks


def two_class_softmax(scores):
    """What a test graph's ``Reshape(0, 2, -1, 0) -> SoftmaxActivation(mode='channel') -> Reshape(0, 2A, -1, 0)``
    makes of a classification conv's output: (B, 2A, H, W) scores, background channels 0..A-1 and face
    channels A..2A-1, to probabilities of the same layout (float32; face = 1 / (1 + exp(bg - face)))."""
    A = scores.shape[1] // 2
    with np.errstate(over='ignore'):
        face = 1.0 / (1.0 + np.exp(scores[:, :A] - scores[:, A:]))
    return np.concatenate((1.0 - face, face), axis=1).astype(np.float32, copy=False)




class HeadLayoutError(ValueError):
    """A graph's outputs do not fit the network preset it is loaded with."""


def head_layout(output_names, strides, network, source):
    """Which graph output holds which head, checked against the preset.

    :param output_names: the graph's outputs, in graph order (``sym.list_outputs()``)
    :param strides: the preset's strides, e.g. (32, 16, 8)
    :param network: the preset name (for the messages, and net3l's type head)
    :param source: the symbol file, named in errors
    :return: {stride: {'cls': i, 'bbox': i, 'landmark': i or None, 'type': i or None}}
    :raises HeadLayoutError: cascade outputs, unknown outputs, other strides, a missing or unexpected head
    """
    found = {}
    for i, name in enumerate(output_names):
        if '_cas' in name:
            raise HeadLayoutError('%s: output %s belongs to a cascade model (the original\'s CASCADE heads); this '
                                  'detector decodes single-stage RetinaFace graphs only' % (source, name))
        parsed = parse_head_name(name)
        if parsed is None:
            raise HeadLayoutError('%s: output %s is not a RetinaFace head (face_rpn_{%s}_stride<s>); outputs: %s'
                                  % (source, name, ','.join(HEAD_KINDS), ', '.join(output_names)))
        key = (parsed[1], parsed[0])
        if key in found:
            raise HeadLayoutError('%s: output %s appears twice' % (source, name))
        found[key] = i
    graph_strides = tuple(sorted({s for s, _ in found}, reverse=True))
    kinds = {k for _, k in found}
    suggest = PRESET_FOR_STRIDES.get(graph_strides, 'a preset with strides %s' % (graph_strides,))
    if 'type' in kinds and graph_strides == (32, 16, 8):
        suggest = MASK_PRESETS[0]
    if graph_strides != tuple(strides):
        raise HeadLayoutError("%s: the graph has heads at strides %s, network=%r has %s; use network='%s'"
                              % (source, graph_strides, network, tuple(strides), suggest))
    if 'type' in kinds and network not in MASK_PRESETS:
        raise HeadLayoutError("%s: the graph has a type head (face_rpn_type_prob_reshape_stride*: a mask-aware "
                              "RetinaFace-Anti-Cov model), which network=%r does not decode; use network='%s'"
                              % (source, network, suggest))
    if network in MASK_PRESETS and 'type' not in kinds:
        raise HeadLayoutError("%s: network=%r is the Anti-Cov preset (type head, landmark std 0.2) but the graph "
                              "has no face_rpn_type_prob_reshape_stride* output; use network='%s'"
                              % (source, network, suggest))
    layout = {}
    for s in strides:
        heads = {k: found.get((s, k)) for k in ('cls', 'bbox', 'landmark', 'type')}
        for need in ('cls', 'bbox'):
            if heads[need] is None:
                raise HeadLayoutError('%s: no %s output for stride %d' % (source, [n for n, k in HEAD_KINDS.items()
                                                                                 if k == need][0], s))
        layout[s] = heads
    for k in ('landmark', 'type'):
        have = [s for s in strides if layout[s][k] is not None]
        if have and len(have) != len(strides):
            raise HeadLayoutError('%s: %s heads at strides %s only, not at every stride %s'
                                  % (source, k, tuple(have), tuple(strides)))
    return layout
