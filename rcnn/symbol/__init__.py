"""RetinaFace graphs (MXNet symbol API). ``get_symbol(network, mode, cfg)`` is the entry point."""
from rcnn.symbol.registry import get_symbol, get_backbone, NETWORK_BUILDERS

__all__ = ['get_symbol', 'get_backbone', 'NETWORK_BUILDERS']
