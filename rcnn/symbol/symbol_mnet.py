"""MobileNet v1 body (gluon naming of the published mnet.25: mobilenet0_conv{i} / batchnorm{i} / relu{i}).

conv0 is a 3x3 stride-2 stem; blocks 1..13 are depthwise 3x3 (odd index) + pointwise 1x1 (even index).
Taps: stride 4 = relu6, stride 8 = relu10, stride 16 = relu22, stride 32 = relu26 (the last layer before each
down-sampling).
"""
from rcnn.compat import mx

BN_EPS = 1e-5  # gluon MobileNet BatchNorm epsilon (kept so ImageNet weights behave as trained)
# (pointwise output channels at width 1.0, stride of the depthwise conv) for blocks 1..13
BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
          (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]
STEM_CHANNELS = 32
TAPS = {4: 6, 8: 10, 16: 22, 32: 26}  # stride -> index of the ReLU that feeds the neck (4: 4- and 5-level presets)


def _conv_bn_relu(data, i, num_filter, kernel, stride, pad, num_group=1):
    p = 'mobilenet0_'
    w = mx.sym.Variable('%sconv%d_weight' % (p, i))
    x = mx.sym.Convolution(data, weight=w, num_filter=num_filter, kernel=kernel, stride=stride, pad=pad,
                           num_group=num_group, no_bias=True, name='%sconv%d_fwd' % (p, i))
    bn = '%sbatchnorm%d' % (p, i)
    x = mx.sym.BatchNorm(x, gamma=mx.sym.Variable(bn + '_gamma'), beta=mx.sym.Variable(bn + '_beta'),
                         moving_mean=mx.sym.Variable(bn + '_running_mean'),
                         moving_var=mx.sym.Variable(bn + '_running_var'),
                         fix_gamma=False, eps=BN_EPS, momentum=0.9, name=bn + '_fwd')
    return mx.sym.Activation(x, act_type='relu', name='%srelu%d_fwd' % (p, i))


def get_mnet_body(data, multiplier=0.25):
    """data (N, 3, H, W) raw RGB -> {8: (N, 64m', H/8, W/8), 16: ..., 32: ...} for width `multiplier`."""
    if multiplier not in (0.25, 0.5, 1.0):
        raise ValueError('MobileNet width multiplier must be 0.25, 0.5 or 1.0, got %r' % multiplier)
    ch = int(STEM_CHANNELS * multiplier)
    x = _conv_bn_relu(data, 0, ch, (3, 3), (2, 2), (1, 1))
    taps = {}
    for b, (out, stride) in enumerate(BLOCKS, start=1):
        x = _conv_bn_relu(x, 2 * b - 1, ch, (3, 3), (stride, stride), (1, 1), num_group=ch)  # depthwise
        ch = int(out * multiplier)
        x = _conv_bn_relu(x, 2 * b, ch, (1, 1), (1, 1), (0, 0))                             # pointwise
        for s, idx in TAPS.items():
            if idx == 2 * b:
                taps[s] = x
    return taps
