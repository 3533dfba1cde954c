"""``get_symbol(network, mode, cfg)``: the one place that maps a network name to its graph."""
from rcnn.compat import mx

from rcnn.symbol.common import build_heads, test_outputs, train_outputs
from rcnn.symbol.symbol_mnet import get_mnet_body
from rcnn.symbol.symbol_resnet import get_resnet_body

NETWORK_BUILDERS = {
    'mnet': lambda data, cfg: get_mnet_body(data, cfg.MNET_MULTIPLIER),
    'resnet': lambda data, cfg: get_resnet_body(data, cfg.RESNET_LAYERS),
}


def get_backbone(network, cfg, data=None):
    """{stride: tap symbol} of a backbone."""
    if network not in NETWORK_BUILDERS:
        raise ValueError('unknown network %r; valid: %s' % (network, ', '.join(sorted(NETWORK_BUILDERS))))
    return NETWORK_BUILDERS[network](data if data is not None else mx.sym.Variable('data'), cfg)


def get_symbol(network, mode, cfg):
    """RetinaFace graph of a backbone.

    :param network: 'mnet' or 'resnet'
    :param mode: 'train' (18 outputs with losses, needs the 15 label inputs) or 'test' (9 outputs)
    :param cfg: config from ``rcnn.config.get_config``
    """
    if mode not in ('train', 'test'):
        raise ValueError("mode must be 'train' or 'test', got %r" % mode)
    heads = build_heads(get_backbone(network, cfg), cfg)
    return train_outputs(heads, cfg) if mode == 'train' else test_outputs(heads, cfg)
