"""The detector without MXNet: ``RetinaFace('mnet.25.onnx')`` on ONNX Runtime, through the API, the CLI and test.py.

Runs in two places: in the main environment (MXNet and onnxruntime side by side: the ONNX model must give the
MXNet model's detections and AP), and, by ``make test-onnx``, in an environment made by ``pip install
".[onnx,test]"`` with no MXNet at all, from outside the checkout, against the installed package and an ONNX file
exported beforehand ($RETINAFACE_ONNX_MODEL). The definitions checked: the original implementation's detections
(reference/orig_mnet25_detect.json), the MXNet engine's results, and the official ground truth's AP.
"""
import importlib.util
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from conftest import ROOT, detect_reference_setting, shared_path

HAS_MXNET = importlib.util.find_spec('mxnet') is not None
HAS_ORT = importlib.util.find_spec('onnxruntime') is not None
PHOTOS = ('t1.jpg', 't2.jpg', 't3.jpg', 't4.jpg', 't5.jpg', 't6.jpg', 'masked_t1.jpg')
needs_mxnet = pytest.mark.skipif(not HAS_MXNET, reason='compares with the MXNet engine: MXNet is not installed here')
pytestmark = pytest.mark.skipif(not HAS_ORT, reason='onnxruntime is not installed (pip install onnxruntime)')


@pytest.fixture(scope='module')
def onnx_model(tmp_path_factory, mnet25_prefix):
    """The published mnet.25 as ONNX: $RETINAFACE_ONNX_MODEL (make test-onnx exports it), else exported here."""
    given = os.environ.get('RETINAFACE_ONNX_MODEL')
    if given and os.path.isfile(given):
        return given
    if not HAS_MXNET or importlib.util.find_spec('onnx') is None:
        pytest.skip('no ONNX model given ($RETINAFACE_ONNX_MODEL) and no MXNet + onnx here to export one')
    from rcnn.tools.export_onnx import export
    path = str(tmp_path_factory.mktemp('onnx') / 'mnet.25.onnx')
    export(mnet25_prefix, 0, path)
    return path


@pytest.fixture(scope='module')
def onnx_det(onnx_model):
    from retinaface import RetinaFace
    return RetinaFace(onnx_model, network='net3', ctx_id=-1)


@pytest.fixture(scope='module')
def mxnet_det(mnet25_prefix):
    from retinaface import RetinaFace
    return RetinaFace(mnet25_prefix, 0, network='net3', ctx_id=-1)


def run_tool(cmd, cwd='/'):
    """A subprocess of the code under test: the installed package (make test-onnx), else this checkout."""
    env = dict(os.environ)
    if not os.environ.get('RETINAFACE_INSTALLED'):
        env['PYTHONPATH'] = ROOT + os.pathsep + env.get('PYTHONPATH', '')
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env)


def command(script, module):
    """The installed console command where there is one (make test-onnx), else ``python -m module``."""
    installed = os.path.join(os.path.dirname(sys.executable), script)
    return [installed] if os.environ.get('RETINAFACE_INSTALLED') and os.path.exists(installed) else \
        [sys.executable, '-m', module]


def test_importing_the_detector_imports_no_mxnet_and_changes_nothing(onnx_model):
    """`import retinaface` leaves the environment variables alone and loads no MXNet; an ONNX model detects
    without ever importing it."""
    # (OpenCV's own import adds its folder to LD_LIBRARY_PATH: imported first, as a user's script would)
    code = ('import os, sys, json, cv2; before = dict(os.environ); import retinaface; import rcnn.tools.detect; '
            'after_import = dict(os.environ) == before and "mxnet" not in sys.modules; '
            'det = retinaface.RetinaFace(sys.argv[1], network="net3", ctx_id=-1); '
            'faces, _ = det.detect(sys.argv[2], 0.8); '
            'print(json.dumps([after_import, "mxnet" in sys.modules, len(faces)]))')
    out = run_tool([sys.executable, '-c', code, onnx_model, shared_path('images', 't4.jpg')])
    assert out.returncode == 0, out.stderr[-2000:]
    unchanged, mxnet_loaded, faces = json.loads(out.stdout.strip().splitlines()[-1])
    assert unchanged and not mxnet_loaded and faces > 10


@pytest.mark.parametrize('image', ['t1.jpg', 't4.jpg'])
@pytest.mark.parametrize('setting', ['a_testpy', 'b_640x480', 'c_640x480_flip'])
def test_onnx_detections_match_the_original(onnx_det, image, setting):
    detect_reference_setting(onnx_det, image, setting)
    assert onnx_det.model.kind == 'onnx' and onnx_det.sym is None


@needs_mxnet
def test_onnx_engine_gives_the_mxnet_engines_faces_on_every_photo(onnx_det, mxnet_det):
    """Same faces, boxes and landmarks within 0.01 px, scores within 1e-4, for single scale, two scales with flip
    and a batch; the same aligned crops and pose."""
    from retinaface import single_scale
    imgs = [cv2.imread(shared_path('images', name)) for name in PHOTOS]
    for img in imgs:
        for scales, flip in (([single_scale(img.shape)], False), ([0.5, 1.0], True)):
            a_faces, a_points = mxnet_det.detect(img, 0.5, scales, flip)
            b_faces, b_points = onnx_det.detect(img, 0.5, scales, flip)
            a_faces, a_points = assert_same_faces(a_faces, a_points, b_faces, b_points)
            crops_a, crops_b = mxnet_det.align(img, a_points), onnx_det.align(img, a_points)
            assert np.array_equal(crops_a, crops_b)
            for k in range(len(a_faces)):
                assert mxnet_det.check_large_pose(a_points[k], a_faces[k])[0] == \
                    onnx_det.check_large_pose(b_points[k], b_faces[k])[0]
    small = [cv2.resize(img, (640, 480)) for img in imgs]
    for (a_faces, a_points), (b_faces, b_points) in zip(mxnet_det.detect_batch(small, 0.5),
                                                        onnx_det.detect_batch(small, 0.5)):
        assert_same_faces(a_faces, a_points, b_faces, b_points)


def assert_same_faces(a_faces, a_points, b_faces, b_points, margin=1e-3):
    """Equal within 0.01 px / 1e-4 after dropping faces within `margin` of the threshold (0.5) on either side."""
    keep_a = np.abs(a_faces[:, 4] - 0.5) >= margin
    keep_b = np.abs(b_faces[:, 4] - 0.5) >= margin
    a_faces, a_points, b_faces, b_points = a_faces[keep_a], a_points[keep_a], b_faces[keep_b], b_points[keep_b]
    assert len(a_faces) == len(b_faces) > 0
    np.testing.assert_allclose(b_faces[:, :4], a_faces[:, :4], atol=0.01)
    np.testing.assert_allclose(b_faces[:, 4], a_faces[:, 4], atol=1e-4)
    np.testing.assert_allclose(b_points, a_points, atol=0.01)
    return a_faces, a_points


def pan_video(path, frames=6):
    """An MJPG video panning across t4.jpg (640x360 window); returns the frames as decoded back."""
    img = cv2.imread(shared_path('images', 't4.jpg'))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'MJPG'), 10, (640, 360))
    for i in range(frames):
        x = min(i * 40, img.shape[1] - 640)
        writer.write(np.ascontiguousarray(img[:360, x:x + 640]))
    writer.release()
    cap, decoded = cv2.VideoCapture(str(path)), []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        decoded.append(frame)
    cap.release()
    return decoded


def test_cli_runs_images_folders_video_and_crops_on_onnx(onnx_det, onnx_model, tmp_path):
    detect = command('retinaface', 'rcnn.tools.detect')
    photo = shared_path('images', 't4.jpg')
    out = tmp_path / 't4_drawn.jpg'
    res = run_tool(detect + ['--prefix', onnx_model, '--image', photo, '--output', str(out), '--crops',
                                   str(tmp_path / 'crops')])
    assert res.returncode == 0, res.stderr[-2000:]
    record = json.load(open(tmp_path / 't4_drawn.json'))[photo]
    img = cv2.imread(photo)
    from retinaface import single_scale
    faces, points = onnx_det.detect(img, 0.8, [single_scale(img.shape)])
    assert len(record) == len(faces) > 10
    np.testing.assert_allclose([d['box'] for d in record], faces[:, :4], atol=1e-3)
    assert sorted(os.listdir(tmp_path / 'crops')) == sorted(os.path.basename(d['crop']) for d in record)

    folder = tmp_path / 'photos'
    folder.mkdir()
    for name in ('t1.jpg', 't2.jpg'):
        os.symlink(shared_path('images', name), folder / name)
    res = run_tool(detect + ['--prefix', onnx_model, '--image', str(folder), '--output', str(tmp_path / 'drawn')])
    assert res.returncode == 0, res.stderr[-2000:]
    assert len(json.load(open(tmp_path / 'drawn' / 'detections.json'))) == 2

    frames = pan_video(tmp_path / 'pan.avi')
    res = run_tool(detect + ['--prefix', onnx_model, '--video', str(tmp_path / 'pan.avi'), '--output',
                                   str(tmp_path / 'pan_out.avi'), '--json', str(tmp_path / 'pan.jsonl'),
                                   '--scale', '1.0', '--batch', '4'])
    assert res.returncode == 0, res.stderr[-2000:]
    lines = [json.loads(line) for line in open(tmp_path / 'pan.jsonl')]
    assert len(lines) == len(frames) == 6
    for line, frame in zip(lines, frames):
        faces, _ = onnx_det.detect(frame, 0.8, [1.0])
        assert len(line['faces']) == len(faces)


def test_test_py_evaluates_the_onnx_model(onnx_model, tmp_path):
    """mode 0 on real val images with the official ground truth: ap.json from the ONNX model's result files;
    with MXNet here, the same AP as the checkpoint to 1e-4."""
    data = os.path.dirname(os.path.dirname(shared_path('widerface', 'retinaface', 'val', 'label.txt')))
    gt = shared_path('widerface', 'ground_truth')
    aps = {}
    runs = [('onnx', onnx_model, [])]
    if HAS_MXNET:
        runs.append(('mxnet', os.path.join(os.path.dirname(shared_path('models', 'mnet.25-symbol.json')), 'mnet.25'),
                     ['--epoch', '0']))
    for name, prefix, extra in runs:
        out = tmp_path / name
        res = run_tool(command('retinaface-test', 'rcnn.tools.evaluate') + [
            '--network', 'net3', '--prefix', prefix, '--dataset_path', data, '--mode', '0', '--limit', '12',
            '--gpu', '-1', '--gt', gt, '--output', str(out)] + extra)
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
        assert len(list(out.rglob('*.txt'))) == 12
        aps[name] = json.load(open(out / 'ap.json'))['ap']
    assert all(0.5 < aps['onnx'][key] <= 1.0 for key in ('easy', 'medium', 'hard')), aps  # mnet.25 on real photos
    if HAS_MXNET:
        for key in ('easy', 'medium', 'hard'):
            assert abs(aps['onnx'][key] - aps['mxnet'][key]) <= 1e-4, (key, aps)


def test_a_missing_or_broken_onnx_file_is_named(tmp_path):
    from rcnn.core.checkpoint import CheckpointError
    from retinaface import RetinaFace
    with pytest.raises(CheckpointError, match='not found: .*nothing.onnx'):
        RetinaFace(str(tmp_path / 'nothing.onnx'), ctx_id=-1)
    bad = tmp_path / 'broken.onnx'
    bad.write_bytes(b'\x08\x07not a model')
    with pytest.raises(CheckpointError, match='broken.onnx'):
        RetinaFace(str(bad), ctx_id=-1)


@pytest.mark.skipif(HAS_MXNET, reason='checks the message of an environment without MXNet')
def test_mxnet_features_say_what_to_install_where_mxnet_is_absent(mnet25_prefix):
    from rcnn.compat import MXNetMissingError
    from retinaface import RetinaFace
    with pytest.raises(MXNetMissingError, match='pip install --no-deps mxnet==1.9.1'):
        RetinaFace(mnet25_prefix, 0, ctx_id=-1)
    res = run_tool(command('retinaface', 'rcnn.tools.detect') + [
        '--prefix', mnet25_prefix, '--image', shared_path('images', 't1.jpg')])
    assert res.returncode == 2 and 'mxnet==1.9.1' in res.stderr and 'Traceback' not in res.stderr
    res = run_tool(command('retinaface-train', 'rcnn.tools.train') + ['--network', 'mnet'])
    assert res.returncode == 2 and 'mxnet==1.9.1' in res.stderr and 'Traceback' not in res.stderr
