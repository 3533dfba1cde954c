"""Every name the graphs carry, in one place: head outputs (``face_rpn_<kind>_stride<s>``, what the detector
reads and the checkpoints carry) and training labels (``face_<kind>_stride<s>``, what the loader feeds). Read by
the graph builders, the label assigner, the metrics and the decoder; and the graph attribute that records a
trained model's anchor preset.
"""
import re

__all__ = ['PRESET_ATTR', 'head_name', 'label_name', 'label_names', 'LABEL_KINDS', 'LANDMARK_LABEL_KINDS', 'HEAD_KINDS',
           'parse_head_name']

PRESET_ATTR = '__anchor_preset__'  # test-graph attribute: the anchor preset a model trained here decodes with
LABEL_KINDS = ('label', 'bbox_target', 'bbox_weight')
LANDMARK_LABEL_KINDS = ('landmark_target', 'landmark_weight')
# test-graph outputs the detector decodes: output kind -> head
HEAD_KINDS = {'cls_prob_reshape': 'cls', 'bbox_pred': 'bbox', 'landmark_pred': 'landmark', 'type_prob_reshape': 'type'}
_HEAD_OUTPUT = re.compile(r'^face_rpn_(%s)_stride(\d+)(_output)?$' % '|'.join(HEAD_KINDS))


def head_name(kind, stride):
    """A per-stride node of the heads, e.g. head_name('cls_score', 32) -> 'face_rpn_cls_score_stride32'."""
    return 'face_rpn_%s_stride%d' % (kind, stride)


def label_name(kind, stride):
    """A training label, e.g. label_name('bbox_target', 8) -> 'face_bbox_target_stride8'."""
    return 'face_%s_stride%d' % (kind, stride)


def label_names(strides, landmarks=True):
    """Label names in the order the loader provides them: per stride, label, box target and weight (and the
    landmark target and weight)."""
    kinds = LABEL_KINDS + (LANDMARK_LABEL_KINDS if landmarks else ())
    return [label_name(k, s) for s in strides for k in kinds]


def parse_head_name(name):
    """(head, stride) of a test-graph output name (MXNet may append '_output'), or None for another name."""
    m = _HEAD_OUTPUT.match(name)
    return None if m is None else (HEAD_KINDS[m.group(1)], int(m.group(2)))
