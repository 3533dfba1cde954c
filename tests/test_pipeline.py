"""The fast data pipeline gives exactly the samples of the straightforward one (same seed, same arrays)."""
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from conftest import ROOT, SHARED
from rcnn.config import get_config
from rcnn.core.loader import CropLoader
from rcnn.dataset.retinaface import RetinaFaceDataset, flip_roidb
from rcnn.dataset.synthetic import generate
from rcnn.io import image as io
from rcnn.io.rpn import AnchorAssigner
from rcnn.processing.bbox_transform import (best_overlaps, bbox_overlaps, bbox_overlaps_py, landmark_transform,
                                            nonlinear_transform)

SIZE = 640


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    """The real WIDER train images when ../shared is there, else a generated set in the same layout."""
    real = os.path.join(SHARED, 'widerface', 'retinaface')
    if os.path.isfile(os.path.join(real, 'train', 'label.txt')):
        return real
    root = tmp_path_factory.mktemp('pipeline')
    generate(str(root / 'retinaface'), train=24, val=1, seed=13)
    return str(root / 'retinaface')


@pytest.fixture(scope='module')
def roidb(dataset, tmp_path_factory):
    db = RetinaFaceDataset('train', str(tmp_path_factory.mktemp('cache')), dataset).gt_roidb()[:24]
    return db + flip_roidb(db)


def reference_assign(assigner, boxes, landmarks):
    """The per-anchor definition, written plainly: the IoU matrix, argmax, targets for every anchor in
    (h, w, a) order, then each level's layout."""
    anchors = assigner.anchors
    n = len(anchors)
    labels = np.full(n, -1.0, np.float32)
    box_t = np.zeros((n, 4), np.float32)
    lmk_t = np.zeros((n, 10), np.float32)
    lmk_w = np.zeros((n, 10), np.float32)
    if len(boxes) == 0:
        labels[:] = 0
    else:
        overlaps = bbox_overlaps(anchors, boxes)
        best = overlaps.argmax(axis=1)
        iou = overlaps[np.arange(n), best]
        labels[iou < 0.3] = 0
        labels[iou >= 0.5] = 1
        box_t[:] = nonlinear_transform(anchors, boxes[best])
        fg = labels == 1
        if fg.any():
            matched = landmarks[best[fg]]
            lmk_t[fg] = landmark_transform(anchors[fg], matched)
            lmk_w[fg] = np.repeat((matched[:, :, 2] != -1).astype(np.float32), 2, axis=1)
    box_w = np.repeat((labels == 1).astype(np.float32)[:, None], 4, axis=1)
    out, start = {}, 0
    for s, count in zip(assigner.strides, assigner.counts):
        A, f = assigner.num_anchors[s], assigner.feat[s]
        sl = slice(start, start + count)
        start += count
        out['face_label_stride%d' % s] = labels[sl].reshape(f, f, A).transpose(2, 0, 1).reshape(-1)
        for name, arr, k in (('bbox_target', box_t, 4), ('bbox_weight', box_w, 4),
                             ('landmark_target', lmk_t, 10), ('landmark_weight', lmk_w, 10)):
            out['face_%s_stride%d' % (name, s)] = arr[sl].reshape(f * f, A * k).T
    return out


def test_crop_is_bit_identical_to_resizing_the_whole_image(roidb):
    cfg = get_config('mnet', IMAGE_SIZE=SIZE)
    rng = np.random.RandomState(1)
    checked = 0
    for rec in roidb[::3]:
        img = io.load_image(rec)
        for _ in range(3):
            window = io.crop_window(img.shape, rec['boxes'], rec['landmarks'], SIZE, cfg.CROP_SCALES,
                                    cfg.CROP_TRIES, rng)
            whole = cv2.resize(img, None, None, fx=window.scale, fy=window.scale, interpolation=cv2.INTER_LINEAR)
            assert whole.shape[:2] == window.valid
            padded = np.zeros((max(whole.shape[0], SIZE), max(whole.shape[1], SIZE), 3), np.uint8)
            padded[:whole.shape[0], :whole.shape[1]] = whole
            expected = padded[window.up:window.up + SIZE, window.left:window.left + SIZE]
            assert np.array_equal(io.resize_crop(img, window, SIZE), expected)
            checked += 1
    assert checked >= 20


def test_crop_of_an_image_smaller_than_the_crop_is_zero_padded():
    img = np.random.RandomState(0).randint(0, 255, (33, 50, 3)).astype(np.uint8)
    window = io.CropWindow(64 / 33, 33, 0, 10, (64, round(50 * 64 / 33)), None, None)
    crop = io.resize_crop(img, window, 64)
    whole = cv2.resize(img, None, None, fx=64 / 33, fy=64 / 33, interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(crop, whole[:64, 10:74])


@pytest.mark.parametrize('mode', [0, 1, 2])
def test_one_pass_tensor_equals_jitter_then_tensor(mode):
    cfg = get_config('mnet', COLOR_MODE=mode)
    crop = np.random.RandomState(mode).randint(0, 256, (96, 80, 3)).astype(np.uint8)
    want = io.to_tensor(io.color_jitter(crop, mode, cfg.COLOR_JITTERING, np.random.RandomState(7)))
    got = io.crop_to_tensor(crop, cfg, np.random.RandomState(7))
    assert got.dtype == np.float32 and np.array_equal(got, want)
    cfg.PIXEL_MEANS, cfg.PIXEL_STDS, cfg.PIXEL_SCALE = (103.9, 116.8, 123.7), (57.4, 57.1, 58.4), 1.0
    want = io.to_tensor(io.color_jitter(crop, mode, cfg.COLOR_JITTERING, np.random.RandomState(7)),
                        cfg.PIXEL_MEANS, cfg.PIXEL_STDS)
    assert np.array_equal(io.crop_to_tensor(crop, cfg, np.random.RandomState(7)), want)


def test_best_overlaps_equals_the_matrix_argmax():
    rng = np.random.RandomState(3)
    xy = rng.uniform(0, 200, (500, 2))
    anchors = np.hstack([xy, xy + rng.uniform(1, 60, (500, 2))])
    boxes = np.vstack([anchors[:3], anchors[:3]])  # exact duplicates: ties keep the first box
    boxes = np.vstack([boxes, np.hstack([xy[:20], xy[:20] + 30])])
    overlaps = bbox_overlaps_py(anchors, boxes)
    best, iou = best_overlaps(anchors, boxes)
    assert np.array_equal(best, overlaps.argmax(axis=1)) and np.array_equal(iou, overlaps.max(axis=1))
    far = anchors + 1000
    best, iou = best_overlaps(far, boxes)
    assert not best.any() and not iou.any()


def test_anchor_targets_equal_the_per_anchor_definition(roidb):
    cfg = get_config('mnet', IMAGE_SIZE=SIZE)
    assigner = AnchorAssigner(cfg.RPN_ANCHOR_CFG, cfg.RPN_FEAT_STRIDE, SIZE)
    out = assigner.empty_labels(2)
    for name in out:
        out[name][:] = 7  # stale values of an earlier batch must all be replaced
    rng = np.random.RandomState(5)
    positives = 0
    for rec in roidb[:16]:
        window = io.crop_window((rec['height'], rec['width']), rec['boxes'], rec['landmarks'], SIZE,
                                cfg.CROP_SCALES, cfg.CROP_TRIES, rng)
        lms = window.landmarks.copy()
        if len(lms):
            lms[0, :, 0] += 3  # a face with landmarks (WIDER train here has none), one point flagged missing
            lms[0, :, 2] = 1
            lms[0, 2] = (-1, -1, -1)
        want = reference_assign(assigner, window.boxes, lms)
        assigner.assign_into(out, 1, window.boxes, lms)
        for name, value in want.items():
            assert np.array_equal(out[name][1], value), name
        positives += int(sum((want['face_label_stride%d' % s] == 1).sum() for s in assigner.strides))
    assert positives > 50
    no_face = reference_assign(assigner, np.zeros((0, 4), np.float32), np.zeros((0, 5, 3), np.float32))
    assigner.assign_into(out, 0, np.zeros((0, 4), np.float32), np.zeros((0, 5, 3), np.float32))
    for name, value in no_face.items():
        assert np.array_equal(out[name][0], value), name


def test_workers_give_the_in_process_batches_and_batches_stay_valid(roidb):
    cfg = get_config('mnet', IMAGE_SIZE=320)
    loaders = [CropLoader(roidb, cfg, 4, workers=w, seed=9) for w in (0, 2)]
    try:
        for epoch in (0, 1):
            for ld in loaders:
                ld.reset_epoch(epoch)
            for _ in range(4):
                batches = [ld.next() for ld in loaders]
                copies = [[a.asnumpy() for a in b.data + b.label] for b in batches]
                assert all(np.array_equal(x, y) for x, y in zip(*copies))
                following = [ld.next() for ld in loaders]  # the first batch is still held: unchanged
                for b, c in zip(batches, copies):
                    assert all(np.array_equal(a.asnumpy(), x) for a, x in zip(b.data + b.label, c))
                assert all(np.array_equal(x.asnumpy(), y.asnumpy())
                           for x, y in zip(following[0].data + following[0].label,
                                           following[1].data + following[1].label))
    finally:
        for ld in loaders:
            ld.close()


def test_same_seed_same_samples_across_runs(roidb):
    cfg = get_config('mnet', IMAGE_SIZE=320)
    runs = []
    for _ in range(2):
        ld = CropLoader(roidb, cfg, 4, workers=1, seed=4)
        runs.append([a.asnumpy() for b in (ld.next(), ld.next()) for a in b.data + b.label])
        ld.close()
    assert all(np.array_equal(a, b) for a, b in zip(*runs))


LATE_READ = r'''
import sys
sys.path.insert(0, sys.argv[1])
from rcnn.compat import mx
import numpy as np
from rcnn.config import get_config
from rcnn.core import loader as L
from rcnn.dataset.retinaface import RetinaFaceDataset, flip_roidb
if sys.argv[3] == 'nowait':
    L.BatchSlot.wait_idle = lambda self: None  # the control: slots refilled without waiting for MXNet
roidb = RetinaFaceDataset('train', sys.argv[2], sys.argv[2] + '/retinaface').gt_roidb()
crops = L.CropLoader(roidb + flip_roidb(roidb), get_config('mnet', IMAGE_SIZE=128), 2, workers=0, seed=3)
batch = crops.next()
expected = batch.data[0].asnumpy().copy()
gate = mx.nd.ones((1200, 1200)) / 1200
for _ in range(12):  # a second or so of engine work the read of batch 0 must wait for
    gate = mx.nd.dot(gate, gate)
late = mx.nd.broadcast_add(batch.data[0], (gate[0:1, 0:1] * 0).reshape((1, 1, 1, 1)))
for _ in range(5):  # batch 0's slot is refilled by the fourth of these
    crops.next()
same = np.array_equal(late.asnumpy(), expected)
crops.close()
print('late read sees batch 0:', same)
sys.exit(0 if same else 1)
'''


@pytest.mark.parametrize('mode,ok', [('wait', True), ('nowait', False)])
def test_threaded_engine_late_read_sees_its_batch(tmp_path, mode, ok):
    """On MXNet's threaded engine (every GPU run's), an operator that reads batch 0 only after a second of other
    work still sees batch 0, though the loader refills that slot meanwhile: it waits for MXNet's pending reads
    (MXNDArrayWaitToWrite). The control, without that wait, sees a later batch."""
    generate(str(tmp_path / 'retinaface'), train=12, val=1, seed=2)
    env = {k: v for k, v in os.environ.items() if k != 'MXNET_ENGINE_TYPE'}
    env['MXNET_ENGINE_TYPE'] = 'ThreadedEnginePerDevice'
    env['RETINAFACE_MXNET_LOG'] = '1'  # MXNet's own line naming the engine it started
    res = subprocess.run([sys.executable, '-c', LATE_READ, ROOT, str(tmp_path), mode], capture_output=True,
                         text=True, env=env, timeout=300)
    assert ('late read sees batch 0: %s' % ok) in res.stdout, res.stdout + res.stderr[-2000:]
    assert 'ThreadedEnginePerDevice' in res.stderr


def test_batch_seeds_never_repeat_within_a_run():
    from rcnn.core.loader import batch_seed
    seeds = [batch_seed(0, e, b) for e in range(3) for b in range(12000)]  # epochs of more than 10,007 batches
    assert len(set(seeds)) == len(seeds)
    assert batch_seed(0, 0, 10007) != batch_seed(0, 1, 0)  # the former formula gave both 10007
    assert len({batch_seed(s, 0, 0) for s in range(1000)}) == 1000
