"""One box convention end to end, the original's: a label ``x y w h`` trains as ``x2 = x + w`` with
``+1`` widths, and what a model decodes from that target is written back by the WIDER writer as the
same ``x y w h``."""
import numpy as np
import pytest

from rcnn.config import get_config
from rcnn.dataset.retinaface import flip_roidb, xywh_to_boxes
from rcnn.io.rpn import AnchorAssigner
from rcnn.processing.bbox_transform import bbox_overlaps, flip_boxes, nonlinear_transform
from rcnn.processing.decode import decode_level
from rcnn.tools.evaluate import write_submission

SIZE = 640  # the training crop


def label_boxes():
    """500 label lines: every width and every height 1..500 once, at odd positions inside the crop."""
    out = []
    for i in range(1, 501):
        w, h = i, 1 + (i * 37) % 500  # 37 is prime to 500: the heights are a permutation of 1..500
        x = 1 + 2 * ((i * 97) % ((SIZE - w) // 2))
        y = 1 + 2 * ((i * 61) % ((SIZE - h) // 2))
        out.append((x, y, w, h))
    return out


def head_maps(assigner, gt_box, flip):
    """Head outputs a perfect model would give for one face: face probability 1 on the face's best anchor
    and there the regression target of the assigner. Returns (stride, anchors, prob, deltas)."""
    out = assigner.assign(gt_box.astype(np.float32), np.full((1, 5, 3), -1, np.float32))
    best = int(bbox_overlaps(assigner.anchors, gt_box).argmax())
    start = 0
    for stride, count in zip(assigner.strides, assigner.counts):
        if best < start + count:
            break
        start += count
    A, f = assigner.num_anchors[stride], assigner.feat[stride]
    cell, a = divmod(best - start, A)
    row, col = divmod(cell, f)
    deltas = out['face_bbox_target_stride%d' % stride].reshape(4 * A, f, f).astype(np.float64)
    exact = nonlinear_transform(assigner.anchors[best:best + 1], gt_box)[0]
    # the assigner's float32 target sits on that anchor's channels (a*4 + k) in the graph's layout
    np.testing.assert_allclose(deltas[a * 4:a * 4 + 4, row, col], exact, rtol=1e-6, atol=1e-6)
    deltas[a * 4:a * 4 + 4, row, col] = exact  # float64: the check is of the convention, not of float32 noise
    prob = np.zeros((2 * A, f, f), np.float32)
    prob[:A] = 1
    prob[a, row, col], prob[A + a, row, col] = 0, 1
    return stride, assigner.anchors[start:start + count], prob, deltas


@pytest.mark.parametrize('flip', [False, True])
def test_label_box_round_trips_through_training_targets_decode_and_wider_writer(tmp_path, flip):
    cfg = get_config('mnet')
    assigner = AnchorAssigner(cfg.RPN_ANCHOR_CFG, cfg.RPN_FEAT_STRIDE, SIZE)
    wrong = []
    for x, y, w, h in label_boxes():
        gt = xywh_to_boxes([[x, y, w, h]], SIZE, SIZE)
        np.testing.assert_array_equal(gt, [[x, y, x + w, y + h]])
        if flip:  # the mirrored training twin, decoded on the mirrored input and mirrored back
            rec = {'boxes': gt, 'landmarks': np.full((1, 5, 3), -1, np.float32), 'width': SIZE}
            gt = flip_roidb([rec])[0]['boxes']
        stride, anchors, prob, deltas = head_maps(assigner, gt, flip)
        boxes, scores, _, _ = decode_level(prob, deltas, anchors, 0.5, (SIZE, SIZE))
        assert len(boxes) == 1
        if flip:
            boxes = flip_boxes(boxes, SIZE)
        det = np.hstack((boxes, scores[:, None])).astype(np.float32)  # as RetinaFace.detect returns it
        path = str(tmp_path / 'r.txt')
        write_submission(path, 'e/r.jpg', det)
        with open(path) as f:
            written = tuple(int(v) for v in f.read().splitlines()[2].split()[:4])
        if written != (x, y, w, h):
            wrong.append(((x, y, w, h), written, stride))
    assert not wrong, '%d of 500 label boxes come back different, e.g. %s' % (len(wrong), wrong[:3])


def test_landmarks_round_trip_through_targets_and_decode():
    cfg = get_config('mnet')
    assigner = AnchorAssigner(cfg.RPN_ANCHOR_CFG, cfg.RPN_FEAT_STRIDE, SIZE)
    rng = np.random.RandomState(3)
    for x, y, w, h in label_boxes()[8::25]:
        gt = xywh_to_boxes([[x, y, w, h]], SIZE, SIZE)
        pts = np.concatenate([np.stack([x + w * rng.rand(5), y + h * rng.rand(5)], 1), np.ones((5, 1))], 1)
        out = assigner.assign(gt.astype(np.float32), pts[None].astype(np.float32))
        stride, anchors, prob, deltas = head_maps(assigner, gt, False)
        A, f = assigner.num_anchors[stride], assigner.feat[stride]
        lmk = out['face_landmark_target_stride%d' % stride].reshape(10 * A, f, f)
        if out['face_label_stride%d' % stride].max() < 1:
            continue  # no positive anchor for this face: no landmark target either
        _, _, points, _ = decode_level(prob, deltas, anchors, 0.5, (SIZE, SIZE), lmk)
        np.testing.assert_allclose(points[0], pts[:, :2], atol=2e-3)

