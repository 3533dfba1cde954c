"""Command-line tools: detect (``retinaface``), evaluate (``test.py``), train (``train.py``), quantize (INT8),
export_onnx."""
import sys

FUSED_OR_INT8_OPS = ('_sg_mkldnn', '_contrib_quantize')  # op prefixes of oneDNN-fused and quantized graphs


def fused_or_int8_op(nodes):
    """The op of the first oneDNN-fused or INT8 node among graph JSON `nodes`, or None (an fp32 graph)."""
    return next((n['op'] for n in nodes if n['op'].startswith(FUSED_OR_INT8_OPS)), None)


def train_command():
    """``retinaface-train`` and ``python train.py``: the CPU defaults chosen before MXNet loads (the training
    modules import it as they load: the loader subclasses MXNet's DataIter), and one sentence, not a traceback,
    where MXNet is missing."""
    from rcnn.compat import MXNetMissingError
    from rcnn.cpu_engine import prefer_training_defaults
    prefer_training_defaults(sys.argv[1:])  # compute threads and engine of CPU training; never over the user's
    try:
        from rcnn.tools.train import cli
    except MXNetMissingError as err:
        print('error: training needs MXNet: %s' % err, file=sys.stderr)
        sys.exit(2)
    cli()
