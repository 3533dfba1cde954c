"""ResNet v2 (pre-activation) body with the MXNet model-zoo names of the published R50.

bn_data -> conv0 7x7/2 -> bn0 -> relu0 -> pooling0 3x3/2 -> stages of bottleneck units -> bn1 -> relu1.
Taps: stride 4 = stage2_unit1_relu2, stride 8 = stage3_unit1_relu2, stride 16 = stage4_unit1_relu2 (the ReLU before each stage's
stride-2 conv), stride 32 = relu1.
"""
from rcnn.compat import mx

BN_EPS = 2e-5
UNITS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
WIDTHS = (64, 128, 256, 512)  # bottleneck width m per stage; unit output 4m


def _bn(data, name, fix_gamma=False):
    return mx.sym.BatchNorm(data, fix_gamma=fix_gamma, eps=BN_EPS, momentum=0.9, name=name)


def _conv(data, name, num_filter, kernel, stride=(1, 1), pad=(0, 0)):
    return mx.sym.Convolution(data, num_filter=num_filter, kernel=kernel, stride=stride, pad=pad,
                              no_bias=True, workspace=256, name=name)


def _unit(data, name, width, stride, project):
    """Pre-activation bottleneck; returns (output, relu2) so the body can tap relu2."""
    relu1 = mx.sym.Activation(_bn(data, name + '_bn1'), act_type='relu', name=name + '_relu1')
    x = _conv(relu1, name + '_conv1', width, (1, 1))
    relu2 = mx.sym.Activation(_bn(x, name + '_bn2'), act_type='relu', name=name + '_relu2')
    x = _conv(relu2, name + '_conv2', width, (3, 3), (stride, stride), (1, 1))
    x = mx.sym.Activation(_bn(x, name + '_bn3'), act_type='relu', name=name + '_relu3')
    x = _conv(x, name + '_conv3', 4 * width, (1, 1))
    shortcut = _conv(relu1, name + '_sc', 4 * width, (1, 1), (stride, stride)) if project else data
    return x + shortcut, relu2


def get_resnet_body(data, num_layers=50):
    """data (N, 3, H, W) raw RGB -> {4: 128 ch, 8: 256 ch, 16: 512 ch, 32: 2048 ch} feature taps."""
    if num_layers not in UNITS:
        raise ValueError('ResNet depth must be one of %s, got %r' % (sorted(UNITS), num_layers))
    x = _bn(data, 'bn_data', fix_gamma=True)
    x = _conv(x, 'conv0', 64, (7, 7), (2, 2), (3, 3))
    x = mx.sym.Activation(_bn(x, 'bn0'), act_type='relu', name='relu0')
    x = mx.sym.Pooling(x, kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type='max', name='pooling0')
    taps = {}
    for s, (units, width) in enumerate(zip(UNITS[num_layers], WIDTHS), start=1):
        for u in range(1, units + 1):
            stride = 2 if (u == 1 and s > 1) else 1
            x, relu2 = _unit(x, 'stage%d_unit%d' % (s, u), width, stride, project=(u == 1))
            if u == 1 and s in (2, 3, 4):
                taps[{2: 4, 3: 8, 4: 16}[s]] = relu2
    taps[32] = mx.sym.Activation(_bn(x, 'bn1'), act_type='relu', name='relu1')
    return taps
