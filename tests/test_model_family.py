"""The rest of the RetinaFace family: the mask-aware Anti-Cov model (parity with the original detector),
graphs that do not fit their preset (refused, never misdecoded), and the original detector's remaining API."""
import json
import os
import subprocess
import sys

import cv2
from rcnn.compat import mx
import numpy as np
import pytest

from conftest import ROOT, shared_path
from rcnn.core.checkpoint import CheckpointError
from rcnn.processing.pose import POSE_FRONTAL, POSE_LEFT, POSE_RIGHT, large_pose
from retinaface import RetinaFace, single_scale

SETTINGS = {'a_testpy': 0.8, 'b_640x480': 0.5, 'c_640x480_flip': 0.5}  # thresholds of the reference runs
SCORE_MARGIN = 0.005


@pytest.fixture(scope='module')
def cov_prefix():
    shared_path('models', 'mnet_cov2-0000.params')
    return shared_path('models', 'mnet_cov2-0000.params')[:-len('-0000.params')]


@pytest.fixture(scope='module')
def cov(cov_prefix):
    return RetinaFace(cov_prefix, 0, ctx_id=-1, network='net3l')


@pytest.mark.parametrize('image', ['t1.jpg', 't4.jpg', 'masked_t1.jpg'])
@pytest.mark.parametrize('setting', sorted(SETTINGS))
def test_anticov_parity_with_original(cov, image, setting):
    ref = json.load(open(shared_path('reference', 'orig_mnet_cov2_detect.json')))['images'][image][setting]
    img = cv2.imread(shared_path('images', image))
    if setting == 'a_testpy':
        assert abs(single_scale(img.shape, 640, 1080) - ref['scale']) < 1e-12  # the Anti-Cov demo's rule
    else:
        img = cv2.resize(img, (640, 480), interpolation=cv2.INTER_LINEAR)
    threshold = SETTINGS[setting]
    faces, landmarks = cov.detect(img, threshold, scales=[ref['scale']], do_flip=setting.endswith('flip'))
    assert faces.shape[1] == 6 and faces.dtype == np.float32 and landmarks.shape[1:] == (5, 2)
    dets = ref['detections']
    ref_scores = np.array([d['score'] for d in dets])
    keep_ref = np.abs(ref_scores - threshold) >= SCORE_MARGIN
    keep = np.abs(faces[:, 4] - threshold) >= SCORE_MARGIN
    assert keep.sum() == keep_ref.sum()
    np.testing.assert_allclose(faces[keep, :4], np.array([d['box'] for d in dets])[keep_ref], atol=0.01)
    np.testing.assert_allclose(faces[keep, 4], ref_scores[keep_ref], atol=1e-4)
    np.testing.assert_allclose(faces[keep, 5], np.array([d['mask'] for d in dets])[keep_ref], atol=1e-4)
    np.testing.assert_allclose(landmarks[keep], np.array([d['landmarks'] for d in dets])[keep_ref], atol=0.01)


def test_anticov_masks_where_painted(cov):
    """masked_t1 is t1 with masks painted on three faces: those three, and only they, get high mask scores."""
    plain, _ = cov.detect(cv2.imread(shared_path('images', 't1.jpg')), 0.8, scales=[640 / 886])
    masked, _ = cov.detect(cv2.imread(shared_path('images', 'masked_t1.jpg')), 0.8, scales=[640 / 886])
    assert len(plain) == len(masked) == 6
    assert (plain[:, 5] < 0.3).all() and (masked[:, 5] > 0.9).sum() == 3


def test_anticov_loaded_as_net3_is_refused(cov_prefix):
    with pytest.raises(CheckpointError, match=r"mnet_cov2-symbol.json: the graph has a type head .*use network='net3l'"):
        RetinaFace(cov_prefix, 0, ctx_id=-1, network='net3')


def test_face_only_model_as_net3l_is_refused(mnet25_prefix):
    with pytest.raises(CheckpointError, match=r"network='net3l' is the Anti-Cov preset .* use network='net3'"):
        RetinaFace(mnet25_prefix, 0, ctx_id=-1, network='net3l')


def _graph_with_outputs(tmp_path, mnet25_prefix, rename=None, drop=(), order=None):
    """A checkpoint with the published weights whose output list is edited (renamed, dropped, reordered)."""
    sym = mx.sym.load(mnet25_prefix + '-symbol.json')
    internals = sym.get_internals()
    names = [n[:-len('_output')] for n in sym.list_outputs()]
    outs = []
    for n in names:
        if n in drop:
            continue
        node = internals[n + '_output']
        outs.append(mx.sym.identity(node, name=rename[n]) if rename and n in rename else node)
    if order is not None:
        outs = [outs[i] for i in order]
    prefix = str(tmp_path / 'edited')
    mx.sym.Group(outs).save(prefix + '-symbol.json')
    os.symlink(mnet25_prefix + '-0000.params', prefix + '-0000.params')
    return prefix


def test_cascade_graph_is_refused(tmp_path, mnet25_prefix):
    prefix = _graph_with_outputs(tmp_path, mnet25_prefix,
                                 rename={'face_rpn_bbox_pred_stride8': 'face_rpn_bbox_pred_stride8_cas1'})
    with pytest.raises(CheckpointError, match='edited-symbol.json: output face_rpn_bbox_pred_stride8_cas1_output '
                                              'belongs to a cascade model'):
        RetinaFace(prefix, 0, ctx_id=-1)


def test_graph_with_other_strides_is_refused(tmp_path, mnet25_prefix):
    prefix = _graph_with_outputs(tmp_path, mnet25_prefix, drop=['face_rpn_cls_prob_reshape_stride8',
                                                                'face_rpn_bbox_pred_stride8',
                                                                'face_rpn_landmark_pred_stride8'])
    with pytest.raises(CheckpointError, match=r"heads at strides \(32, 16\), network='net3' has \(32, 16, 8\)"):
        RetinaFace(prefix, 0, ctx_id=-1)
    with pytest.raises(CheckpointError, match=r"heads at strides \(32, 16, 8\), network='net5'"):
        RetinaFace(mnet25_prefix, 0, ctx_id=-1, network='net5')


def test_unknown_outputs_are_refused_and_known_ones_in_any_order_decode(tmp_path, mnet25_prefix):
    prefix = _graph_with_outputs(tmp_path, mnet25_prefix, rename={'face_rpn_bbox_pred_stride16': 'my_boxes'})
    with pytest.raises(CheckpointError, match='output my_boxes_output is not a RetinaFace head'):
        RetinaFace(prefix, 0, ctx_id=-1)
    other = tmp_path / 'shuffled'
    other.mkdir()
    prefix = _graph_with_outputs(other, mnet25_prefix, order=[8, 0, 4, 2, 6, 1, 3, 7, 5])
    img = cv2.imread(shared_path('images', 't1.jpg'))
    a = RetinaFace(prefix, 0, ctx_id=-1).detect(img, 0.8, scales=[0.5])
    b = RetinaFace(mnet25_prefix, 0, ctx_id=-1).detect(img, 0.8, scales=[0.5])
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_anchor_count_mismatch_is_refused(mnet25_prefix):
    with pytest.raises(CheckpointError, match='has 4 channels, network=.net3a. expects 8'):
        RetinaFace(mnet25_prefix, 0, ctx_id=-1, network='net3a')


def test_list_input_suppresses_all_images_together(mnet25_prefix):
    det = RetinaFace(mnet25_prefix, 0, ctx_id=-1)
    img = cv2.imread(shared_path('images', 't1.jpg'))
    one, _ = det.detect(img, 0.8, scales=[0.5])
    both, lms = det.detect([img, img.copy()], 0.8, scales=[0.5])
    # the same faces twice, at the same places: NMS over both images' candidates keeps one of each pair
    np.testing.assert_allclose(both, one, atol=1e-4)
    assert lms.shape == (len(one), 5, 2)
    per_image = det.detect_batch([img, img.copy()], 0.8, scales=[0.5])
    assert [len(f) for f, _ in per_image] == [len(one), len(one)]


def test_nms_zero_returns_raw_candidates(mnet25_prefix):
    img = cv2.imread(shared_path('images', 't1.jpg'))
    raw, lms = RetinaFace(mnet25_prefix, 0, ctx_id=-1, nms=0).detect(img, 0.8, scales=[0.5])
    kept, _ = RetinaFace(mnet25_prefix, 0, ctx_id=-1).detect(img, 0.8, scales=[0.5])
    assert len(raw) > len(kept) and lms.shape == (len(raw), 5, 2)
    assert np.all(np.diff(raw[:, 4]) <= 0) and (raw[:, 4] >= 0.8).all()
    for face in kept:  # every kept face is one of the raw candidates
        assert np.abs(raw - face).max(axis=1).min() < 1e-5


@pytest.mark.parametrize('bad', [dict(threshold=-1), dict(threshold=float('nan')), dict(threshold=1.5),
                                 dict(scales=[]), dict(scales=[0.0]), dict(scales=[float('inf')]),
                                 dict(scales='1.0')])
def test_detect_arguments_are_checked(mnet25_prefix, bad):
    det = RetinaFace(mnet25_prefix, 0, ctx_id=-1)
    kwargs = dict(dict(threshold=0.5, scales=[1.0]), **bad)
    with pytest.raises(ValueError, match='threshold|scales'):
        det.detect(np.zeros((64, 64, 3), np.uint8), **kwargs)


def test_scalar_scale_is_accepted_and_bad_nms_refused(mnet25_prefix):
    det = RetinaFace(mnet25_prefix, 0, ctx_id=-1)
    img = np.zeros((64, 64, 3), np.uint8)
    np.testing.assert_array_equal(det.detect(img, 0.5, scales=1.0)[0], det.detect(img, 0.5, scales=[1.0])[0])
    for nms in (1.5, float('nan')):
        with pytest.raises(ValueError, match='nms must be'):
            RetinaFace(mnet25_prefix, 0, ctx_id=-1, nms=nms)


def test_get_input_is_the_network_tensor(mnet25_prefix):
    det = RetinaFace(mnet25_prefix, 0, ctx_id=-1)
    img = cv2.imread(shared_path('images', 't1.jpg'))
    x = det.get_input(img)
    assert x.shape == (1, 3, 886, 1280) and x.dtype == np.float32
    np.testing.assert_array_equal(x[0, 0], img[:, :, 2])  # net3: raw RGB values


def test_large_pose_on_real_detections(mnet25_prefix):
    det = RetinaFace(mnet25_prefix, 0, ctx_id=-1)
    img = cv2.imread(shared_path('images', 't1.jpg'))
    faces, lms = det.detect(img, 0.8, scales=[1024 / 886])
    poses = [det.check_large_pose(lm, face[:4]) for face, lm in zip(faces, lms)]
    assert all(len(p) == 5 for p in poses) and POSE_FRONTAL in [p[0] for p in poses]
    for face, lm in zip(faces, lms):
        pose, left, right, up, down = large_pose(lm, face)
        # the mirror image: x -> W - 1 - x, eyes and mouth corners swap; left and right trade places
        mirrored = lm[[1, 0, 2, 4, 3]].copy()
        mirrored[:, 0] = img.shape[1] - 1 - mirrored[:, 0]
        box = [img.shape[1] - 1 - face[2], face[1], img.shape[1] - 1 - face[0], face[3]]
        m_pose, m_left, m_right, m_up, m_down = large_pose(mirrored, box)
        assert {pose, m_pose} <= {POSE_FRONTAL, POSE_LEFT, POSE_RIGHT} or pose == m_pose
        if left < 10 and right < 10:
            assert abs(m_left - right) < 1e-3 and abs(m_right - left) < 1e-3
        np.testing.assert_allclose([m_up, m_down], [up, down], rtol=1e-4)
    # a face turned hard to one side: the nose next to the left eye/mouth column
    turned = np.array([[100, 100], [140, 100], [104, 120], [100, 140], [136, 140]], np.float32)
    assert large_pose(turned, [90, 80, 150, 160])[0] in (POSE_LEFT, POSE_RIGHT)
    frontal = np.array([[100, 100], [140, 100], [120, 120], [104, 140], [136, 140]], np.float32)
    assert large_pose(frontal, [90, 80, 150, 160])[0] == POSE_FRONTAL


def test_cli_anticov_draws_masks_and_writes_mask_scores(cov_prefix, tmp_path):
    out = tmp_path / 'masked.jpg'
    run = subprocess.run([sys.executable, os.path.join(ROOT, 'retinaface.py'), '--prefix', cov_prefix, '--network',
                          'net3l', '--image', shared_path('images', 'masked_t1.jpg'), '--output', str(out),
                          '--scale', str(640 / 886), '--mask_thresh', '0.5'], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    dets = list(json.load(open(tmp_path / 'masked.json')).values())[0]
    assert len(dets) == 6 and sum(d['mask'] >= 0.5 for d in dets) == 3
    drawn = cv2.imread(str(out))
    green = (drawn[:, :, 1] > 200) & (drawn[:, :, 0] < 60) & (drawn[:, :, 2] < 60)
    assert green.sum() > 500  # the three masked faces' boxes


def test_test_py_evaluates_anticov_as_a_face_detector(cov_prefix, tmp_path):
    """Modes 0 (NMS) and 1 (voting) on real val images: WIDER files of 5 numbers per face, no mask column."""
    data = os.path.dirname(os.path.dirname(shared_path('widerface', 'retinaface', 'val', 'label.txt')))
    for mode in (0, 1):
        out = tmp_path / ('mode%d' % mode)
        res = subprocess.run([sys.executable, os.path.join(ROOT, 'test.py'), '--network', 'net3l', '--prefix',
                              cov_prefix, '--epoch', '0', '--dataset_path', data, '--mode', str(mode), '--limit', '2',
                              '--scales', '0.5', '--output', str(out)], capture_output=True, text=True, cwd=ROOT)
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
        files = sorted(out.rglob('*.txt'))
        assert len(files) == 2
        lines = files[0].read_text().splitlines()
        assert int(lines[1]) == len(lines) - 2 > 0 and all(len(line.split()) == 5 for line in lines[2:])
