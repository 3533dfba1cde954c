"""Command-line tools: ``python -m rcnn.tools.quantize`` (INT8) and ``python -m rcnn.tools.export_onnx``."""

FUSED_OR_INT8_OPS = ('_sg_mkldnn', '_contrib_quantize')  # op prefixes of oneDNN-fused and quantized graphs


def fused_or_int8_op(nodes):
    """The op of the first oneDNN-fused or INT8 node among graph JSON `nodes`, or None (an fp32 graph)."""
    return next((n['op'] for n in nodes if n['op'].startswith(FUSED_OR_INT8_OPS)), None)
