"""Annotation loader, roidb cache, flips, crops, anchor targets, OHEM, LR schedule, metrics."""
import os

import cv2
import numpy as np
import pytest

from rcnn.config import get_config
from rcnn.symbol.ohem import ohem_labels
from rcnn.core.schedule import RetinaFaceScheduler, WARMUP_STEP_FACTOR, parse_lr_steps
from rcnn.dataset.retinaface import AnnotationError, RetinaFaceDataset, flip_roidb, parse_label_file
from rcnn.io.image import color_jitter, random_crop
from rcnn.io.rpn import AnchorAssigner

FACE20 = '10 20 30 40 15 30 0.0 35 30 1.0 25 40 0.0 -1 -1 -1 30 50 0.0 0.8'


def make_dataset(root, lines, images=('e/a.jpg', 'e/b.jpg')):
    for rel in images:
        path = os.path.join(root, 'train', 'images', rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        cv2.imwrite(path, np.full((100, 120, 3), 90, np.uint8))
    with open(os.path.join(root, 'train', 'label.txt'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return RetinaFaceDataset('train', os.path.join(root, 'cache_root'), root)


def test_label_parsing_flags_and_boxes(tmp_path):
    ds = make_dataset(str(tmp_path), ['# e/a.jpg', FACE20, '100 90 40 30', '-4 50 10 10', '119 10 1 1',
                                      '# e/b.jpg', '5 5 0 10', '120 5 3 3'])
    roidb = ds.gt_roidb()
    assert len(roidb) == 1  # b.jpg has only boxes without area after clipping: left out of training
    rec = roidb[0]
    # the original's reading: x2 = x + w, y2 = y + h, right/bottom clipped to the 120 x 100 image (not W - 1),
    # left/top kept as written; every face with x2 > x1 and y2 > y1 survives (a 1-px face included)
    np.testing.assert_array_equal(rec['boxes'], [[10, 20, 40, 60], [100, 90, 120, 100], [-4, 50, 6, 60],
                                                 [119, 10, 120, 11]])
    np.testing.assert_array_equal(rec['landmarks'][0, :, 2], [1.0, 0.0, 1.0, -1.0, 1.0])  # visible/occluded/missing
    np.testing.assert_array_equal(rec['landmarks'][1, :, 2], [-1] * 5)                    # box-only line
    np.testing.assert_allclose(rec['blur'], [0.8, 0.3, 0.3, 0.3])
    assert list(rec['label_line']) == [2, 3, 4, 5] and (rec['width'], rec['height']) == (120, 100)


@pytest.mark.parametrize('line,msg', [('10 20 30', 'expected 4 numbers'), ('10 20 x 40', 'not a list of numbers'),
                                      ('10 20 -3 40', 'negative box'),
                                      ('10 20 30 40 15 30 2.0 35 30 0 25 40 0 20 50 0 30 50 0 0.5', 'flag must be'),
                                      ('10 20 30 40 15 30 -1 35 30 0 25 40 0 20 50 0 30 50 0 0.5', 'flagged missing')])
def test_malformed_line_names_file_and_line(tmp_path, line, msg):
    ds = make_dataset(str(tmp_path), ['# e/a.jpg', FACE20, line])
    with pytest.raises(AnnotationError, match=r'label.txt:3: .*%s' % msg):
        ds.gt_roidb()


def test_skip_bad_counts_and_missing_image(tmp_path):
    root = str(tmp_path)
    make_dataset(root, ['# e/a.jpg', FACE20, '1 2 3', '# e/missing.jpg', FACE20, '# e/b.jpg', FACE20])
    with pytest.raises(AnnotationError, match=r'label.txt:3: expected 4 numbers'):
        RetinaFaceDataset('train', root, root).gt_roidb()
    with open(os.path.join(root, 'train', 'images', 'e', 'b.jpg'), 'wb') as f:
        f.write(b'not a jpeg')
    ds = RetinaFaceDataset('train', root, root, skip_bad=True)
    roidb = ds.gt_roidb()
    assert len(roidb) == 1 and len(ds.skipped) == 3
    assert any('label.txt:4: image not found' in s for s in ds.skipped)
    assert any('label.txt:6: not a readable image' in s for s in ds.skipped)


def test_roidb_cache_is_invalidated_when_label_changes(tmp_path):
    ds = make_dataset(str(tmp_path), ['# e/a.jpg', FACE20])
    assert len(ds.gt_roidb()[0]['boxes']) == 1 and os.path.isfile(ds.cache_file)
    with open(ds.label_path, 'a') as f:
        f.write('50 50 20 20\n')
    assert len(RetinaFaceDataset('train', ds.root_path, str(tmp_path)).gt_roidb()[0]['boxes']) == 2


def test_flip_twin_swaps_points(tmp_path):
    ds = make_dataset(str(tmp_path), ['# e/a.jpg', FACE20])
    rec = ds.gt_roidb()[0]
    twin = flip_roidb([rec])[0]
    assert twin['flipped'] and not rec['flipped']
    np.testing.assert_array_equal(twin['boxes'][0], [120 - 40 - 1, 20, 120 - 10 - 1, 60])
    # left eye (15, 30, visible) becomes the right eye at x = 119 - 15; right eye (occluded) becomes left
    np.testing.assert_array_equal(twin['landmarks'][0, 1], [104, 30, 1.0])
    np.testing.assert_array_equal(twin['landmarks'][0, 0], [119 - 35, 30, 0.0])
    np.testing.assert_array_equal(twin['landmarks'][0, 4], [-1, -1, -1])      # missing stays missing
    np.testing.assert_array_equal(twin['landmarks'][0, 3], [119 - 30, 50, 1.0])


def test_random_crop_keeps_faces_by_centre():
    rng = np.random.RandomState(0)
    img = np.zeros((400, 600, 3), np.uint8)
    boxes = np.array([[100, 100, 149, 149], [500, 300, 559, 379]], np.float32)
    lms = np.zeros((2, 5, 3), np.float32)
    lms[:, :, :2] = ((boxes[:, None, :2] + boxes[:, None, 2:]) / 2)
    for _ in range(20):
        crop, b, lm, scale = random_crop(img, boxes, lms, 320, (0.3, 0.45, 0.6, 0.8, 1.0), 25, rng)
        assert crop.shape == (320, 320, 3)
        centres = (b[:, :2] + b[:, 2:]) / 2
        assert len(b) >= 1 and np.all((centres >= 0) & (centres < 320))
        np.testing.assert_allclose(lm[:, 0, :2], centres, atol=1e-3)  # landmarks moved with their boxes
        assert scale == pytest.approx(320 / int(400 * round(320 / scale / 400, 2)), rel=0.02)


def test_color_jitter_clips_and_keeps_shape():
    rng = np.random.RandomState(0)
    img = np.full((8, 8, 3), 250, np.uint8)
    out = color_jitter(img, 2, 0.5, rng)
    assert out.dtype == np.float32 and out.max() <= 255 and out.shape == img.shape
    np.testing.assert_array_equal(color_jitter(img, 0, 0.5, rng), img.astype(np.float32))


def test_anchor_assignment_toy_case():
    cfg = get_config('mnet')
    a = AnchorAssigner(cfg.RPN_ANCHOR_CFG, (32, 16, 8), 64)
    # a GT equal to the stride-8 anchor 1 of cell (row 2, col 3): (0,0,15,15) + (24, 16)
    gt = np.array([[24, 16, 39, 31]], np.float32)
    lm = np.zeros((1, 5, 3), np.float32)
    lm[0, :, :2] = [[28, 20], [36, 20], [32, 24], [28, 28], [36, 28]]
    lm[0, :, 2] = [1, 1, 1, -1, 0]  # point 3 missing, point 4 occluded
    out = a.assign(gt, lm)
    labels8 = out['face_label_stride8'].reshape(2, 8, 8)     # (a, h, w)
    assert labels8[1, 2, 3] == 1 and (labels8 == 1).sum() == 1
    box_t = out['face_bbox_target_stride8'].reshape(2, 4, 8, 8)
    np.testing.assert_allclose(box_t[1, :, 2, 3], 0, atol=1e-6)
    np.testing.assert_array_equal(out['face_bbox_weight_stride8'].reshape(2, 4, 8, 8)[1, :, 2, 3], 1)
    w = out['face_landmark_weight_stride8'].reshape(2, 10, 8, 8)[1, :, 2, 3]
    np.testing.assert_array_equal(w, [1, 1, 1, 1, 1, 1, 0, 0, 1, 1])
    t = out['face_landmark_target_stride8'].reshape(2, 10, 8, 8)[1, :, 2, 3]
    np.testing.assert_allclose(t[:2], [(28 - 31.5) / 16, (20 - 23.5) / 16], atol=1e-6)
    # far anchors are background, none of stride 32 reaches IoU 0.3 with a 16 px face
    assert (out['face_label_stride32'] == 0).all()
    empty = a.assign(np.zeros((0, 4), np.float32), np.zeros((0, 5, 3), np.float32))
    assert all((empty['face_label_stride%d' % s] == 0).all() for s in (32, 16, 8))
    assert empty['face_bbox_weight_stride8'].sum() == 0


def test_ohem_keeps_hardest():
    labels = np.array([1, 1, 1, 0, 0, 0, 0, -1], np.float32)
    score = np.array([5, -1, 2, 3, -4, 0.5, 1, 9], np.float32)  # face minus background logit
    out = ohem_labels(score, labels, batch_size=4, fg_fraction=0.5, mode=1)
    # 2 positives max: the hardest are the lowest scores (-1, 2); then 2 negatives with the highest (3, 1)
    np.testing.assert_array_equal(out, [-1, 1, 1, 0, -1, -1, 0, -1])
    rnd = ohem_labels(score, labels, 4, 0.5, 0, np.random.RandomState(0))
    assert (rnd == 1).sum() == 2 and (rnd == 0).sum() == 2


def test_lr_schedule():
    s = RetinaFaceScheduler(0.01, parse_lr_steps('55,68,80'), iters_per_epoch=100).lr_at_iter
    assert s(0) == 0.01 and s(5499) == 0.01
    assert s(5500) == pytest.approx(0.001) and s(6800) == pytest.approx(0.0001)
    r = RetinaFaceScheduler(0.001, parse_lr_steps('1,2,3,4,5,55,68,80'), iters_per_epoch=10).lr_at_iter
    assert r(10) == pytest.approx(0.001 * WARMUP_STEP_FACTOR)
    assert r(50) == pytest.approx(0.01) and r(550) == pytest.approx(0.001)
    f = RetinaFaceScheduler(1.0, [1, 2, 3, 4, 5], 1).lr_at_iter
    assert f(5) == pytest.approx(0.5 * 0.5 * 0.4 * 0.1 * 0.1)
    with pytest.raises(ValueError, match='lr_step'):
        parse_lr_steps('5,x')


@pytest.mark.parametrize('begin_epoch', [0, 1])
def test_lr_per_batch_through_mxnet_sgd_is_the_original_schedule(begin_epoch):
    """The rate each batch is updated with by a real mx.optimizer.SGD (no momentum, no decay, gradient 1: the
    weight falls by exactly the rate), 3 batches per epoch, --lr_step 2,3: the original's batch callback
    changed the rate when its batch counter reached 2 x 3 = 6, so batch 6, the first of epoch 3, is the first
    at 0.1 x (written out by hand, not computed by the scheduler)."""
    from rcnn.compat import mx
    by_hand = [1.0] * 6 + [0.1] * 3 + [0.01] * 3  # batches 0..11
    sched = RetinaFaceScheduler(1.0, [2, 3], iters_per_epoch=3)
    opt = mx.optimizer.SGD(learning_rate=1.0, momentum=0.0, wd=0.0, lr_scheduler=sched,
                           begin_num_update=begin_epoch * 3)  # as train.py, resuming after begin_epoch epochs
    updater = mx.optimizer.get_updater(opt)
    weight = mx.nd.array([100.0], dtype='float64')
    used = []
    for _ in range(begin_epoch * 3, 12):
        before = weight.asnumpy()[0]
        updater(0, mx.nd.array([1.0], dtype='float64'), weight)
        used.append(before - weight.asnumpy()[0])
    np.testing.assert_allclose(used, by_hand[begin_epoch * 3:], rtol=1e-6)  # the op takes the rate as float32


def test_label_file_is_parsed_for_val_without_landmarks(tmp_path):
    p = tmp_path / 'label.txt'
    p.write_text('# e/a.jpg\n1 2 3 4\n# e/b.jpg\n0 0 0 0\n')
    recs = parse_label_file(str(p), with_landmarks=False)
    assert [r['path'] for r in recs] == ['e/a.jpg', 'e/b.jpg'] and recs[1]['boxes_xywh'].shape == (1, 4)


def test_synthetic_dataset_layout_and_determinism(tmp_path):
    from rcnn.dataset.synthetic import generate
    counts = generate(str(tmp_path / 'a'), train=6, val=3, seed=4)
    generate(str(tmp_path / 'b'), train=6, val=3, seed=4)
    for split in ('train', 'val'):
        a = (tmp_path / 'a' / split / 'label.txt').read_text()
        assert a == (tmp_path / 'b' / split / 'label.txt').read_text()
    train = parse_label_file(str(tmp_path / 'a' / 'train' / 'label.txt'))
    assert len(train) == 6 and sum(len(r['boxes_xywh']) for r in train) == counts['train'] >= 6
    assert all((r['landmarks'][:, :, 2] == 1.0).all() for r in train)  # all five points visible
    first = train[0]
    img = cv2.imread(str(tmp_path / 'a' / 'train' / 'images' / first['path']))
    assert img is not None and first['path'].split('/')[0] in ('0--Parade', '1--Handshaking')
    b = first['boxes_xywh']
    xs = first['landmarks'][:, :, 0]
    inside = (xs >= b[:, None, 0]) & (xs <= b[:, None, 0] + b[:, None, 2])
    assert inside.all()  # landmarks lie inside their face box
    val = (tmp_path / 'a' / 'val' / 'label.txt').read_text().splitlines()
    assert all(len(line.split()) == 4 for line in val if not line.startswith('#'))
    assert np.array_equal(cv2.imread(str(tmp_path / 'a' / 'val' / 'images' / val[0][2:])),
                          cv2.imread(str(tmp_path / 'b' / 'val' / 'images' / val[0][2:])))


def test_an_image_replaced_after_caching_is_read_again(tmp_path):
    """An image replaced by one of another size after the roidb was cached: the cache is rebuilt (its size and
    mtime are part of it), and an image replaced during training is an error naming it, never a crop and a
    flip computed for the old size."""
    import cv2
    import time
    from rcnn.config import get_config
    from rcnn.dataset.retinaface import AnnotationError, RetinaFaceDataset
    from rcnn.dataset.synthetic import generate
    from rcnn.io.image import get_crop_image
    generate(str(tmp_path / 'retinaface'), train=2, val=1, seed=9)
    first = RetinaFaceDataset('train', str(tmp_path), str(tmp_path / 'retinaface')).gt_roidb()
    path = first[0]['image']
    img = cv2.imread(path)
    time.sleep(0.01)
    cv2.imwrite(path, cv2.resize(img, (img.shape[1] + 40, img.shape[0] + 20)))
    again = RetinaFaceDataset('train', str(tmp_path), str(tmp_path / 'retinaface')).gt_roidb()
    assert (again[0]['width'], again[0]['height']) == (img.shape[1] + 40, img.shape[0] + 20)
    with pytest.raises(AnnotationError, match='is %dx%d now, %dx%d when its boxes were read'
                       % (img.shape[1] + 40, img.shape[0] + 20, img.shape[1], img.shape[0])):
        get_crop_image(first[0], get_config('mnet', IMAGE_SIZE=128), np.random.RandomState(0))
