"""Graphs: the published checkpoints load into ours unchanged and give the same outputs."""
import cv2
from rcnn.compat import mx
import numpy as np
import pytest

from conftest import shared_path
from rcnn.config import get_config
from rcnn.symbol import get_symbol
from rcnn.symbol.common import label_names


def _forward(sym, args, auxs, data):
    mod = mx.mod.Module(sym, data_names=['data'], label_names=None, context=mx.cpu())
    mod.bind(data_shapes=[('data', data.shape)], for_training=False)
    mod.set_params(args, auxs, allow_missing=False, allow_extra=False)
    mod.forward(mx.io.DataBatch([mx.nd.array(data)]), is_train=False)
    return [o.asnumpy() for o in mod.get_outputs()]


def test_mnet_test_graph_reproduces_published_mnet25(mnet25_prefix):
    ours = get_symbol('mnet', 'test', get_config('mnet'))
    shipped, args, auxs = mx.model.load_checkpoint(mnet25_prefix, 0)
    assert set(ours.list_arguments()) - {'data'} == set(args)  # zero missing, zero unexpected
    assert set(ours.list_auxiliary_states()) == set(auxs)
    assert [o for o in ours.list_outputs()] == shipped.list_outputs()
    for name, size in [('t1.jpg', (640, 640)), ('t4.jpg', (480, 357)), ('t2.jpg', (333, 517))]:
        img = cv2.resize(cv2.imread(shared_path('images', name)), size)
        data = img[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32)
        for a, b in zip(_forward(ours, args, auxs, data), _forward(shipped, args, auxs, data)):
            assert a.shape == b.shape
            assert np.abs(a - b).max() <= 1e-4


def test_resnet_test_graph_matches_published_r50_names_and_shapes():
    ref = mx.sym.load(shared_path('models', 'R50-symbol.json'))
    ours = get_symbol('resnet', 'test', get_config('resnet'))
    shape = {'data': (1, 3, 640, 640)}
    ours_args, _, ours_aux = ours.infer_shape(**shape)
    ref_args, _, ref_aux = ref.infer_shape(**shape)
    assert list(zip(ours.list_arguments(), ours_args)) == list(zip(ref.list_arguments(), ref_args))
    assert list(zip(ours.list_auxiliary_states(), ours_aux)) == list(zip(ref.list_auxiliary_states(), ref_aux))
    assert ours.list_outputs() == ref.list_outputs()


def test_test_graph_output_shapes_640():
    sym = get_symbol('mnet', 'test', get_config('mnet'))
    _, out, _ = sym.infer_shape(data=(1, 3, 640, 640))
    assert out[:3] == [(1, 4, 20, 20), (1, 8, 20, 20), (1, 20, 20, 20)]
    assert out[6:] == [(1, 4, 80, 80), (1, 8, 80, 80), (1, 20, 80, 80)]


@pytest.mark.parametrize('multiplier,c32', [(0.5, 512), (1.0, 1024)])
def test_mnet_width_multipliers(multiplier, c32):
    cfg = get_config('mnet', MNET_MULTIPLIER=multiplier)
    sym = get_symbol('mnet', 'test', cfg)
    shapes = dict(zip(sym.list_arguments(), sym.infer_shape(data=(1, 3, 320, 320))[0]))
    assert shapes['rf_c3_lateral_weight'] == (64, c32, 1, 1)


def _train_shapes(network, batch=2, size=640, **over):
    cfg = get_config(network, **over)
    sym = get_symbol(network, 'train', cfg)
    A = cfg.NUM_ANCHORS
    shapes = {'data': (batch, 3, size, size)}
    for s in cfg.RPN_FEAT_STRIDE:
        hw = (size // s) ** 2
        shapes.update({'face_label_stride%d' % s: (batch, A * hw), 'face_bbox_target_stride%d' % s: (batch, 4 * A, hw),
                       'face_bbox_weight_stride%d' % s: (batch, 4 * A, hw),
                       'face_landmark_target_stride%d' % s: (batch, 10 * A, hw),
                       'face_landmark_weight_stride%d' % s: (batch, 10 * A, hw)})
    return cfg, sym, shapes


@pytest.mark.parametrize('network', ['mnet', 'resnet'])
def test_training_graphs_infer_and_name_outputs(network):
    cfg, sym, shapes = _train_shapes(network)
    _, out_shapes, _ = sym.infer_shape(**shapes)
    names = sym.list_outputs()
    assert len(names) == 18
    for s in (32, 16, 8):
        for n in ('face_rpn_cls_prob_stride%d_output', 'face_rpn_label_stride%d_output',
                  'face_rpn_bbox_loss_stride%d_output', 'face_rpn_bbox_weight_stride%d_output',
                  'face_rpn_landmark_loss_stride%d_output', 'face_rpn_landmark_weight_stride%d_output'):
            assert n % s in names
    assert dict(zip(names, out_shapes))['face_rpn_cls_prob_stride32_output'] == (2, 2, 800)
    assert [n for n in sym.list_arguments() if n.startswith('face_') and 'rpn' not in n] == label_names((32, 16, 8))


@pytest.mark.parametrize('dcn', [1, 2])
def test_dcn_variants_forward_backward(dcn):
    # DCNv2 uses the portable formulation here: MXNet's native op is GPU-only (bench/gpu_check.sh compares)
    cfg, sym, shapes = _train_shapes('mnet', batch=1, size=64, USE_DCN=dcn, DCN_PORTABLE=(dcn == 2))
    names = sym.list_arguments()
    assert any('_concat_dcn' in n for n in names)
    if dcn == 2:
        assert 'rf_c2_aggr_conv2_offset_weight' in names and 'rf_c1_det_conv1_conv2_offset_weight' in names
    else:
        assert 'rf_c3_det_concat_dcn_conv_offset_weight' in names
    exe = sym.simple_bind(mx.cpu(), grad_req='write', **shapes)
    rng = np.random.RandomState(0)
    for name, arr in exe.arg_dict.items():
        if name.startswith('face_label'):
            arr[:] = rng.randint(-1, 2, arr.shape)
        elif 'offset' in name:
            arr[:] = rng.normal(0, 0.01, arr.shape)
        else:
            arr[:] = rng.normal(0, 0.1, arr.shape) if name != 'data' else rng.uniform(0, 255, arr.shape)
    for name, arr in exe.aux_dict.items():
        arr[:] = 1.0 if name.endswith('var') else 0.0
    exe.forward(is_train=True)
    exe.backward()
    for name, g in exe.grad_dict.items():
        if g is not None and not name.startswith('face_') and name != 'data':
            assert np.isfinite(g.asnumpy()).all(), name
    dcn_grads = [exe.grad_dict[n].asnumpy() for n in names if 'dcn' in n and n.endswith('_weight')]
    assert dcn_grads and any(np.abs(g).sum() > 0 for g in dcn_grads)


def test_unknown_network_lists_valid_names():
    with pytest.raises(ValueError, match='mnet, resnet'):
        get_symbol('vgg', 'test', get_config('mnet'))


def _bilinear_zero(img, y, x):
    """img (C, H, W) sampled at real (y, x); corners outside the image count as 0 (DCN semantics)."""
    C, H, W = img.shape
    y0, x0 = int(np.floor(y)), int(np.floor(x))
    out = np.zeros(C)
    for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
        for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
            if 0 <= yy < H and 0 <= xx < W:
                out += wy * wx * img[:, yy, xx]
    return out


def test_portable_dcn_v2_matches_numpy_reference():
    from rcnn.symbol.common import _modulated_deform_conv_portable
    rng = np.random.RandomState(0)
    N, C, H, W, F = 1, 2, 5, 6, 3
    data = rng.randn(N, C, H, W)
    offset = rng.uniform(-1.5, 1.5, (N, 18, H, W))
    mask = rng.uniform(0, 2, (N, 9, H, W))
    weight = rng.randn(F, C, 3, 3)
    sym = _modulated_deform_conv_portable(mx.sym.Variable('d'), mx.sym.Variable('o'), mx.sym.Variable('m'),
                                          mx.sym.Variable('w'), F, 'dcn')
    out = sym.eval(mx.cpu(), d=mx.nd.array(data), o=mx.nd.array(offset), m=mx.nd.array(mask),
                   w=mx.nd.array(weight))[0].asnumpy()
    ref = np.zeros((N, F, H, W))
    for y in range(H):
        for x in range(W):
            for k in range(9):
                i, j = divmod(k, 3)
                v = _bilinear_zero(data[0], y + i - 1 + offset[0, 2 * k, y, x], x + j - 1 + offset[0, 2 * k + 1, y, x])
                ref[0, :, y, x] += mask[0, k, y, x] * weight[:, :, i, j] @ v
    np.testing.assert_allclose(out, ref, atol=1e-4)
    # zero offsets and unit masks: a plain 3x3 convolution with padding 1
    plain = mx.nd.Convolution(mx.nd.array(data), mx.nd.array(weight), kernel=(3, 3), pad=(1, 1), num_filter=F,
                              no_bias=True).asnumpy()
    out0 = sym.eval(mx.cpu(), d=mx.nd.array(data), o=mx.nd.zeros(offset.shape), m=mx.nd.ones(mask.shape),
                    w=mx.nd.array(weight))[0].asnumpy()
    np.testing.assert_allclose(out0, plain, atol=1e-4)
