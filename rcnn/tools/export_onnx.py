"""ONNX export of a RetinaFace checkpoint (any graph this code loads: mnet.25, R50, Anti-Cov, models trained here).

    python -m rcnn.tools.export_onnx --prefix model/mnet.25 --epoch 0 --output model/mnet.25.onnx

The ONNX model takes ``data`` (batch, 3, height, width) float32 RGB, normalised as the detector does, with
dynamic batch, height and width, and has the checkpoint's outputs under the same names and order (without the
``_output`` suffix), so ``RetinaFace('model.onnx')`` decodes them with the same code on ONNX Runtime, without
MXNet. A model trained here records its anchor preset in the metadata (``retinaface.anchor_preset``). ``SoftmaxActivation(mode='channel')`` (no
ONNX converter in MXNet 1.9.1) is written as the equivalent ``softmax(axis=1)``, and BatchNorm layers with
``fix_gamma=True`` (R50's ``bn_data``) get gamma 1, as MXNet computes them (its converter drops the flag). Opset 13 (ONNX's default
domain); exported with MXNet's ``mx.onnx`` (onnx 1.18.0; 1.19 removed ``onnx.mapping``, which MXNet's exporter
reads), checked with ``onnx.checker`` and onnxruntime 1.23.2.
"""
import argparse
import json
import os
import sys

from rcnn.compat import mx  # noqa: E402
import numpy as np  # noqa: E402

from rcnn.core.checkpoint import CheckpointError, load_checkpoint  # noqa: E402
from rcnn.core.inference import PRESET_METADATA, trained_preset  # noqa: E402
from rcnn.fileio import atomic_path, check_writable_dir, refuse_symlink  # noqa: E402
from rcnn.tools import fused_or_int8_op  # noqa: E402
from rcnn.cli import HelpFormatter  # noqa: E402

OPSET = 13
INPUT_DIMS = ('batch', None, 'height', 'width')  # names of the dynamic axes of `data` (channels fixed at 3)


class ExportError(ValueError):
    pass


def fixed_gammas(sym):
    """Names of the gamma inputs of BatchNorm nodes with fix_gamma=True (MXNet then uses 1, whatever is stored;
    MXNet's ONNX converter ignores the flag, so the export writes ones for them)."""
    nodes = json.loads(sym.tojson())['nodes']
    return [nodes[n['inputs'][1][0]]['name'] for n in nodes
            if n['op'] == 'BatchNorm' and n.get('attrs', {}).get('fix_gamma', 'True') in ('True', 'true', '1')]


def onnx_ready_symbol(sym, where):
    """The graph with every SoftmaxActivation(mode=channel) written as softmax(axis=1)."""
    graph = json.loads(sym.tojson())
    fused = fused_or_int8_op(graph['nodes'])
    if fused:
        raise ExportError('%s is a fused or INT8 graph (%s); export the fp32 checkpoint' % (where, fused))
    for node in graph['nodes']:
        if node['op'] == 'SoftmaxActivation':
            mode = node.get('attrs', {}).get('mode', 'instance')
            if mode != 'channel':
                raise ExportError('%s: node %s is SoftmaxActivation(mode=%s); only mode=channel has an ONNX '
                                  'equivalent here' % (where, node['name'], mode))
            node['op'], node['attrs'] = 'softmax', {'axis': '1'}
    return mx.sym.load_json(json.dumps(graph))


def export(prefix, epoch, output, probe=(1, 3, 640, 640)):
    """Write the ONNX model of prefix/epoch to `output` (atomically); returns the list of output names."""
    try:
        import onnx
    except ImportError:
        raise ExportError('the onnx package is missing: pip install onnx==1.18.0 (requirements-base.txt)') from None
    sym, args, auxs = load_checkpoint(prefix, epoch)
    preset = trained_preset(sym)
    sym = onnx_ready_symbol(sym, '%s-symbol.json' % prefix)
    params = dict(args)
    params.update(auxs)
    for name in fixed_gammas(sym):
        if name in params:
            params[name] = mx.nd.ones_like(params[name])
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with atomic_path(output, 'ONNX file') as tmp:  # never through a symlink; the usual file mode, not 0600
        try:
            mx.onnx.export_model(sym, params, in_shapes=[probe], in_types=np.float32, onnx_file_path=tmp,
                                 dynamic=True, dynamic_input_shapes=[(None, 3, None, None)])
        except (AttributeError, NotImplementedError, mx.base.MXNetError) as err:
            raise ExportError('%s-symbol.json cannot be exported: %s' % (prefix, err)) from None
        model = onnx.load(tmp)
        finish(model, onnx)
        if preset is not None:  # RetinaFace('x.onnx', network=...) checks it, as it does for the checkpoint
            onnx.helper.set_model_props(model, {PRESET_METADATA: preset})
        onnx.save(model, tmp)
    return [o.name for o in model.graph.output]


def finish(model, onnx):
    """Opset 13, weights as initializers only (not graph inputs), named dynamic axes, no unused constants."""
    del model.opset_import[:]
    model.opset_import.extend([onnx.helper.make_opsetid('', OPSET)])
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    for dim, name in zip(model.graph.input[0].type.tensor_type.shape.dim, INPUT_DIMS):
        if name:
            dim.dim_param = name
    used = {name for node in model.graph.node for name in node.input}
    kept = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    model.producer_name = 'retinaface-mxnet rcnn.tools.export_onnx'
    onnx.checker.check_model(model, full_check=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=HelpFormatter)
    p.add_argument('--prefix', required=True, help='checkpoint prefix')
    p.add_argument('--epoch', type=int, default=0, help='checkpoint epoch (the NNNN of <prefix>-NNNN.params)')
    p.add_argument('--output', required=True, help='the .onnx file to write')
    p.add_argument('--overwrite', action='store_true', help='replace an existing --output')
    args = p.parse_args(argv)

    def fail(message):
        print('error: %s' % message, file=sys.stderr, flush=True)
        sys.exit(2)

    if os.path.isdir(args.output):
        fail('--output %s is a folder: name the .onnx file to write' % args.output)
    if os.path.exists(args.output) and not args.overwrite:
        fail('%s exists; pass --overwrite to replace it' % args.output)
    try:
        refuse_symlink(args.output)
        check_writable_dir(os.path.dirname(os.path.abspath(args.output)))
        names = export(args.prefix, args.epoch, args.output)
    except (CheckpointError, ExportError, OSError, ImportError) as err:
        fail(str(err))
    print('wrote %s (opset %d, input data [batch, 3, height, width], %d outputs: %s)'
          % (args.output, OPSET, len(names), ', '.join(names)))


if __name__ == '__main__':
    main()
