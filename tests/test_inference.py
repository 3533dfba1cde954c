"""RetinaFace class: parity with the original implementation, inputs, checkpoints, batch use, CLI."""
import json
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from conftest import ROOT, assert_matches_reference as _assert_matches, detect_reference_setting, shared_path
from rcnn.core.checkpoint import CheckpointError
from retinaface import RetinaFace, single_scale

@pytest.fixture(scope='module')
def detector(mnet25_prefix):
    return RetinaFace(mnet25_prefix, 0, ctx_id=-1, network='net3')


@pytest.mark.parametrize('image', ['t1.jpg', 't4.jpg'])
@pytest.mark.parametrize('setting', ['a_testpy', 'b_640x480', 'c_640x480_flip'])
def test_parity_with_original_detections(detector, image, setting):
    faces, landmarks = detect_reference_setting(detector, image, setting)
    assert faces.dtype == np.float32 and landmarks.dtype == np.float32


def test_raw_outputs_match_original(detector):
    ref = json.load(open(shared_path('reference', 'orig_mnet25_raw.json')))
    img = cv2.resize(cv2.imread(shared_path('images', 't1.jpg')), (640, 640), interpolation=cv2.INTER_LINEAR)
    tensor = detector._to_tensor([img])
    assert float(tensor.astype(np.float64).sum()) == ref['input']['tensor_sum']
    np.testing.assert_array_equal(tensor.reshape(-1)[:10], ref['input']['tensor_first10'])
    for out, r in zip(detector.forward(tensor), ref['outputs']):
        assert list(out.shape) == r['shape']
        np.testing.assert_allclose(out.reshape(-1)[:10], r['first10'], atol=1e-4)
        assert abs(out.astype(np.float64).sum() - r['sum']) <= 1e-4 * max(1.0, r['abs_sum'])
        assert abs(out.min() - r['min']) < 1e-4 and abs(out.max() - r['max']) < 1e-4


def _reference_detect(det, img, threshold, scale):
    """Independent, loop-based decoding in the original's style (no shared code with retinaface.py)."""
    im = cv2.resize(img, None, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR) if scale != 1 else img
    outs = det.forward(det._to_tensor([im]))
    base = {32: [(-248, -248, 263, 263), (-120, -120, 135, 135)], 16: [(-56, -56, 71, 71), (-24, -24, 39, 39)],
            8: [(-8, -8, 23, 23), (0, 0, 15, 15)]}
    rows = []
    for level, s in enumerate((32, 16, 8)):
        prob, box, lmk = outs[3 * level: 3 * level + 3]
        for i in range(prob.shape[2]):
            for j in range(prob.shape[3]):
                for a in range(2):
                    score = prob[0, 2 + a, i, j]
                    if score < threshold:
                        continue
                    x1, y1, x2, y2 = [v + o for v, o in zip(base[s][a], (j * s, i * s, j * s, i * s))]
                    w, h = x2 - x1 + 1.0, y2 - y1 + 1.0
                    cx, cy = x1 + 0.5 * (w - 1), y1 + 0.5 * (h - 1)
                    dx, dy, dw, dh = box[0, 4 * a: 4 * a + 4, i, j]
                    px, py, pw, ph = dx * w + cx, dy * h + cy, np.exp(dw) * w, np.exp(dh) * h
                    b = [px - 0.5 * (pw - 1), py - 0.5 * (ph - 1), px + 0.5 * (pw - 1), py + 0.5 * (ph - 1)]
                    b = [min(max(b[0], 0), im.shape[1] - 1), min(max(b[1], 0), im.shape[0] - 1),
                         min(max(b[2], 0), im.shape[1] - 1), min(max(b[3], 0), im.shape[0] - 1)]
                    pts = [(lmk[0, 10 * a + 2 * p, i, j] * w + cx, lmk[0, 10 * a + 2 * p + 1, i, j] * h + cy)
                           for p in range(5)]
                    rows.append((score, [v / scale for v in b], [(x / scale, y / scale) for x, y in pts]))
    rows.sort(key=lambda r: -r[0])
    kept = []
    for score, b, pts in rows:
        ok = True
        for _, kb, _ in kept:
            iw = min(b[2], kb[2]) - max(b[0], kb[0]) + 1
            ih = min(b[3], kb[3]) - max(b[1], kb[1]) + 1
            if iw > 0 and ih > 0:
                inter = iw * ih
                union = (b[2] - b[0] + 1) * (b[3] - b[1] + 1) + (kb[2] - kb[0] + 1) * (kb[3] - kb[1] + 1) - inter
                if inter / union >= 0.4:
                    ok = False
                    break
        if ok:
            kept.append((score, b, pts))
    return [{'score': s, 'box': b, 'landmarks': p} for s, b, p in kept]


@pytest.mark.parametrize('image', ['t2.jpg', 't3.jpg', 't5.jpg', 't6.jpg'])
def test_other_images_match_reference_decoder(detector, image):
    img = cv2.imread(shared_path('images', image))
    scale = min(1.0, 1024.0 / max(img.shape[:2]))
    faces, landmarks = detector.detect(img, 0.5, scales=[scale])
    assert len(faces) >= 3
    _assert_matches(faces, landmarks, _reference_detect(detector, img, 0.5, scale), 0.5)


def test_batch_equals_one_by_one(detector):
    imgs = [cv2.resize(cv2.imread(shared_path('images', n)), (480, 360)) for n in ('t1.jpg', 't4.jpg', 't5.jpg')]
    imgs.append(cv2.imread(shared_path('images', 't1.jpg'))[:300, :400])  # a different size in the same call
    batch = detector.detect_batch(imgs, 0.5, scales=[1.0, 0.5], do_flip=True)
    for img, (faces, lms) in zip(imgs, batch):
        one_faces, one_lms = detector.detect(img, 0.5, scales=[1.0, 0.5], do_flip=True)
        np.testing.assert_allclose(faces, one_faces, atol=1e-3)
        np.testing.assert_allclose(lms, one_lms, atol=1e-3)


def test_executor_reused_per_shape(detector):
    img = np.full((200, 300, 3), 128, np.uint8)
    detector.detect(img)
    exe = detector.model._executors[(1, 3, 200, 300)][0]
    detector.detect(img)
    assert detector.model._executors[(1, 3, 200, 300)][0] is exe


def test_no_faces_gives_empty_arrays(detector):
    faces, landmarks = detector.detect(np.zeros((240, 320, 3), np.uint8), threshold=0.9)
    assert faces.shape == (0, 5) and landmarks.shape == (0, 5, 2)


def test_vote_mode_and_input_kinds(mnet25_prefix, tmp_path):
    img = cv2.imread(shared_path('images', 't1.jpg'))
    small = cv2.resize(img, (640, 443))
    voter = RetinaFace(mnet25_prefix, 0, ctx_id=-1, vote=True)
    faces, landmarks = voter.detect(small, 0.5)
    assert landmarks is None and faces.shape[1] == 5 and len(faces) >= 4
    det = RetinaFace(mnet25_prefix, 0, ctx_id=-1, max_side=1000)
    base, _ = det.detect(small, 0.5)
    gray = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
    assert len(det.detect(gray, 0.5)[0]) >= 3                                     # (H, W) grayscale
    bgra = np.dstack([small, np.full(small.shape[:2], 255, np.uint8)])
    np.testing.assert_allclose(det.detect(bgra, 0.5)[0], base)                    # BGRA
    np.testing.assert_allclose(det.detect(small.astype(np.float32), 0.5)[0], base, atol=1e-4)  # float 0..255
    path = str(tmp_path / 'x.jpg')
    cv2.imwrite(path, small)
    assert len(det.detect(path, 0.5)[0]) == len(base)                            # file path
    for bad, msg in [(None, 'None'), (np.zeros((0, 0, 3), np.uint8), 'empty'),
                     (small.astype(np.float32) / 255.0, '0..1'), (np.zeros((5, 5, 2), np.uint8), 'shape'),
                     (str(tmp_path / 'missing.jpg'), 'not found'), (small, 'max_side'), (small, 'becomes empty')]:
        with pytest.raises(ValueError, match=msg):
            det.detect(bad, 0.5, scales={'max_side': [2.0], 'becomes empty': [0.0001]}.get(msg, [1.0]))
    not_image = tmp_path / 'notes.jpg'
    not_image.write_text('hello')
    with pytest.raises(ValueError, match='not a readable image'):
        det.detect(str(not_image))


def test_checkpoint_errors_name_the_file(mnet25_prefix, tmp_path):
    with pytest.raises(CheckpointError, match=r'mnet.25-0003.params.*available epochs for this prefix: 0'):
        RetinaFace(mnet25_prefix, 3, ctx_id=-1)
    lonely = str(tmp_path / 'lonely')
    shutil.copy(mnet25_prefix + '-0000.params', lonely + '-0000.params')
    with pytest.raises(CheckpointError, match='symbol file not found: .*lonely-symbol.json'):
        RetinaFace(lonely, 0, ctx_id=-1)
    # R50 graph with mnet.25 params: "another network"
    mixed = str(tmp_path / 'mixed')
    shutil.copy(shared_path('models', 'R50-symbol.json'), mixed + '-symbol.json')
    shutil.copy(mnet25_prefix + '-0000.params', mixed + '-0000.params')
    with pytest.raises(CheckpointError, match='mixed-0000.params does not fit its graph.*another network'):
        RetinaFace(mixed, 0, ctx_id=-1)
    broken = str(tmp_path / 'broken')
    shutil.copy(mnet25_prefix + '-symbol.json', broken + '-symbol.json')
    with open(broken + '-0000.params', 'wb') as f:
        f.write(open(mnet25_prefix + '-0000.params', 'rb').read()[:1000])
    with pytest.raises(CheckpointError, match='cannot read params file .*broken-0000.params'):
        RetinaFace(broken, 0, ctx_id=-1)
    with pytest.raises(CheckpointError, match='no .*nothing-NNNN.params file exists; put the published model'):
        RetinaFace(str(tmp_path / 'nothing'), 0, ctx_id=-1)
    with pytest.raises(ValueError, match='valid names'):
        RetinaFace(mnet25_prefix, 0, ctx_id=-1, network='net9')


def test_cli_draws_and_saves_json(mnet25_prefix, tmp_path):
    images = tmp_path / 'in'
    images.mkdir()
    shutil.copy(shared_path('images', 't1.jpg'), images / 't1.jpg')
    cv2.imwrite(str(images / 'small.png'), cv2.resize(cv2.imread(shared_path('images', 't4.jpg')), (400, 300)))
    out = tmp_path / 'out'
    run = subprocess.run([sys.executable, os.path.join(ROOT, 'retinaface.py'), '--prefix', mnet25_prefix,
                          '--epoch', '0', '--image', str(images), '--output', str(out)],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    dets = json.load(open(out / 'detections.json'))
    assert len(dets[str(images / 't1.jpg')]) == 6
    drawn = cv2.imread(str(out / 't1.jpg'))
    assert drawn.shape == (886, 1280, 3)
    assert not np.array_equal(drawn, cv2.imread(str(images / 't1.jpg')))
    bad = subprocess.run([sys.executable, os.path.join(ROOT, 'retinaface.py'), '--prefix', str(tmp_path / 'nope'),
                          '--image', str(images / 't1.jpg')], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and 'nope-0000.params' in bad.stderr and 'Traceback' not in bad.stderr


def test_preset_normalisation_of_other_networks(mnet25_prefix):
    """Presets with means/stds (x3: BGR means 103.52.. and stds 57.375..) normalise each RGB channel."""
    det = RetinaFace(mnet25_prefix, 0, ctx_id=-1, network='x3')
    img = np.zeros((2, 3, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = 10, 20, 30  # B, G, R
    t = det._to_tensor([img])[0]
    np.testing.assert_allclose(t[:, 0, 0], [(30 - 123.675) / 58.395, (20 - 116.28) / 57.12, (10 - 103.52) / 57.375],
                               rtol=1e-6)
    plain = RetinaFace(mnet25_prefix, 0, ctx_id=-1, network='net3')
    assert plain._to_tensor([img])[0][:, 0, 0].tolist() == [30, 20, 10]  # net3: raw RGB values


def test_detect_center_picks_the_large_central_face(detector):
    img = cv2.imread(shared_path('images', 't1.jpg'))
    faces, _ = detector.detect(img, 0.8)
    face, landmarks = detector.detect_center(img, 0.8)
    area = (faces[:, 2] - faces[:, 0]) * (faces[:, 3] - faces[:, 1])
    off = ((faces[:, 0] + faces[:, 2]) / 2 - 640) ** 2 + ((faces[:, 1] + faces[:, 3]) / 2 - 443) ** 2
    np.testing.assert_array_equal(face, faces[np.argmax(area - 2 * off)])
    assert landmarks.shape == (5, 2)
    assert detector.detect_center(np.zeros((100, 100, 3), np.uint8), 0.9) == (None, None)


def test_two_class_softmax_by_hand():
    from rcnn.processing.decode import two_class_softmax
    scores = np.array([0.0, 1.0, -200.0, 3.0, 0.0, 200.0], dtype=np.float32).reshape(1, 6, 1, 1)  # A = 3
    prob = two_class_softmax(scores)  # pairs (bg, face): (0, 3), (1, 0), (-200, 200)
    face = [1 / (1 + np.exp(-3.0)), 1 / (1 + np.exp(1.0)), 1.0]
    np.testing.assert_allclose(prob[0, 3:, 0, 0], face, rtol=1e-6)
    np.testing.assert_allclose(prob[0, :3, 0, 0], 1 - np.array(face), atol=1e-7)
    assert prob.dtype == np.float32 and np.isfinite(prob).all()


@pytest.mark.parametrize('model, network', [('mnet.25', 'net3'), ('mnet_cov2', 'net3l')])
def test_host_softmax_equals_the_graphs(model, network):
    """On the CPU the detector binds the graph without its classification softmax and computes the
    probabilities in numpy: every output equals the full graph's on a real photo."""
    from rcnn.compat import mx
    prefix = shared_path('models', model + '-0000.params')[:-len('-0000.params')]
    det = RetinaFace(prefix, 0, ctx_id=-1, network=network)
    cls = [i for i, n in enumerate(det.sym.list_outputs()) if 'cls_prob' in n]
    assert det.model._host_softmax == cls and len(cls) == 3
    tensor = det._to_tensor([cv2.resize(cv2.imread(shared_path('images', 't1.jpg')), (640, 480))])
    args = dict(det.model._args, data=mx.nd.array(tensor))
    exe = det.sym.bind(mx.cpu(), {k: v for k, v in args.items() if k in det.sym.list_arguments()},
                       grad_req='null', aux_states=det.model._auxs)
    graph = [o.asnumpy() for o in exe.forward(is_train=False)]
    ours = det.forward(tensor)
    for i, (a, b) in enumerate(zip(ours, graph)):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6 if i in cls else 0)


def test_anchor_planes_stay_bounded_over_many_image_sizes(mnet25_prefix):
    """Images of 150 sizes (an evaluation at each image's own size): the detector keeps at most 64 anchor
    planes (the former cache kept one per stride and size for ever: ~1,100 planes, 600 MB over 307 val
    images), and a plane recomputed after eviction gives the same detections."""
    rng = np.random.RandomState(0)
    det = RetinaFace(mnet25_prefix, 0, ctx_id=-1)
    img = cv2.imread(shared_path('images', 't1.jpg'))
    first, _ = det.detect(img, 0.5)
    for _ in range(150):
        h, w = rng.randint(48, 160, size=2)
        det.detect(np.zeros((h, w, 3), np.uint8), 0.5)
    assert len(det._anchors) <= det._anchors.max_planes == 64
    again, _ = det.detect(img, 0.5)
    np.testing.assert_array_equal(first, again)
