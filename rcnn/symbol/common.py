"""Shared graph pieces: conv+BN+ReLU, FPN neck, SSH context module, heads, losses, outputs.

Diagram (3 levels, F = HEAD_FILTER_NUM, K = F * CONTEXT_FILTER_RATIO, A = anchors per cell)::

    body taps  C32 ----------> L32 = CBR1x1(F) ------------------------------> P32
               C16 ----------> L16 = CBR1x1(F) -+ Crop(Up2(L32)) -> CBR3x3(F) -> P16
               C8  ----------> L8  = CBR1x1(F) -+ Crop(Up2(P16)) -> CBR3x3(F) -> P8
    P_s -> SSH: [conv1 3x3 K/2 | ctx1 3x3 K/4 -> (ctx2 3x3 K/4 | ctx3_1 3x3 K/4 -> ctx3_2 3x3 K/4)]
          -> concat (K) -> ReLU [-> DCN] -> heads (1x1): cls 2A, bbox 4A, landmark 10A

Parameter names follow the published checkpoints (see ``NAME_SCHEMES``), so their weights load as is.
"""
from rcnn.compat import mx
from rcnn.names import PRESET_ATTR, head_name, label_name, label_names  # noqa: F401 (re-exported)

__all__ = ['PRESET_ATTR', 'NAME_SCHEMES', 'layer_name', 'out_name', 'conv_act_layer', 'fpn_neck', 'ssh_context', 'build_heads',
           'test_outputs', 'train_outputs', 'label_names']

BN_EPS = 2e-5       # neck/head BatchNorm epsilon of the published graphs
BN_MOMENTUM = 0.9   # BatchNorm moving-average momentum
DCN_OFFSETS = 18    # 3x3 kernel: (dy, dx) per tap
DCN_MASKS = 9       # 3x3 kernel: one modulation scalar per tap (DCNv2)

# Neck/context layer names of the two published model families (network.md section 8), for strides 32, 16, 8.
NAME_SCHEMES = {
    'rf': {'lat32': 'rf_c3_lateral', 'lat16': 'rf_c2_lateral', 'aggr16': 'rf_c2_aggr',
           'lat8': 'rf_c1_red_conv', 'aggr8': 'rf_c1_aggr', 'up16': 'rf_c3_upsampling',
           'up8': 'rf_c2_upsampling', 'det': {32: 'rf_c3_det', 16: 'rf_c2_det', 8: 'rf_c1_det'}},
    'ssh': {'lat32': 'ssh_c3_lateral', 'lat16': 'ssh_c2_lateral', 'aggr16': 'ssh_c2_aggr',
            'lat8': 'ssh_m1_red_conv', 'aggr8': 'ssh_c1_aggr', 'up16': 'ssh_c3_up',
            'up8': 'ssh_m2_red_up', 'det': {32: 'ssh_m3_det', 16: 'ssh_m2_det', 8: 'ssh_m1_det'}},
}
# Levels the published graphs do not have (4, 5 and 6 levels) are named by the same pattern, level k = log2(s / 4)
# (stride 4 -> c0, 8 -> c1, ..., 64 -> c4, 128 -> c5): '{p}_c{k}_lateral', '{p}_c{k}_aggr', the upsampling of
# level k into k - 1 '{p}_c{k}_up' ('rf': '_upsampling'), the SSH module '{p}_c{k}_det' ('ssh': '{p}_m{k}_det'),
# and the stride-2 3x3 conv that makes the stride-64 (128) input from the stride-32 (64) one '{p}_c{k}_down'.


def _level(stride):
    return {4: 0, 8: 1, 16: 2, 32: 3, 64: 4, 128: 5}[stride]


def layer_name(scheme, kind, stride):
    """Neck/context layer name: kind 'lat', 'aggr', 'up' (into the next finer level), 'det' or 'down'."""
    names = NAME_SCHEMES[scheme]
    if kind == 'det' and stride in names['det']:
        return names['det'][stride]
    if kind in ('lat', 'aggr') and '%s%d' % (kind, stride) in names:
        return names['%s%d' % (kind, stride)]
    if kind == 'up' and 'up%d' % (stride // 2) in names:  # up16 is the upsampling of level 32 into 16
        return names['up%d' % (stride // 2)]
    k = _level(stride)
    suffix = {'lat': 'lateral', 'aggr': 'aggr', 'up': 'upsampling' if scheme == 'rf' else 'up', 'down': 'down',
              'det': 'det'}[kind]
    if kind == 'det' and scheme == 'ssh':
        return 'ssh_m%d_det' % k
    return '%s_c%d_%s' % (scheme, k, suffix)


out_name = head_name  # the name the graph builders use (rcnn/names.py)


def _conv_vars(name, bias_wd_mult):
    weight = mx.sym.Variable(name + '_weight', init=mx.init.Normal(0.01), attr={'__lr_mult__': '1.0'})
    bias = mx.sym.Variable(name + '_bias', init=mx.init.Constant(0.0),
                           attr={'__lr_mult__': '2.0', '__wd_mult__': str(bias_wd_mult)})
    return weight, bias


def _modulated_deform_conv_portable(data, offset, mask, weight, num_filter, name):
    """DCNv2 (3x3, pad 1, stride 1, one deformable group, no bias) from portable ops.

    MXNet 1.9's ModulatedDeformableConvolution runs on GPUs only; this computes the same function on
    any device: for each tap k = 3i + j, sample the input bilinearly (zero outside) at
    (y + i - 1 + dy_k, x + j - 1 + dx_k) with BilinearSampler and scale it by mask_k; the 9 samples of
    each pixel are laid out as a 3x3 patch of a (3H, 3W) map, which a 3x3/stride-3 convolution with
    the (F, C, 3, 3) weight contracts. Offsets are (dy_k, dx_k) pairs in channels (2k, 2k + 1), as the
    native op reads them; parameter names and shapes are the native op's.
    """
    zeros = mx.sym.zeros_like(mx.sym.slice_axis(data, axis=1, begin=0, end=1))  # (N, 1, H, W)
    ys = mx.sym.broadcast_like(mx.sym.reshape(mx.sym.contrib.arange_like(zeros, axis=2), (1, 1, -1, 1)), zeros)
    xs = mx.sym.broadcast_like(mx.sym.reshape(mx.sym.contrib.arange_like(zeros, axis=3), (1, 1, 1, -1)), zeros)
    hm1 = mx.sym.maximum(mx.sym.max(ys, axis=(1, 2, 3), keepdims=True), 1)  # H - 1 (>= 1) per sample
    wm1 = mx.sym.maximum(mx.sym.max(xs, axis=(1, 2, 3), keepdims=True), 1)
    samples = []
    for k in range(9):
        i, j = divmod(k, 3)
        py = ys + (i - 1) + mx.sym.slice_axis(offset, axis=1, begin=2 * k, end=2 * k + 1)
        px = xs + (j - 1) + mx.sym.slice_axis(offset, axis=1, begin=2 * k + 1, end=2 * k + 2)
        grid = mx.sym.concat(mx.sym.broadcast_div(px * 2, wm1) - 1, mx.sym.broadcast_div(py * 2, hm1) - 1, dim=1)
        sampled = mx.sym.BilinearSampler(data, grid, cudnn_off=True)  # (N, C, H, W)
        samples.append(mx.sym.broadcast_mul(sampled, mx.sym.slice_axis(mask, axis=1, begin=k, end=k + 1)))
    patches = mx.sym.reshape(mx.sym.stack(*samples, axis=4), shape=(0, 0, 0, 0, 3, 3))  # (N, C, H, W, 3, 3)
    patches = mx.sym.reshape(mx.sym.transpose(patches, axes=(0, 1, 2, 4, 3, 5)), shape=(0, 0, -3, -3))
    return mx.sym.Convolution(patches, weight=weight, num_filter=num_filter, kernel=(3, 3), stride=(3, 3),
                              no_bias=True, name=name)


def _dcn_v2(data, name, num_filter, portable=False):
    """3x3 modulated deformable conv (DCNv2): offsets and masks from a zero-initialised 3x3 conv.

    portable=True builds it from ops that run on every device (see _modulated_deform_conv_portable).
    """
    off_w = mx.sym.Variable(name + '_conv2_offset_weight', init=mx.init.Zero(), attr={'__lr_mult__': '0.1'})
    off_b = mx.sym.Variable(name + '_conv2_offset_bias', init=mx.init.Zero(), attr={'__lr_mult__': '0.1'})
    off = mx.sym.Convolution(data, weight=off_w, bias=off_b, num_filter=DCN_OFFSETS + DCN_MASKS,
                             kernel=(3, 3), pad=(1, 1), name=name + '_conv2_offset')
    offset = mx.sym.slice_axis(off, axis=1, begin=0, end=DCN_OFFSETS)
    mask = 2 * mx.sym.sigmoid(mx.sym.slice_axis(off, axis=1, begin=DCN_OFFSETS, end=DCN_OFFSETS + DCN_MASKS))
    if portable:
        weight = mx.sym.Variable(name + '_conv2_weight')
        return _modulated_deform_conv_portable(data, offset, mask, weight, num_filter, name + '_conv2')
    return mx.sym.contrib.ModulatedDeformableConvolution(
        data=data, offset=offset, mask=mask, num_filter=num_filter, kernel=(3, 3), pad=(1, 1),
        stride=(1, 1), num_deformable_group=1, no_bias=True, name=name + '_conv2')


def _dcn_v1(data, name, num_filter):
    """3x3 deformable conv (v1) with bias; offsets from a plain 3x3 conv."""
    offset = mx.sym.Convolution(data, num_filter=DCN_OFFSETS, kernel=(3, 3), pad=(1, 1), name=name + '_conv_offset')
    return mx.sym.contrib.DeformableConvolution(
        data=data, offset=offset, num_filter=num_filter, kernel=(3, 3), pad=(1, 1), stride=(1, 1),
        num_deformable_group=1, no_bias=False, name=name + '_conv')


def _bn(data, name):
    return mx.sym.BatchNorm(data, fix_gamma=False, eps=BN_EPS, momentum=BN_MOMENTUM, name=name)


def conv_act_layer(data, name, num_filter, kernel=(1, 1), pad=(0, 0), stride=(1, 1), act=True,
                   bias_wd_mult=0.0, dcn=0, dcn_portable=False):
    """Convolution(+bias) `name` -> BatchNorm `name_bn` -> ReLU `name_relu` (when act).

    With dcn >= 2 a 3x3/pad 1/stride 1 conv becomes a DCNv2 `name_conv2` and the ReLU `name_act`.
    """
    if dcn >= 2 and tuple(kernel) == (3, 3) and tuple(pad) == (1, 1) and tuple(stride) == (1, 1):
        out = _bn(_dcn_v2(data, name, num_filter, dcn_portable), name + '_bn')
        return mx.sym.Activation(out, act_type='relu', name=name + '_act') if act else out
    weight, bias = _conv_vars(name, bias_wd_mult)
    out = mx.sym.Convolution(data, weight=weight, bias=bias, num_filter=num_filter, kernel=kernel, pad=pad,
                             stride=stride, name=name)
    out = _bn(out, name + '_bn')
    return mx.sym.Activation(out, act_type='relu', name=name + '_relu') if act else out


def _conv_only(data, name, num_filter):
    weight, bias = _conv_vars(name, 0.0)
    return mx.sym.Convolution(data, weight=weight, bias=bias, num_filter=num_filter, kernel=(1, 1),
                              pad=(0, 0), stride=(1, 1), name=name)


def _up_crop_add(coarse, lateral, up_name):
    up = mx.sym.UpSampling(coarse, scale=2, sample_type='nearest', num_args=1, workspace=512, name=up_name)
    return lateral + mx.sym.Crop(up, lateral, num_args=2)


def fpn_neck(taps, filters, scheme, strides=(32, 16, 8), dcn=0, dcn_portable=False):
    """Top-down FPN -> {stride: P_s} with `filters` channels each, for `strides` (largest first).

    Body taps exist for strides 4 to 32; a stride-64 (and 128) input is a stride-2 3x3 conv + BN + ReLU over
    the next finer input (C6 over the stride-32 tap). The coarsest level and every level coarser than 32 are
    their laterals (P = L, as the original builds them: with net6, P64 is not merged with P128); every finer
    level is CBR3x3(L_s + Crop(Up2(P_2s))): the FPN upsamples the *aggregated* coarser map, as both published
    models do. With strides (32, 16, 8) this is exactly the published neck.
    """
    kw = dict(bias_wd_mult=1.0, dcn=dcn, dcn_portable=dcn_portable)  # FPN biases carry weight decay
    inputs = dict(taps)
    for s in sorted(strides):
        if s not in inputs:
            if s // 2 not in inputs:
                raise ValueError('no backbone tap for stride %d (taps: %s)' % (s, sorted(taps)))
            inputs[s] = conv_act_layer(inputs[s // 2], layer_name(scheme, 'down', s), filters, kernel=(3, 3),
                                       pad=(1, 1), stride=(2, 2), **kw)
    order = sorted(strides, reverse=True)
    feats = {}
    for k, s in enumerate(order):
        lateral = conv_act_layer(inputs[s], layer_name(scheme, 'lat', s), filters, **kw)
        if k == 0 or s > 32:  # the coarsest level, and every level coarser than 32 (the original's): P = L
            feats[s] = lateral
            continue
        merged = _up_crop_add(feats[order[k - 1]], lateral, layer_name(scheme, 'up', order[k - 1]))
        feats[s] = conv_act_layer(merged, layer_name(scheme, 'aggr', s), filters, kernel=(3, 3), pad=(1, 1), **kw)
    return feats


def ssh_context(data, prefix, channels, dcn=0, dcn_portable=False):
    """SSH context module: conv1 (K/2) | context (K/4 + K/4) -> concat K -> ReLU [-> DCN]."""
    k3 = dict(kernel=(3, 3), pad=(1, 1), dcn=dcn, dcn_portable=dcn_portable)
    conv1 = conv_act_layer(data, prefix + '_conv1', channels // 2, act=False, **k3)
    ctx1 = conv_act_layer(data, prefix + '_context_conv1', channels // 4, **k3)
    ctx2 = conv_act_layer(ctx1, prefix + '_context_conv2', channels // 4, act=False, **k3)
    ctx3_1 = conv_act_layer(ctx1, prefix + '_context_conv3_1', channels // 4, **k3)
    ctx3_2 = conv_act_layer(ctx3_1, prefix + '_context_conv3_2', channels // 4, act=False, **k3)
    out = mx.sym.Concat(conv1, ctx2, ctx3_2, dim=1, name=prefix + '_concat')
    out = mx.sym.Activation(out, act_type='relu', name=prefix + '_concat_relu')
    out_channels = channels // 2 + 2 * (channels // 4)
    if dcn == 1:
        name = prefix + '_concat_dcn'
        out = _bn(_dcn_v1(out, name, out_channels), name + '_bn')
        out = mx.sym.Activation(out, act_type='relu', name=name + '_act')
    elif dcn >= 2:
        name = prefix + '_concat_dcn'
        out = mx.sym.Activation(_bn(_dcn_v2(out, name, out_channels, dcn_portable), name + '_bn'), act_type='relu',
                                name=name + '_act')
    return out


def build_heads(taps, cfg):
    """Body taps {stride: symbol} -> {stride: (cls_score, bbox_pred, landmark_pred or None)}."""
    dcn = dict(dcn=int(cfg.USE_DCN), dcn_portable=bool(cfg.DCN_PORTABLE))
    feats = fpn_neck(taps, cfg.HEAD_FILTER_NUM, cfg.NAME_SCHEME, tuple(cfg.RPN_FEAT_STRIDE), **dcn)
    A = cfg.NUM_ANCHORS
    heads = {}
    for s in cfg.RPN_FEAT_STRIDE:
        ctx = ssh_context(feats[s], layer_name(cfg.NAME_SCHEME, 'det', s),
                          cfg.HEAD_FILTER_NUM * cfg.CONTEXT_FILTER_RATIO, **dcn)
        cls = _conv_only(ctx, out_name('cls_score', s), 2 * A)
        box = _conv_only(ctx, out_name('bbox_pred', s), 4 * A)
        lmk = _conv_only(ctx, out_name('landmark_pred', s), 10 * A) if cfg.FACE_LANDMARK else None
        heads[s] = (cls, box, lmk)
    return heads


def test_outputs(heads, cfg):
    """The 9-output inference group: per stride (32, 16, 8) cls_prob_reshape, bbox_pred, landmark_pred."""
    A = cfg.NUM_ANCHORS
    outs = []
    for s in cfg.RPN_FEAT_STRIDE:
        cls, box, lmk = heads[s]
        # (N, 2A, H, W) -> (N, 2, A*H, W): class-major channels become a 2-way axis for the softmax
        score = mx.sym.Reshape(cls, shape=(0, 2, -1, 0), name=head_name('cls_score_reshape', s))
        prob = mx.sym.SoftmaxActivation(score, mode='channel', name=head_name('cls_prob', s))
        prob = mx.sym.Reshape(prob, shape=(0, 2 * A, -1, 0), name=out_name('cls_prob_reshape', s),
                              attr={PRESET_ATTR: cfg.ANCHOR_NETWORK})  # the preset the model decodes with
        outs += [prob, box] + ([lmk] if lmk is not None else [])
    return mx.sym.Group(outs)


def train_outputs(heads, cfg):
    """The training group: per stride [cls_prob, label, bbox_loss, bbox_weight, landmark_loss, landmark_weight].

    OHEM relabels the anchors in-graph (custom op ``rpn_fpn_ohem``); box and landmark weights are then
    restricted to the positives OHEM kept. Losses follow the original recipe (training.md sections 6-7).
    """
    from rcnn.symbol import ohem  # noqa: F401  (registers the custom op, part of the training graph)
    T = cfg.TRAIN
    if T.OHEM_MODE not in ohem.OHEM_MODES:
        raise ValueError('TRAIN.OHEM_MODE must be one of %s, got %r'
                         % (', '.join('%d (%s)' % kv for kv in sorted(ohem.OHEM_MODES.items())), T.OHEM_MODE))
    A = cfg.NUM_ANCHORS
    box_scale = 0.25 * T.BATCH_IMAGES / T.RPN_BATCH_SIZE
    lmk_scale = 0.4 * cfg.LANDMARK_LR_MULT * box_scale
    outs = []
    for s in cfg.RPN_FEAT_STRIDE:
        cls, box, lmk = heads[s]
        label = mx.sym.Variable(label_name('label', s))                  # (B, A*H*W), (a, h, w) order
        box_target = mx.sym.Variable(label_name('bbox_target', s))       # (B, 4A, H*W)
        box_weight = mx.sym.Variable(label_name('bbox_weight', s))       # (B, 4A, H*W)
        score = mx.sym.Reshape(cls, shape=(0, 2, -1), name=head_name('cls_score_reshape', s))
        ohem_label = mx.sym.Custom(score, label, op_type='rpn_fpn_ohem', batch_size=T.RPN_BATCH_SIZE,
                                   fg_fraction=T.RPN_FG_FRACTION, mode=T.OHEM_MODE,
                                   name=head_name('ohem', s))
        prob = mx.sym.SoftmaxOutput(score, label=ohem_label, multi_output=True, normalization='valid',
                                    use_ignore=True, ignore_label=-1, grad_scale=1.0, name=out_name('cls_prob', s))
        # kept positives (B, A*H*W) -> (B, A, H*W) -> repeat per coordinate: channel a*4 + k
        fg = mx.sym.Reshape(ohem_label == 1, shape=(0, A, -1))
        w_box = box_weight * mx.sym.repeat(fg, repeats=4, axis=1)
        box_pred = mx.sym.Reshape(box, shape=(0, 0, -1), name=head_name('bbox_pred_reshape', s))
        box_diff = (box_pred - box_target) * w_box
        box_loss = mx.sym.smooth_l1(box_diff, scalar=T.SMOOTH_L1_SIGMA, name=out_name('bbox_loss', s) + '_')
        box_loss = mx.sym.MakeLoss(box_loss, grad_scale=box_scale, name=out_name('bbox_loss', s))
        outs += [prob, mx.sym.BlockGrad(ohem_label, name=head_name('label', s)), box_loss,
                 mx.sym.BlockGrad(w_box, name=head_name('bbox_weight', s))]
        if lmk is not None:
            lmk_target = mx.sym.Variable(label_name('landmark_target', s))  # (B, 10A, H*W)
            lmk_weight = mx.sym.Variable(label_name('landmark_weight', s))  # (B, 10A, H*W)
            w_lmk = lmk_weight * mx.sym.repeat(fg, repeats=10, axis=1)
            lmk_pred = mx.sym.Reshape(lmk, shape=(0, 0, -1), name=head_name('landmark_pred_reshape', s))
            lmk_loss = mx.sym.smooth_l1((lmk_pred - lmk_target) * w_lmk, scalar=T.SMOOTH_L1_SIGMA,
                                        name=out_name('landmark_loss', s) + '_')
            lmk_loss = mx.sym.MakeLoss(lmk_loss, grad_scale=lmk_scale, name=out_name('landmark_loss', s))
            outs += [lmk_loss, mx.sym.BlockGrad(w_lmk, name=head_name('landmark_weight', s))]
    return mx.sym.Group(outs)
