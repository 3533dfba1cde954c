"""Anchors, box math, kernels vs their numpy twins, NMS and config presets."""
import numpy as np
import pytest

from rcnn.config import get_config
from rcnn.processing import anchors as A
from rcnn.processing import bbox_transform as B
from rcnn.processing import nms as N


def test_base_anchors_rac_ssh_hand_computed():
    # base window (0,0,15,15): centre 7.5; scale s gives side 16 s: x1 = 7.5 - (16 s - 1) / 2
    np.testing.assert_array_equal(A.generate_anchors(16, (1.0,), (2, 1)), [[-8, -8, 23, 23], [0, 0, 15, 15]])
    np.testing.assert_array_equal(A.generate_anchors(16, (1.0,), (32, 16)),
                                  [[-248, -248, 263, 263], [-120, -120, 135, 135]])
    np.testing.assert_array_equal(A.generate_anchors(16, (1.0,), (8, 4)), [[-56, -56, 71, 71], [-24, -24, 39, 39]])


def test_net3a_ratio_anchor_is_13x20():
    # ratio 1.5: w = round(sqrt(256 / 1.5)) = round(13.06) = 13, h = round(13 * 1.5) = round(19.5) = 20
    cfg = A.anchor_config('net3a')
    base = A.base_anchors_fpn(cfg['anchor_cfg'], cfg['strides'])[8]
    assert base.shape == (4, 4)  # ratios outer (1, 1.5), scales inner (2, 1)
    np.testing.assert_array_equal(base[3], [1.5, -2.0, 13.5, 17.0])  # 13 x 20 around (7.5, 7.5)
    w, h = base[3, 2] - base[3, 0] + 1, base[3, 3] - base[3, 1] + 1
    assert (w, h) == (13, 20)


@pytest.mark.parametrize('name,strides,num', [
    ('net3', (32, 16, 8), 2), ('net3a', (32, 16, 8), 4), ('net4', (32, 16, 8, 4), 2),
    ('net4a', (32, 16, 8, 4), 4), ('net5', (64, 32, 16, 8, 4), 3), ('net5a', (64, 32, 16, 8, 4), 6),
    ('net6', (128, 64, 32, 16, 8, 4), 1), ('ssh', (32, 16, 8), 2), ('vgg', (32, 16, 8), 2),
    ('x3', (32, 16, 8), 2), ('x3a', (32, 16, 8), 4), ('x5', (64, 32, 16, 8, 4), 3)])
def test_every_network_preset(name, strides, num):
    cfg = A.anchor_config(name)
    assert cfg['strides'] == strides
    assert cfg['num_anchors'] == num
    for s, base in A.base_anchors_fpn(cfg['anchor_cfg'], strides).items():
        assert base.shape == (num, 4)
        np.testing.assert_allclose((base[:, 0] + base[:, 2]) / 2, 7.5, atol=1e-3)  # all centred on the base window


def test_net5_octave_scales_and_means():
    cfg = A.anchor_config('net5')
    np.testing.assert_allclose(cfg['anchor_cfg'][4]['SCALES'], [1, 2 ** (1 / 3), 2 ** (2 / 3)])
    np.testing.assert_allclose(cfg['anchor_cfg'][64]['SCALES'], [2 ** 4, 2 ** (13 / 3), 2 ** (14 / 3)])
    assert A.anchor_config('x3')['pixel_stds'] == (57.375, 57.12, 58.395)
    assert A.anchor_config('ssh')['pixel_means'] == (103.939, 116.779, 123.68)
    with pytest.raises(ValueError, match='net3a'):
        A.anchor_config('net7')


def test_anchor_plane_layout_and_cython_twin():
    base = A.generate_anchors(16, (1.0,), (2, 1))
    plane = A.anchors_plane(3, 4, 8, base)
    assert plane.shape == (3, 4, 2, 4) and plane.dtype == np.float32
    np.testing.assert_array_equal(plane[2, 1, 0], [-8 + 8, -8 + 16, 23 + 8, 23 + 16])  # cell (i=2, j=1)
    np.testing.assert_array_equal(plane.reshape(-1, 4)[:2], base)  # (i, j, a) order, a fastest
    from rcnn.cython.anchors import anchors_cython
    rng = np.random.RandomState(0)
    for h, w, stride in [(0, 5, 8), (1, 1, 32), (20, 37, 16), (80, 80, 8)]:
        base = rng.uniform(-300, 300, (3, 4)).astype(np.float32)
        np.testing.assert_array_equal(anchors_cython(h, w, stride, base), A.anchors_plane_py(h, w, stride, base))


def test_anchor_count_640():
    cfg = A.anchor_config('net3')
    cache = A.AnchorCache(cfg['anchor_cfg'], cfg['strides'])
    assert sum(cache.get(s, 640 // s, 640 // s).shape[0] for s in cfg['strides']) == 16800


def test_transform_hand_values():
    np.testing.assert_allclose(B.nonlinear_transform([[0, 0, 15, 15]], [[2, 2, 17, 17]]), [[0.125, 0.125, 0, 0]])
    np.testing.assert_allclose(B.nonlinear_transform([[0, 0, 15, 15]], [[0, 0, 31, 31]]),
                               [[0.5, 0.5, np.log(2), np.log(2)]])
    lm = np.array([[[7.5, 7.5], [15.5, 7.5], [7.5, -0.5], [0, 0], [23.5, 23.5]]])
    np.testing.assert_allclose(B.landmark_transform([[0, 0, 15, 15]], lm),
                               [[0, 0, 0.5, 0, 0, -0.5, -7.5 / 16, -7.5 / 16, 1, 1]])


def test_encode_decode_round_trip():
    rng = np.random.RandomState(1)
    anchors = np.hstack([rng.uniform(0, 500, (200, 2))] * 2) + np.hstack([np.zeros((200, 2)),
                                                                          rng.uniform(5, 300, (200, 2))])
    gt = np.hstack([rng.uniform(0, 500, (200, 2))] * 2) + np.hstack([np.zeros((200, 2)),
                                                                     rng.uniform(1, 300, (200, 2))])
    np.testing.assert_allclose(B.nonlinear_pred(anchors, B.nonlinear_transform(anchors, gt)), gt, atol=1e-6)
    pts = rng.uniform(-50, 600, (200, 5, 2))
    np.testing.assert_allclose(B.landmark_pred(anchors, B.landmark_transform(anchors, pts)), pts, atol=1e-6)
    assert B.nonlinear_pred(np.zeros((0, 4)), np.zeros((0, 4))).shape == (0, 4)
    assert B.landmark_pred(np.zeros((0, 4)), np.zeros((0, 10))).shape == (0, 5, 2)


def test_clip_and_flip():
    boxes = np.array([[-5.0, 3, 700, 500]])
    np.testing.assert_array_equal(B.clip_boxes(boxes, (480, 640)), [[0, 3, 639, 479]])
    np.testing.assert_array_equal(B.flip_boxes(np.array([[10.0, 0, 19, 5]]), 100), [[80, 0, 89, 5]])
    lm = np.arange(15, dtype=np.float64).reshape(1, 5, 3)
    f = B.flip_landmarks(lm, 100)
    np.testing.assert_array_equal(f[0, :, 0], 99 - lm[0, [1, 0, 2, 4, 3], 0])
    np.testing.assert_array_equal(f[0, :, 2], lm[0, [1, 0, 2, 4, 3], 2])  # flags travel with their point


def random_boxes(rng, n, degenerate=True):
    xy = rng.uniform(0, 400, (n, 2))
    wh = rng.uniform(-3 if degenerate else 1, 80, (n, 2))
    return np.hstack([xy, xy + wh])


def test_bbox_overlaps_cython_equals_numpy():
    from rcnn.cython.bbox import bbox_overlaps_cython
    rng = np.random.RandomState(2)
    for n, k in [(0, 3), (3, 0), (1, 1), (300, 40)]:
        b, q = random_boxes(rng, n), random_boxes(rng, k)
        np.testing.assert_allclose(bbox_overlaps_cython(b, q), B.bbox_overlaps_py(b, q), rtol=0, atol=1e-12)
    # +1 convention: (0,0,9,9) vs (5,0,14,9): inter 5x10 = 50, union 150
    np.testing.assert_allclose(B.bbox_overlaps([[0, 0, 9, 9]], [[5, 0, 14, 9]]), [[1 / 3]])


def test_nms_hand_made_case():
    dets = np.array([[0, 0, 9, 9, 0.9],      # kept
                     [5, 0, 14, 9, 0.8],     # IoU 1/3 with box 0: kept at 0.3? no: 1/3 >= 0.3 -> suppressed
                     [1, 1, 10, 10, 0.95],   # best; IoU with box 0 = 81/119 = 0.68
                     [100, 100, 120, 120, 0.5]], dtype=np.float32)
    for fn in (N.py_nms, N.nms):
        np.testing.assert_array_equal(fn(dets, 0.3), [2, 3])
        np.testing.assert_array_equal(fn(dets, 0.7), [2, 0, 1, 3])
    # IoU exactly at the threshold is suppressed (>=): boxes 0 and 1 have IoU 1/3
    two = dets[[0, 1]]
    np.testing.assert_array_equal(N.nms(two, np.float32(1 / 3)), [0])
    assert N.nms(np.zeros((0, 5), np.float32), 0.4).shape == (0,)


def test_cpu_nms_equals_numpy_twin():
    from rcnn.cython.cpu_nms import cpu_nms
    rng = np.random.RandomState(3)
    for n in (1, 2, 50, 2000):
        dets = np.hstack([random_boxes(rng, n), rng.rand(n, 1)]).astype(np.float32)
        dets[: n // 10, 4] = 0.5  # ties
        for thr in (0.0, 0.3, 0.4, 0.7, 1.0):
            np.testing.assert_array_equal(cpu_nms(dets, thr), N.py_nms(dets, thr))


def test_bbox_vote_hand_case():
    det = np.array([[0, 0, 10, 10, 0.9], [0, 0, 12, 12, 0.6], [50, 50, 60, 60, 0.8], [200, 200, 210, 210, 0.3]])
    det = det[np.argsort(-det[:, 4])]
    out = N.bbox_vote(det, 0.4)
    # group {0.9, 0.6}: mean box weighted by score; 0.8 alone -> dropped; 0.3 alone and last -> kept
    np.testing.assert_allclose(out[0], [0, 0, (10 * .9 + 12 * .6) / 1.5, (10 * .9 + 12 * .6) / 1.5, 0.9])
    np.testing.assert_allclose(out[1], [200, 200, 210, 210, 0.3])
    assert out.shape == (2, 5)
    assert N.bbox_vote(np.zeros((0, 5)), 0.4).shape == (0, 5)


def test_config_presets_are_fresh_and_complete():
    mnet, resnet = get_config('mnet'), get_config('resnet')
    assert (mnet.HEAD_FILTER_NUM, mnet.CONTEXT_FILTER_RATIO, mnet.TRAIN.BATCH_IMAGES, mnet.lr) == (64, 1, 16, 0.01)
    assert (resnet.HEAD_FILTER_NUM, resnet.CONTEXT_FILTER_RATIO, resnet.TRAIN.BATCH_IMAGES) == (256, 2, 8)
    assert resnet.lr_step == '1,2,3,4,5,55,68,80' and resnet.COLOR_MODE == 2 and not resnet.LAYER_FIX
    assert mnet.RPN_FEAT_STRIDE == (32, 16, 8) and mnet.NUM_ANCHORS == 2
    assert mnet.RPN_ANCHOR_CFG['32']['SCALES'] == (32, 16)
    mnet.TRAIN.BATCH_IMAGES = 1
    assert get_config('mnet').TRAIN.BATCH_IMAGES == 16  # no shared state
    assert get_config('mnet', TRAIN__BATCH_IMAGES=4, lr=0.1).TRAIN.BATCH_IMAGES == 4
    with pytest.raises(KeyError):
        get_config('mnet', NOPE=1)
    with pytest.raises(ValueError, match='mnet'):
        get_config('vgg16')


def test_every_config_key_is_commented():
    import inspect
    import rcnn.config as C
    src = inspect.getsource(C._common)
    for line in src.splitlines():
        if line.strip().startswith("'") and ':' in line and not line.rstrip().endswith('{'):
            assert '#' in line, line
