"""Configuration presets: ``get_config(network, dataset, **overrides)`` returns a fresh EasyDict.

Nothing here is module-level state that changes at run time: every call builds a new object from the
tables below (the values of the original recipe), then applies overrides (``TRAIN__LR=0.1`` style
keys reach into ``cfg.TRAIN``). Units and meanings are given next to each key.
"""
import copy

from easydict import EasyDict

from rcnn.presets import anchor_config

__all__ = ['get_config', 'NETWORKS', 'DATASETS']


def _common():
    return {
        'NETWORK': '',                 # 'mnet' or 'resnet': the backbone family
        'DATASET': '',                 # dataset preset name ('retinaface')
        'NUM_CLASSES': 2,              # background + face
        'ANCHOR_NETWORK': 'net3',      # anchor preset name (rcnn/presets.py)
        'RPN_FEAT_STRIDE': (32, 16, 8),  # pixels per feature cell of each FPN level, graph output order
        'RPN_ANCHOR_CFG': None,        # {'stride': {SCALES, BASE_SIZE (px), RATIOS (h/w)}}, filled from ANCHOR_NETWORK
        'NUM_ANCHORS': 2,              # anchors per feature cell (ratios x scales)
        'PIXEL_MEANS': (0.0, 0.0, 0.0),  # BGR values subtracted after dividing by PIXEL_SCALE
        'PIXEL_STDS': (1.0, 1.0, 1.0),   # BGR divisors applied after the mean
        'PIXEL_SCALE': 1.0,            # raw pixel values are divided by this first
        'IMAGE_SIZE': 640,             # pixels: side of the square training crop
        'CROP_SCALES': (0.3, 0.45, 0.6, 0.8, 1.0),  # crop side as a fraction of the short image side
        'CROP_TRIES': 25,              # random crop attempts before accepting a crop without faces
        'COLOR_MODE': 1,               # 0 off, 1 brightness, 2 brightness + contrast + saturation
        'COLOR_JITTERING': 0.125,      # jitter amplitude: alpha = 1 + U(-x, x)
        'HEAD_FILTER_NUM': 64,         # channels of every FPN lateral / aggregation conv
        'CONTEXT_FILTER_RATIO': 1,     # SSH width = HEAD_FILTER_NUM * this ratio
        'USE_DCN': 0,                  # 0 none, 1 DeformableConvolution after SSH, 2 DCNv2 on 3x3 convs + after SSH
        'DCN_PORTABLE': False,         # DCNv2 from portable ops (MXNet's native DCNv2 op is GPU-only); same params
        'MNET_MULTIPLIER': 0.25,       # MobileNet width multiplier: 0.25, 0.5 or 1.0
        'RESNET_LAYERS': 50,           # ResNet depth: 50, 101 or 152
        'FACE_LANDMARK': True,         # predict the 5 landmarks (10 values per anchor)
        'LANDMARK_LR_MULT': 2.5,       # landmark loss weight relative to the box loss (x 0.4)
        'LAYER_FIX': True,             # freeze the stem (first two convs + their BN affine) of the backbone
        'NAME_SCHEME': 'rf',           # neck/head parameter names of the published models: 'rf' mnet.25, 'ssh' R50
        'dataset_path': '',            # folder holding <split>/label.txt and <split>/images
        'image_set': '',               # training split folder name
        'test_image_set': '',          # evaluation split folder name
        'root_path': '',               # parent of the roidb cache folder (<root_path>/cache)
        'pretrained': '',              # checkpoint prefix of the ImageNet backbone
        'pretrained_epoch': 0,         # its epoch
        'lr': 0.01,                    # base learning rate
        'lr_step': '55,68,80',         # comma-separated epochs where the LR changes; the last one ends training
        'wd': 0.0005,                  # weight decay
        'momentum': 0.9,               # SGD momentum
        'TRAIN': {
            'BATCH_IMAGES': 16,        # images per device per iteration
            'RPN_BATCH_SIZE': 256,     # anchors sampled by OHEM per image and per stride
            'RPN_FG_FRACTION': 0.25,   # at most this fraction of the sampled anchors are faces
            'RPN_POSITIVE_OVERLAP': 0.5,  # IoU >= this: face anchor
            'RPN_NEGATIVE_OVERLAP': 0.3,  # IoU < this: background anchor (between: ignored)
            'OHEM_MODE': 1,            # 1 keep hardest positives/negatives; 0 random sample
            'BBOX_STDS': (1.0, 1.0, 1.0, 1.0),  # box targets are divided by these
            'LANDMARK_STD': 1.0,       # landmark targets are divided by this
            'SMOOTH_L1_SIGMA': 3.0,    # smooth-L1 switches from quadratic to linear at |d| = 1 / sigma^2
            'MIN_BOX_SIZE': 0,         # pixels: faces smaller than this (after crop scaling) are dropped
            'FLIP': True,              # add mirrored copies of every training image
            'SHUFFLE': True,           # reshuffle the image order every epoch
        },
    }


NETWORKS = {
    'mnet': {'NETWORK': 'mnet', 'pretrained': 'model/mobilenet_0_25', 'HEAD_FILTER_NUM': 64,
             'CONTEXT_FILTER_RATIO': 1, 'LANDMARK_LR_MULT': 2.5, 'COLOR_MODE': 1, 'LAYER_FIX': True,
             'NAME_SCHEME': 'rf', 'lr': 0.01, 'lr_step': '55,68,80', 'TRAIN': {'BATCH_IMAGES': 16}},
    # The published R50 uses an SSH twice as wide as its laterals (ratio 2: 256 + 128 + 128 = 512 ch).
    'resnet': {'NETWORK': 'resnet', 'pretrained': 'model/resnet-50', 'HEAD_FILTER_NUM': 256,
               'CONTEXT_FILTER_RATIO': 2, 'LANDMARK_LR_MULT': 2.0, 'COLOR_MODE': 2, 'LAYER_FIX': False,
               'NAME_SCHEME': 'ssh', 'lr': 0.001, 'lr_step': '1,2,3,4,5,55,68,80',
               'TRAIN': {'BATCH_IMAGES': 8}},
}
DATASETS = {
    'retinaface': {'DATASET': 'retinaface', 'dataset_path': 'data/retinaface', 'image_set': 'train',
                   'test_image_set': 'val', 'root_path': 'data'},
}


def _merge(dst, src):
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _merge(dst[k], v)
        else:
            dst[k] = copy.deepcopy(v)


def get_config(network='mnet', dataset='retinaface', **overrides):
    """Fresh configuration for a backbone and a dataset.

    :param network: 'mnet' or 'resnet'
    :param dataset: 'retinaface'
    :param overrides: KEY=value for top-level keys, SECTION__KEY=value for nested ones (TRAIN__BATCH_IMAGES=4)
    :return: EasyDict; unknown names raise ValueError, unknown override keys raise KeyError
    """
    if network not in NETWORKS:
        raise ValueError('unknown network %r; valid: %s' % (network, ', '.join(sorted(NETWORKS))))
    if dataset not in DATASETS:
        raise ValueError('unknown dataset %r; valid: %s' % (dataset, ', '.join(sorted(DATASETS))))
    cfg = _common()
    _merge(cfg, NETWORKS[network])
    _merge(cfg, DATASETS[dataset])
    for key, value in overrides.items():
        section, _, name = key.rpartition('__')
        target = cfg[section] if section else cfg
        if name not in target:
            raise KeyError('unknown config key %r' % key)
        target[name] = value
    anchors = anchor_config(cfg['ANCHOR_NETWORK'])
    cfg['RPN_FEAT_STRIDE'] = anchors['strides']
    cfg['RPN_ANCHOR_CFG'] = {str(s): v for s, v in anchors['anchor_cfg'].items()}  # str keys, as the original
    cfg['NUM_ANCHORS'] = anchors['num_anchors']
    return EasyDict(cfg)
