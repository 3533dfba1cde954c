"""The network presets, in one place: the names accepted by ``RetinaFace(network=...)``, ``test.py --network`` and
``train.py --anchors``, and everything each name decides -- FPN strides and anchor scales and ratios per stride,
the input normalisation, the landmark delta scale, whether the graph has the mask (type) head, and whether
train.py builds graphs for it. Read by the config, the graph builders, the decoder and the detector.
"""

__all__ = ['NETWORK_PRESETS', 'TRAINABLE_PRESETS', 'MASK_PRESETS', 'PRESET_FOR_STRIDES', 'BASE_SIZE', 'anchor_config']

# Each preset gives the FPN strides (largest first, the output order of the graph), the anchor config per
# stride, and the input normalisation: tensor = (rgb / pixel_scale - mean) / std, with mean/std
# listed in BGR order as in the original.
_RATIO_1 = (1.0,)
_RATIO_1_15 = (1.0, 1.5)
_ZERO_MEAN = (0.0, 0.0, 0.0)
_UNIT_STD = (1.0, 1.0, 1.0)
_CAFFE_MEAN = (103.939, 116.779, 123.68)
_TORCH_MEAN = (103.52, 116.28, 123.675)
_TORCH_STD = (57.375, 57.12, 58.395)
# levels -> {stride: scales}; 5 levels use 3 octave scales 2^(k/3) per level, growing with the stride.
_LEVEL_SCALES = {
    3: {32: (32, 16), 16: (8, 4), 8: (2, 1)},
    4: {32: (32, 16), 16: (8, 4), 8: (2, 1), 4: (2, 1)},
    5: {s: tuple(2.0 ** ((3 * k + o) / 3.0) for o in range(3)) for k, s in enumerate((4, 8, 16, 32, 64))},
    6: {128: (32,), 64: (16,), 32: (8,), 16: (4,), 8: (2,), 4: (1,)},
}
NETWORK_PRESETS = {
    # name: (levels, ratios, mean (BGR), std (BGR))
    'net3': (3, _RATIO_1, _ZERO_MEAN, _UNIT_STD),
    'net3a': (3, _RATIO_1_15, _ZERO_MEAN, _UNIT_STD),
    'net3l': (3, _RATIO_1, _ZERO_MEAN, _UNIT_STD),  # RetinaFace-Anti-Cov (mnet_cov2): net3 + landmark std 0.2
    'net4': (4, _RATIO_1, _ZERO_MEAN, _UNIT_STD),
    'net4a': (4, _RATIO_1_15, _ZERO_MEAN, _UNIT_STD),
    'net5': (5, _RATIO_1, _ZERO_MEAN, _UNIT_STD),
    'net5a': (5, _RATIO_1_15, _ZERO_MEAN, _UNIT_STD),
    'net6': (6, _RATIO_1, _ZERO_MEAN, _UNIT_STD),
    'ssh': (3, _RATIO_1, _CAFFE_MEAN, _UNIT_STD),
    'vgg': (3, _RATIO_1, _CAFFE_MEAN, _UNIT_STD),
    'x3': (3, _RATIO_1, _TORCH_MEAN, _TORCH_STD),
    'x3a': (3, _RATIO_1_15, _TORCH_MEAN, _TORCH_STD),
    'x5': (5, _RATIO_1, _TORCH_MEAN, _TORCH_STD),
}
# the presets train.py --anchors builds a graph for (zero mean, unit std: the mnet/resnet input convention)
TRAINABLE_PRESETS = ('net3', 'net3a', 'net4', 'net4a', 'net5', 'net5a', 'net6')
BASE_SIZE = 16  # pixels: side of the base window (0, 0, 15, 15)
LANDMARK_STDS = {'net3l': 0.2}  # landmark deltas are multiplied by this before decoding (1.0 elsewhere)

MASK_PRESETS = ('net3l',)  # presets of mask-aware (Anti-Cov) graphs: they carry the type head


def _plain_preset_per_strides():
    """{strides: the plain preset (one ratio, zero mean) with those strides}: what to suggest for a graph."""
    found = {}
    for name, (levels, ratios, mean, _) in NETWORK_PRESETS.items():
        strides = tuple(sorted(_LEVEL_SCALES[levels], reverse=True))
        if ratios == _RATIO_1 and mean == _ZERO_MEAN and name not in MASK_PRESETS:
            found.setdefault(strides, name)
    return found


PRESET_FOR_STRIDES = _plain_preset_per_strides()


def anchor_config(network):
    """Anchor preset of a network name -> dict.

    Keys: 'strides' (tuple, largest first), 'anchor_cfg' {stride: {'SCALES', 'BASE_SIZE', 'RATIOS'}},
    'pixel_means' / 'pixel_stds' (BGR order, length 3), 'num_anchors' (per cell, same on every level),
    'landmark_std' (scale of the landmark deltas), 'type_head' (the mask head of Anti-Cov graphs),
    'trainable' (train.py --anchors accepts it).
    """
    if network not in NETWORK_PRESETS:
        raise ValueError('unknown network %r; valid names: %s' % (network, ', '.join(sorted(NETWORK_PRESETS))))
    levels, ratios, mean, std = NETWORK_PRESETS[network]
    scales = _LEVEL_SCALES[levels]
    strides = tuple(sorted(scales, reverse=True))
    cfg = {s: {'SCALES': scales[s], 'BASE_SIZE': BASE_SIZE, 'RATIOS': ratios} for s in strides}
    return {'strides': strides, 'anchor_cfg': cfg, 'pixel_means': mean, 'pixel_stds': std,
            'num_anchors': len(ratios) * len(scales[strides[0]]), 'landmark_std': LANDMARK_STDS.get(network, 1.0),
            'type_head': network in MASK_PRESETS, 'trainable': network in TRAINABLE_PRESETS}
