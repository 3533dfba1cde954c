"""ONNX export (rcnn.tools.export_onnx) round-tripped through onnxruntime, and the INT8 tool (rcnn.tools.quantize).

onnxruntime shares the environment (requirements-base.txt); its side runs in bench/ort_runner.py, a plain
numpy decoder that imports nothing of this repository, in a subprocess. Tests skip with the reason where onnx or
onnxruntime is absent.
"""
import json
import os
import subprocess
import sys

import cv2
from rcnn.compat import mx
import numpy as np
import pytest

from conftest import ROOT, shared_path

ORT_PYTHON = os.environ.get('RETINAFACE_ORT_PYTHON', sys.executable)
RUNNER = os.path.join(ROOT, 'bench', 'ort_runner.py')


def need_export_tools():
    try:
        import onnx  # noqa: F401
    except ImportError:
        pytest.skip('onnx is not installed in this environment (pip install -r requirements.txt, or make venv)')
    if subprocess.run([ORT_PYTHON, '-c', 'import onnxruntime'], capture_output=True).returncode:
        pytest.skip('onnxruntime is not installed for %s (pip install -r requirements.txt)' % ORT_PYTHON)


def ort_outputs(onnx_path, tensors, tmp_path):
    """{key: [outputs in the ONNX model's order]} from onnxruntime, and the output names."""
    inputs, dump = str(tmp_path / 'inputs.npz'), str(tmp_path / 'raw.npz')
    np.savez(inputs, **tensors)
    subprocess.run([ORT_PYTHON, RUNNER, '--onnx', onnx_path, '--inputs', inputs, '--dump', dump], check=True)
    raw = np.load(dump)
    names = []
    for k in raw.files:
        key, name = k.split('/', 1)
        if key == next(iter(tensors)):
            names.append(name)
    return {key: [raw['%s/%s' % (key, n)] for n in names] for key in tensors}, names


def mxnet_outputs(sym, args, auxs, tensor):
    exe = sym.bind(mx.cpu(), dict(args, data=mx.nd.array(tensor)), grad_req='null', aux_states=auxs)
    exe.forward(is_train=False)
    return [o.asnumpy() for o in exe.outputs]


def assert_outputs_close(mx_outs, ort_outs, names, sym):
    assert names == [n[:-len('_output')] for n in sym.list_outputs()]
    for name, a, b in zip(names, mx_outs, ort_outs):
        assert a.shape == b.shape, name
        scale = max(1.0, float(np.abs(a).max()))
        assert np.abs(a - b).max() <= 1e-4 * scale, (name, float(np.abs(a - b).max()))


def random_checkpoint(sym, prefix, seed=0):
    """Save `sym` with random but well-scaled parameters (He-normal convs, unit BN) as prefix-0000."""
    from rcnn.core.checkpoint import save_checkpoint
    arg_shapes, _, aux_shapes = sym.infer_shape(data=(1, 3, 640, 640))
    rng = np.random.RandomState(seed)
    args, auxs = {}, {}
    for name, shape in zip(sym.list_arguments(), arg_shapes):
        if name == 'data':
            continue
        if name.endswith('_weight'):
            value = rng.normal(0, 0.5 * np.sqrt(1.0 / np.prod(shape[1:])), shape)  # shrinking: no blow-up in depth
        elif name.endswith('_gamma'):
            value = rng.uniform(0.5, 1.0, shape)
        else:
            value = rng.normal(0, 0.1, shape)
        args[name] = mx.nd.array(value)
    for name, shape in zip(sym.list_auxiliary_states(), aux_shapes):
        auxs[name] = mx.nd.array(rng.uniform(0.5, 1.5, shape) if name.endswith('var') else rng.normal(0, 0.1, shape))
    save_checkpoint(prefix, 0, sym, args, auxs)
    return args, auxs


def test_mnet25_onnx_matches_mxnet_on_real_photos(mnet25_prefix, tmp_path):
    """Published mnet.25: ONNX outputs within 1e-4 of MXNet's on three real photos of different sizes, and
    the same detections through our decoder."""
    need_export_tools()
    from rcnn.tools.export_onnx import export
    from retinaface import RetinaFace
    onnx_path = str(tmp_path / 'mnet.25.onnx')
    export(mnet25_prefix, 0, onnx_path)
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(onnx_path).st_mode & 0o777 == 0o666 & ~umask  # the usual mode, not mkstemp's 0600
    det = RetinaFace(mnet25_prefix, 0, ctx_id=-1)
    imgs = {name: cv2.imread(shared_path('images', name + '.jpg')) for name in ('t1', 't4', 'masked_t1')}
    imgs['t1_vga'] = cv2.resize(imgs['t1'], (640, 480))
    tensors = {k: det._to_tensor([im]) for k, im in imgs.items()}
    ort, names = ort_outputs(onnx_path, tensors, tmp_path)
    for key, img in imgs.items():
        mx_outs = det.forward(tensors[key])
        assert_outputs_close(mx_outs, ort[key], names, det.sym)
        candidates = det._decode(ort[key], 0, img.shape[:2], 1.0, False, 0.5)
        faces, points = det._suppress([candidates] if candidates is not None else [])
        want_faces, want_points = det.detect(img, 0.5)
        assert len(faces) == len(want_faces) > 0, key
        np.testing.assert_allclose(faces, want_faces, atol=2e-3)
        np.testing.assert_allclose(points, want_points, atol=2e-3)


def test_anticov_r50_and_trained_graphs_export(tmp_path):
    """The Anti-Cov model (12 outputs), the published R50 graph and a graph built by this code's symbol
    builder (as train.py saves it) export and run in onnxruntime at a non-square size (dynamic axes)."""
    need_export_tools()
    from rcnn.config import get_config
    from rcnn.core.checkpoint import load_checkpoint
    from rcnn.symbol import get_symbol
    from rcnn.tools.export_onnx import export
    models = {'cov': (os.path.join(os.path.dirname(shared_path('models', 'mnet_cov2-0000.params')), 'mnet_cov2'),
                      None)}
    r50 = mx.sym.load(shared_path('models', 'R50-symbol.json'))
    models['r50'] = (str(tmp_path / 'r50'), r50)
    models['trained_mnet'] = (str(tmp_path / 'mnet'), get_symbol('mnet', 'test', get_config('mnet')))
    rng = np.random.RandomState(1)
    tensor = {'x': rng.uniform(0, 255, (1, 3, 256, 384)).astype(np.float32)}
    for name, (prefix, sym) in models.items():
        if sym is not None:
            random_checkpoint(sym, prefix)
        sym, args, auxs = load_checkpoint(prefix, 0)
        onnx_path = str(tmp_path / (name + '.onnx'))
        export(prefix, 0, onnx_path)
        ort, names = ort_outputs(onnx_path, tensor, tmp_path)
        assert_outputs_close(mxnet_outputs(sym, args, auxs, tensor['x']), ort['x'], names, sym)


def test_export_refusals(mnet25_prefix, tmp_path):
    need_export_tools()
    from rcnn.tools.export_onnx import ExportError, onnx_ready_symbol
    data = mx.sym.Variable('data')
    instance = mx.sym.SoftmaxActivation(mx.sym.Convolution(data, num_filter=4, kernel=(1, 1), name='c'), name='sm')
    with pytest.raises(ExportError, match='mode=instance'):
        onnx_ready_symbol(instance, 'x-symbol.json')
    out = tmp_path / 'm.onnx'
    out.write_text('not mine')
    run = subprocess.run([sys.executable, '-m', 'rcnn.tools.export_onnx', '--prefix', mnet25_prefix, '--output',
                          str(out)], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 2 and 'pass --overwrite' in run.stderr
    assert out.read_text() == 'not mine'
    run = subprocess.run([sys.executable, '-m', 'rcnn.tools.export_onnx', '--prefix', mnet25_prefix, '--output',
                          str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 2 and 'is a folder' in run.stderr


def test_quantized_model_loads_detects_and_keeps_its_heads(mnet25_prefix, tmp_path):
    """quantize on 4 real training images: an INT8 checkpoint (the neck in INT8) the detector loads by its head
    names, whose detections on a real photo match fp32's faces (IoU > 0.9 each), and which export refuses."""
    calib = os.path.dirname(shared_path('widerface', 'retinaface', 'train', 'label.txt'))
    from rcnn.tools.export_onnx import ExportError, onnx_ready_symbol
    from retinaface import RetinaFace
    out = str(tmp_path / 'int8')
    run = subprocess.run([sys.executable, '-m', 'rcnn.tools.quantize', '--prefix', mnet25_prefix, '--calib', calib,
                          '--num_calib', '4', '--output', out], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert 'calibration (entropy)' in run.stderr  # the tqdm bar
    with open(out + '-quantize.json') as f:
        info = json.load(f)
    assert len(info['calib_images']) == 4
    kept = {conv for convs in info['fused_layers_kept_fp32'].values() for conv in convs}
    backbone = {'mobilenet0_conv%d_fwd' % i for i in range(27)}
    heads = {'face_rpn_%s_stride%d' % (k, s) for k in ('cls_score', 'bbox_pred', 'landmark_pred') for s in (8, 16, 32)}
    assert kept == backbone | heads  # the default: backbone and heads in fp32, the neck (rf_*) in INT8
    assert info['quantized_layers'] == 56 - len(kept) == 20
    ops = [n['op'] for n in json.loads(open(out + '-symbol.json').read())['nodes']]
    assert ops.count('_sg_mkldnn_conv') == 56 and '_contrib_quantize_v2' in ops
    img = cv2.imread(shared_path('images', 't1.jpg'))
    q, f = RetinaFace(out, 0, ctx_id=-1), RetinaFace(mnet25_prefix, 0, ctx_id=-1)
    qf, ql = q.detect(img, 0.5)
    ff, _ = f.detect(img, 0.5)
    assert len(qf) == len(ff) > 0 and ql.shape == (len(qf), 5, 2)
    from rcnn.processing.bbox_transform import bbox_overlaps
    iou = bbox_overlaps(ff[:, :4].astype(np.float64), qf[:, :4].astype(np.float64))
    assert iou.max(axis=1).min() > 0.9
    with pytest.raises(ExportError, match='INT8'):
        onnx_ready_symbol(q.sym, out)
    again = subprocess.run([sys.executable, '-m', 'rcnn.tools.quantize', '--prefix', mnet25_prefix, '--calib', calib,
                            '--num_calib', '4', '--output', out], cwd=ROOT, capture_output=True, text=True)
    assert again.returncode != 0 and 'pass --overwrite' in again.stderr


def test_fully_quantized_model_keeps_its_head_names(mnet25_prefix, tmp_path):
    """--keep_fp32 '' quantizes the heads too: their fp32 outputs come from dequantize nodes, which carry the
    head names (the INT8 convs become <name>_int8), so the detector still finds every head."""
    calib = os.path.dirname(shared_path('widerface', 'retinaface', 'train', 'label.txt'))
    from retinaface import RetinaFace
    out = str(tmp_path / 'all-int8')
    run = subprocess.run([sys.executable, '-m', 'rcnn.tools.quantize', '--prefix', mnet25_prefix, '--calib', calib,
                          '--num_calib', '2', '--keep_fp32', '', '--output', out], cwd=ROOT, capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    nodes = json.loads(open(out + '-symbol.json').read())['nodes']
    by_name = {n['name']: n['op'] for n in nodes}
    assert by_name['face_rpn_bbox_pred_stride8'] == '_contrib_dequantize'
    assert by_name['face_rpn_bbox_pred_stride8_int8'] == '_sg_mkldnn_conv'
    det = RetinaFace(out, 0, ctx_id=-1)
    assert det.sym.list_outputs() == RetinaFace(mnet25_prefix, 0, ctx_id=-1).sym.list_outputs()
    faces, points = det.detect(cv2.imread(shared_path('images', 't1.jpg')), 0.5)
    assert len(faces) > 0 and points.shape == (len(faces), 5, 2)
