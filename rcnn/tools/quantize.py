"""INT8 checkpoints: MXNet oneDNN quantization calibrated on real training images.

    python -m rcnn.tools.quantize --prefix model/mnet.25 --epoch 0 --calib data/retinaface/train \\
        --output model/mnet.25-int8

Writes ``<output>-symbol.json`` + ``<output>-0000.params`` (loaded by ``RetinaFace``, ``test.py`` and the CLI like
any checkpoint, on the CPU) and ``<output>-quantize.json`` (source, settings, calibration images).

The fp32 graph is first fused the way oneDNN runs it (conv + BN + ReLU), then every fused conv is quantized
except the ones kept in fp32 (``--keep_fp32``, by the original layer names): by default the backbone (its
narrow MobileNet-0.25 layers lose accuracy in 8 bits) and the prediction heads (``face_rpn_*``: their outputs
are decoded into boxes), so the INT8 part is the neck (FPN + SSH context modules). The calibration
runs the fp32 graph on ``--num_calib`` images of ``--calib``'s label.txt, each at the original demo's single
scale (short side 1024, long side at most 1980; ``retinaface.single_scale``), and sets each quantized layer's output range from
what it saw (``--calib_mode``: ``naive`` = min/max, ``entropy`` = KL-optimal thresholds).
"""
import argparse
import json
import logging
import os
import re
import sys
import time
import types

from rcnn.compat import import_mxnet, mx  # noqa: E402
import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from rcnn.core.checkpoint import CheckpointError, checkpoint_paths, load_checkpoint, save_checkpoint  # noqa: E402
from rcnn.fileio import atomic_open, check_writable_dir, refuse_symlink  # noqa: E402
from rcnn.tools import fused_or_int8_op  # noqa: E402
from rcnn.cli import HelpFormatter  # noqa: E402

logger = logging.getLogger('quantize')
HEADS = r'^face_rpn_'
NECK_AND_HEADS = r'^(rf_|ssh_|face_)'
DEFAULT_KEEP = 'backbone,heads'
CALIB_MODES = ('naive', 'entropy')


def inner_convs(node):
    """Names of the convs inside a fused ``_sg_mkldnn_conv`` node (graph JSON)."""
    return [n['name'] for n in node.get('subgraphs', [{}])[0].get('nodes', []) if n['op'] == 'Convolution']


def fused_layers(fsym):
    """{fused node name: [names of the convs inside it]} of a graph fused by get_backend_symbol."""
    return {node['name']: inner_convs(node) for node in json.loads(fsym.tojson())['nodes']
            if node['op'] == '_sg_mkldnn_conv'}


def named_after_convs(fsym):
    """The fused graph with each fused node renamed after its conv, so the heads keep their output names.

    A quantized conv whose output leaves the INT8 part goes through a ``_contrib_dequantize`` node: that node
    takes the conv's name (it is the fp32 output a head is read from) and the conv becomes ``<name>_int8``.
    """
    graph = json.loads(fsym.tojson())
    nodes = graph['nodes']
    renamed = set()
    for node in nodes:
        if node['op'] == '_sg_mkldnn_conv':
            convs = inner_convs(node)
            if len(convs) == 1:
                node['name'] = convs[0]
                renamed.add(convs[0])
    for node in nodes:
        if node['op'] == '_contrib_dequantize':
            source = nodes[node['inputs'][0][0]]
            if source['name'] in renamed and source['name'] + '_int8' not in renamed:
                node['name'], source['name'] = source['name'], source['name'] + '_int8'
    return mx.sym.load_json(json.dumps(graph))


def depthwise_convs(sym):
    """Names of the grouped (depthwise) Convolution nodes."""
    return [n['name'] for n in json.loads(sym.tojson())['nodes']
            if n['op'] == 'Convolution' and int(n.get('attrs', {}).get('num_group', '1')) > 1]


def early_convs(sym, probe=640, max_stride=8):
    """Backbone convs whose output is at stride <= max_stride (mnet: mobilenet0_conv0..conv10), i.e. the
    high-resolution layers; neck and head convs (rf_*, ssh_*, face_*) are not counted."""
    internals = sym.get_internals()
    _, shapes, _ = internals.infer_shape_partial(data=(1, 3, probe, probe))
    out_shape = dict(zip(internals.list_outputs(), shapes))
    names = []
    for n in json.loads(sym.tojson())['nodes']:
        shape = out_shape.get(n['name'] + '_output')
        if (n['op'] == 'Convolution' and shape and len(shape) == 4 and shape[2] * max_stride >= probe
                and not re.match(NECK_AND_HEADS, n['name'])):
            names.append(n['name'])
    return names


def backbone_convs(sym):
    """Every conv that is not part of the neck or the heads (rf_*, ssh_*, face_*)."""
    return [n['name'] for n in json.loads(sym.tojson())['nodes']
            if n['op'] == 'Convolution' and not re.match(NECK_AND_HEADS, n['name'])]


def first_convs(sym):
    """Names of the Convolution nodes fed directly by the `data` input."""
    nodes = json.loads(sym.tojson())['nodes']
    return [n['name'] for n in nodes
            if n['op'] == 'Convolution' and any(nodes[i[0]]['name'] == 'data' for i in n['inputs'])]


def excluded_fused(sym, layers, keep):
    """Fused node names (of `layers`, ``fused_layers``' map) to leave in fp32, from `keep`: a list of 'backbone',
    'first', 'early', 'heads', 'depthwise' or regexes over the original conv names."""
    named = {'first': first_convs, 'backbone': backbone_convs, 'early': early_convs, 'depthwise': depthwise_convs}
    patterns = []
    all_convs = [c for convs in layers.values() for c in convs]
    for item in keep:
        if not item:
            continue
        if item == 'heads':
            mine = [HEADS]
        elif item in named:
            mine = ['^%s$' % re.escape(n) for n in named[item](sym)]
        else:
            try:
                re.compile(item)
            except re.error as err:
                raise ValueError('--keep_fp32: %r is not a regular expression (%s)' % (item, err)) from None
            mine = [item]
        if not any(re.search(p, c) for p in mine for c in all_convs):
            raise ValueError('--keep_fp32: %r matches no layer of this model (names: backbone, first, early, heads, '
                             'depthwise, or a regular expression over conv names such as %s)' % (item, all_convs[0]))
        patterns += mine
    excluded = []
    for fused, convs in layers.items():
        if any(re.search(p, c) for p in patterns for c in convs):
            excluded.append(fused)
    return excluded


def calibration_images(calib_dir, num, seed):
    """`num` image paths of <calib_dir>/label.txt (a seeded sample, in file order)."""
    from rcnn.dataset.retinaface import parse_label_file
    label = os.path.join(calib_dir, 'label.txt')
    records = parse_label_file(label, with_landmarks=False, skip_bad=True)
    if not records:
        raise ValueError('--calib %s: no images listed in %s' % (calib_dir, label))
    paths = [os.path.join(calib_dir, 'images', r['path']) for r in records]
    if num < len(paths):
        pick = np.sort(np.random.RandomState(seed).choice(len(paths), num, replace=False))
        paths = [paths[i] for i in pick]
    return paths


def quantize(prefix, epoch, calib_paths, calib_mode='entropy', keep=tuple(DEFAULT_KEEP.split(',')), network='net3',
             target_size=1024, max_size=1980):
    """(qsym, qargs, auxs, info) of an INT8 model calibrated on the given images."""
    import_mxnet()
    from mxnet.contrib import quantization as q
    from retinaface import RetinaFace, read_image, single_scale
    if calib_mode not in CALIB_MODES:
        raise ValueError('calib_mode must be one of %s, got %r' % (CALIB_MODES, calib_mode))
    sym, args, auxs = load_checkpoint(prefix, epoch)
    if fused_or_int8_op(json.loads(sym.tojson())['nodes']):
        raise CheckpointError('%s-symbol.json is already a fused or quantized graph; quantize the fp32 checkpoint'
                              % prefix)
    detector = RetinaFace(prefix, epoch, ctx_id=-1, network=network)  # validates the checkpoint and its heads
    fsym = sym.get_backend_symbol('MKLDNN_QUANTIZE')
    layers = fused_layers(fsym)
    excluded = excluded_fused(sym, layers, keep)
    qsym, qargs, qauxs, collector = q.quantize_graph(
        sym=fsym, arg_params=args, aux_params=auxs, ctx=mx.cpu(), excluded_sym_names=excluded,
        calib_mode=calib_mode, quantized_dtype='auto', quantize_mode='full', quantize_granularity='tensor-wise')
    # (oneDNN's fused conv scales its INT8 weights per output channel whatever this says)
    executors = {}
    for path in tqdm(calib_paths, desc='calibration (%s)' % calib_mode, unit='img'):
        img = read_image(path)
        scale = single_scale(img.shape, target_size, max_size)
        im, _ = detector._prepare(img, scale, False)
        tensor = detector._to_tensor([im])
        exe = executors.get(tensor.shape)
        if exe is None:
            bind_args = {k: v for k, v in args.items() if k in fsym.list_arguments()}
            bind_args['data'] = mx.nd.zeros(tensor.shape)
            exe = fsym.bind(mx.cpu(), bind_args, grad_req='null', aux_states=auxs)
            exe.set_monitor_callback(collector.collect, monitor_all=True)
            executors = {tensor.shape: exe}  # one bound executor at a time: calibration shapes rarely repeat
        exe.arg_dict['data'][:] = tensor
        exe.forward(is_train=False)
        mx.nd.waitall()
    # The thresholds as plain floats, handed over as a 'customize' table: MXNet's entropy search returns
    # 1-element arrays, which numpy >= 2.4 refuses to turn into the C floats of the calibration table.
    thresholds = (q._get_optimal_thresholds(collector.hist_dict, 'auto', logger=None) if calib_mode == 'entropy'
                  else collector.min_max_dict)
    table = types.SimpleNamespace(min_max_dict={k: (float(np.asarray(lo).reshape(-1)[0]),
                                                    float(np.asarray(hi).reshape(-1)[0]))
                                                for k, (lo, hi) in thresholds.items()})
    qsym, qargs, qauxs = q.calib_graph(qsym=qsym, arg_params=qargs, aux_params=qauxs, collector=table,
                                       calib_mode='customize', quantized_dtype='auto', logger=None)
    qsym = named_after_convs(qsym.get_backend_symbol('MKLDNN_QUANTIZE'))
    info = {'source': {'prefix': prefix, 'epoch': epoch}, 'calib_mode': calib_mode, 'keep_fp32': list(keep),
            'fused_layers_kept_fp32': {n: layers[n] for n in excluded},
            'quantized_layers': len(layers) - len(excluded),
            'calib_images': calib_paths, 'calib_scale': {'target_size': target_size, 'max_size': max_size},
            'mxnet': mx.__version__}
    return qsym, qargs, qauxs, info


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=HelpFormatter)
    p.add_argument('--prefix', required=True, help='fp32 checkpoint prefix')
    p.add_argument('--epoch', type=int, default=0, help='checkpoint epoch (the NNNN of <prefix>-NNNN.params)')
    p.add_argument('--network', default='net3', help='anchor preset of the model (as for RetinaFace)')
    p.add_argument('--calib', default='data/retinaface/train', help='folder with label.txt and images/')
    p.add_argument('--num_calib', type=int, default=40, help='calibration images (a seeded sample)')
    p.add_argument('--calib_mode', default='entropy', choices=CALIB_MODES,
                   help='entropy: KL-optimal thresholds; naive: the min/max seen')
    p.add_argument('--keep_fp32', default=DEFAULT_KEEP,
                   help="comma list of layers left in fp32: 'backbone' (every conv before the neck), 'first' "
                        "(the conv on the input), 'early' (backbone convs at stride <= 8), 'heads' (face_rpn_*), "
                        "'depthwise' (grouped convs), or regexes over conv names; '' quantizes every conv")
    p.add_argument('--seed', type=int, default=0, help='seed of the calibration sample')
    p.add_argument('--output', required=True, help='INT8 checkpoint prefix (written as epoch 0)')
    p.add_argument('--overwrite', action='store_true', help='replace an existing output checkpoint')
    args = p.parse_args(argv)
    if args.num_calib < 1:
        p.error('--num_calib must be >= 1, got %d' % args.num_calib)
    if not os.path.isfile(os.path.join(args.calib, 'label.txt')):
        p.error('--calib %s: no label.txt there (expected the RetinaFace layout <split>/label.txt + images/)'
                % args.calib)
    return args


def _fail(message):
    """One sentence on stderr, exit status 2 (bad input), as every tool of the project."""
    print('error: %s' % message, file=sys.stderr, flush=True)
    sys.exit(2)


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(message)s')
    args = parse_args(argv)
    out_paths = checkpoint_paths(args.output, 0)
    if not os.path.basename(args.output):
        _fail('--output %s names a folder, not a checkpoint prefix (e.g. %smnet.25-int8)' % (args.output, args.output))
    sources = checkpoint_paths(args.prefix, args.epoch)
    if os.path.realpath(args.output) == os.path.realpath(args.prefix) or any(
            os.path.exists(o) and os.path.exists(i) and os.path.samefile(o, i) for o in out_paths for i in sources):
        _fail('--output %s is the input checkpoint %s (reached through a link?): the fp32 checkpoint is kept, '
              'choose another --output' % (args.output, args.prefix))
    if not args.overwrite and any(os.path.exists(p) for p in out_paths):
        _fail('%s exists; pass --overwrite to replace it' % ' / '.join(p for p in out_paths if os.path.exists(p)))
    try:
        for path in out_paths + (args.output + '-quantize.json',):
            refuse_symlink(path)
        check_writable_dir(os.path.dirname(os.path.abspath(args.output)))  # before the calibration, not after
        paths = calibration_images(args.calib, args.num_calib, args.seed)
        t0 = time.time()
        qsym, qargs, qauxs, info = quantize(args.prefix, args.epoch, paths, args.calib_mode,
                                            [k.strip() for k in args.keep_fp32.split(',')], args.network)
        save_checkpoint(args.output, 0, qsym, qargs, qauxs)
        info['seconds'] = round(time.time() - t0, 1)
        with atomic_open(args.output + '-quantize.json') as f:
            json.dump(info, f, indent=1)
    except (CheckpointError, ValueError, OSError, ImportError) as err:
        _fail(str(err))
    logger.info('wrote %s and %s (%d layers INT8, %d kept fp32, %d calibration images, %.0f s)',
                out_paths[0], out_paths[1], info['quantized_layers'], len(info['fused_layers_kept_fp32']),
                len(paths), info['seconds'])


if __name__ == '__main__':
    main()
