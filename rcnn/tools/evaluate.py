"""Evaluate a RetinaFace model on WIDER FACE val: submission files + Easy/Medium/Hard AP (or, on the test split,
the files for the test server).

    python test.py --network net3 --prefix model/mnet.25 --epoch 0 --dataset_path data/retinaface \\
                   --output out/mnet25 --gt data/widerface/ground_truth

Writes ``<output>/<event>/<image>.txt`` (name line, count line, ``x y w h score`` lines) for every image
of the split in label.txt, then prints the AP table and writes ``ap.json`` and ``pr_curves.png``.
Without --gt the split's own label.txt is the ground truth (all faces count). A split whose label.txt lists
images only (``--image_set test``, made by ``rcnn.dataset.convert_wider --filelist``) gets its result files and
no AP; ``--zip`` packs them as ``<output>.zip`` for the WIDER FACE test server.
Modes (``MODES``): 0, 1, 2 as the original test_widerface.py, and the peers' protocols 'original' and 'vga'.
"""
import argparse
import json
import logging
import os
import shlex
import sys

import numpy as np
from tqdm import tqdm

from rcnn.core.checkpoint import CheckpointError, latest_epoch
from rcnn.core.inference import is_onnx
from rcnn.dataset import breakdown, widerface_eval as wider
from rcnn.dataset.retinaface import AnnotationError, parse_label_file
from rcnn.fileio import atomic_open, atomic_path, check_writable_dir, refuse_symlink
from rcnn.cli import HelpFormatter, cli_words
from retinaface import RetinaFace, read_image

logger = logging.getLogger('test')
DEFAULT_PREFIX = 'model/retinaface'  # train.py's default --prefix: `python train.py` then `python test.py` chain
RUN_MANIFEST = 'run.json'  # in the output folder: the model and settings its result files were made with
PYRAMID = (500, 800, 1100, 1400, 1700)  # pixels of the short side at base 800: scales base * s / 800
MODE0_TARGET, MODE0_MAX = 1600, 2150     # single-scale mode: short side target, long side cap (pixels)
PYRAMID_BASE, PYRAMID_MAX = 800, 1200    # pyramid modes: base short side, long side cap at base


MODES = {  # --mode: how each image is tested (scales, flip, suppression)
    0: 'single scale (short side 1600, long side <= 2150) + NMS',
    1: '5 scales x flip + box voting (the original default)',
    2: '5 scales x flip + NMS',
    'original': "each image at its own size, single scale + NMS (Pytorch_Retinaface's 'origin' rows)",
    'vga': "long side resized to 640, single scale + NMS (SCRFD's table)",
}
VGA_SIDE = 640


def parse_mode(text):
    """--mode: 0, 1, 2 (ints, as the original's) or a peer protocol's name."""
    text = str(text).strip().lower()
    mode = int(text) if text.isdigit() else text
    if mode not in MODES:
        raise argparse.ArgumentTypeError('%r: choose %s' % (text, ', '.join(str(m) for m in MODES)))
    return mode


def test_scales(shape, mode):
    """Scales and flip of an image shape (H, W, ...) in a mode: 0-2 as the original test_widerface.py; 'original'
    the image as it is; 'vga' its long side at 640 px."""
    short, long_ = min(shape[:2]), max(shape[:2])
    if mode == 'original':
        return [1.0], False
    if mode == 'vga':
        return [VGA_SIDE / long_], False
    if mode == 0:
        scale = MODE0_TARGET / short
        if np.round(scale * long_) > MODE0_MAX:
            scale = MODE0_MAX / long_
        return [scale], False
    base = PYRAMID_BASE / short
    if np.round(base * long_) > PYRAMID_MAX:
        base = PYRAMID_MAX / long_
    return [base * s / PYRAMID_BASE for s in PYRAMID], True


def write_submission(path, rel_name, faces):
    """WIDER result file: name, count, then 'x y w h score' (truncated ints, %g score), atomically."""
    lines = ['%s\n' % rel_name, '%d\n' % len(faces)]
    for x1, y1, x2, y2, score in faces[:, :5].astype(np.float64):
        lines.append('%d %d %d %d %g \n' % (int(x1), int(y1), int(x2 - x1), int(y2 - y1), score))
    with atomic_open(path, what='result file') as f:
        f.writelines(lines)


def zip_path(output):
    """Where --zip writes the archive of `output`: beside it, named after the folder (`--output .` too)."""
    real = os.path.realpath(output)
    return os.path.join(os.path.dirname(real), os.path.basename(real) + '.zip')


def write_zip(output, records):
    """zip_path(output) of exactly the result files of `records` (<folder>/<event>/<image>.txt), written
    atomically: regular files only (a planted link is never followed into the archive), nothing else that lies
    in the folder. Returns (path, files packed, [(path, why) left out])."""
    import zipfile
    top = os.path.basename(os.path.realpath(output))
    path = zip_path(output)
    packed, left = 0, []
    wanted = set()
    with atomic_path(path, 'submission archive') as tmp:
        with zipfile.ZipFile(tmp, 'w', zipfile.ZIP_DEFLATED) as z:
            for rec in records:
                event, name = result_key(rec['path'])
                wanted.add((event, name))
                src = os.path.join(output, event, name)
                if os.path.islink(src) or os.path.islink(os.path.join(output, event)):
                    left.append((src, 'a symbolic link, not a result file this run wrote'))
                elif not os.path.isfile(src):
                    left.append((src, 'missing (the image had no result)'))
                else:
                    z.write(src, '%s/%s/%s' % (top, event, name))
                    packed += 1
    for root, _, files in os.walk(output):
        for f in files:
            rel = os.path.relpath(os.path.join(root, f), output)
            parts = rel.split(os.sep)
            if f != RUN_MANIFEST and (len(parts) != 2 or (parts[0], parts[1]) not in wanted):
                left.append((os.path.join(root, f), 'not a result file of this split'))
    return path, packed, left


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Test a RetinaFace model on WIDER FACE val',
                                formatter_class=HelpFormatter)
    p.add_argument('--network', default='net3', help='anchor preset of the model')
    p.add_argument('--dataset', default='retinaface', choices=['retinaface'], help='dataset layout')
    p.add_argument('--image-set', '--image_set', dest='image_set', default='val', help='split folder')
    p.add_argument('--root-path', '--root_path', dest='root_path', default='./data', help='cache parent folder')
    p.add_argument('--dataset-path', '--dataset_path', dest='dataset_path', default='./data/retinaface',
                   help='folder with <split>/label.txt and <split>/images')
    p.add_argument('--gpu', type=int, default=None,
                   help='GPU id; -1 for the CPU (default: GPU 0 where MXNet sees one, else the CPU; the CPU for an '
                        '.onnx model)')
    p.add_argument('--prefix', default=DEFAULT_PREFIX, help='model prefix (default: what train.py writes by '
                                                            'default), or an ONNX export (model.onnx)')
    p.add_argument('--epoch', type=int, default=None, help='model epoch (default: the newest checkpoint of --prefix; '
                                                           'unused for an .onnx model)')
    p.add_argument('--output', default='./wout', help='result folder')
    p.add_argument('--nocrop', action='store_true', help='pad inputs to multiples of 32')
    p.add_argument('--thresh', type=float, default=0.02, help='score threshold before suppression')
    p.add_argument('--mode', type=parse_mode, default=1,
                   help='; '.join('%s: %s' % (m, d) for m, d in MODES.items()))
    p.add_argument('--part', type=int, default=0, help='this process handles images i with i %% parts == part')
    p.add_argument('--parts', type=int, default=1, help='number of processes sharing the split')
    p.add_argument('--gt', default=None, help='folder with the official wider_*_val.mat ground truth; '
                                              'default: the split label.txt, every face counted')
    p.add_argument('--scales', default='', help='comma-separated resize factors replacing the mode\'s rule '
                                                '(e.g. 1.0 for small images); flip still follows --mode')
    p.add_argument('--overwrite', action='store_true', help='recompute images whose result file exists')
    p.add_argument('--limit', type=int, default=0, help='only the first N images of the split (0 = all)')
    p.add_argument('--zip', action='store_true', help='also pack the result files into <output>.zip (<folder>/<event>/'
                                                      '<image>.txt, the layout the WIDER test server takes)')
    args = p.parse_args(argv)
    if args.parts < 1 or not 0 <= args.part < args.parts:
        p.error('--parts must be >= 1 and --part must lie in [0, --parts)')
    if args.limit < 0:
        p.error('--limit must be >= 0 (0 = all images), got %d' % args.limit)
    if not 0.0 <= args.thresh <= 1.0:
        p.error('--thresh must lie in [0, 1], got %g' % args.thresh)
    try:
        args.scale_list = [float(v) for v in args.scales.split(',') if v.strip()]
    except ValueError:
        p.error('--scales must be comma-separated numbers, got %r' % args.scales)
    bad = [v for v in args.scale_list if not (np.isfinite(v) and v > 0)]
    if bad:
        p.error('--scales must be positive resize factors, got %s' % ', '.join('%g' % v for v in bad))
    if args.gt is not None:  # before the detection pass, not after it
        missing = [n for n in ('wider_easy_val.mat', 'wider_medium_val.mat', 'wider_hard_val.mat')
                   if not os.path.isfile(os.path.join(args.gt, n))]
        if missing:
            p.error('--gt %s: %s not found (the official evaluation ground truth, eval_tools/ground_truth)'
                    % (args.gt, ', '.join(missing)))
    if os.path.exists(args.output) and not os.path.isdir(args.output):
        p.error('--output %s is a file, not a folder' % args.output)
    if args.zip and args.parts > 1:
        p.error('--zip packs the whole split: once every part is done, run once more without --parts/--part and '
                'with --zip (finished images are not detected again)')
    if args.zip and os.path.exists(zip_path(args.output)) and not args.overwrite:
        p.error('%s exists: pass --overwrite to replace it' % zip_path(args.output))
    return args


def default_gpu(prefix):
    """GPU 0 where MXNet sees a GPU, else -1; -1 for an ONNX model (MXNet is not imported for it)."""
    if is_onnx(prefix):
        return -1
    from rcnn.compat import mx
    return 0 if mx.context.num_gpus() > 0 else -1


def resolve_epoch(prefix, epoch):
    """--epoch, or the newest complete checkpoint of the prefix (0 for an .onnx file); CheckpointError saying
    what was looked for."""
    if epoch is not None:
        return epoch
    if is_onnx(prefix):
        return 0
    newest = latest_epoch(prefix)
    if newest is None:
        raise CheckpointError('no checkpoint %s-NNNN.params (with %s-symbol.json) found. Train one first '
                              '(python train.py --network mnet writes %s-NNNN.params by default), or evaluate a '
                              'published model: --prefix model/mnet.25 --epoch 0' % (prefix, prefix, DEFAULT_PREFIX))
    logger.info('evaluating %s-%04d.params (the newest checkpoint of %s)', prefix, newest, prefix)
    return newest


def result_name(image_name):
    """Result file of an image: its stem + .txt (``a.jpeg`` -> ``a.txt``; the evaluator looks for exactly that)."""
    return os.path.splitext(image_name)[0] + '.txt'


def result_key(label_path):
    """(event folder, result file name) of a label.txt image path: where the WIDER layout puts its results."""
    return os.path.basename(os.path.dirname(label_path)), result_name(os.path.basename(label_path))


def is_result_file(path, rel_name):
    """Whether an existing file is a result file this tool wrote for that image (first line = the image)."""
    try:
        with open(path, 'r', errors='strict') as f:
            return f.readline().strip() == rel_name
    except (OSError, UnicodeDecodeError):
        return False


def run_settings(args):
    """What decides a result folder's content: a folder mixes results of one model and one setting only."""
    return {'prefix': os.path.abspath(args.prefix), 'epoch': args.epoch, 'network': args.network,
            'mode': args.mode, 'thresh': args.thresh, 'scales': args.scale_list, 'nocrop': args.nocrop,
            'split': os.path.abspath(os.path.join(args.dataset_path, args.image_set))}


def claim_output(output, settings, overwrite):
    """Record the run's settings in <output>/run.json; refuse a folder that holds another run's results."""
    manifest = os.path.join(output, RUN_MANIFEST)
    if os.path.isfile(manifest):
        with open(manifest) as f:
            try:
                old = json.load(f)
            except ValueError:
                old = {}
        if not isinstance(old, dict):  # a hand-edited [] or null: no settings recorded
            old = {}
        differ = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
        if differ and not overwrite:
            raise ValueError('%s holds results of another run (%s): use --overwrite to recompute them, or another '
                             '--output' % (output, '; '.join('%s %r, now %r' % (k, old.get(k), settings.get(k))
                                                              for k in differ)))
    elif os.path.isdir(output) and not overwrite and any(
            f.endswith('.txt') for _, _, files in os.walk(output) for f in files):
        raise ValueError('%s already holds result files but no %s saying how they were made: use --overwrite to '
                         'recompute them, or another --output' % (output, RUN_MANIFEST))
    check_writable_dir(output, '--output folder')
    with atomic_open(manifest, what='run manifest') as f:
        json.dump(settings, f, indent=1)


def run(args):
    args.epoch = resolve_epoch(args.prefix, args.epoch)
    if args.gpu is None:
        args.gpu = default_gpu(args.prefix)
    label = os.path.join(args.dataset_path, args.image_set, 'label.txt')
    image_dir = os.path.join(args.dataset_path, args.image_set, 'images')
    records = parse_label_file(label, with_landmarks=False)
    if not records:
        raise ValueError('%s lists no images (no "# <image path>" line)' % label)
    seen, results_of = {}, {}
    for rec in records:
        if rec['path'] in seen:
            raise ValueError('%s:%d: image %s is listed twice (first at line %d)'
                             % (label, rec['line'], rec['path'], seen[rec['path']]))
        seen[rec['path']] = rec['line']
        key = result_key(rec['path'])
        if key in results_of:  # the official layout keeps only <event>/<image>: a/ev/x.jpg and b/ev/x.jpg collide
            raise ValueError('%s:%d: image %s would share the result file %s/%s with line %d (%s): the WIDER layout '
                             'keeps only the event folder and the file name' % (label, rec['line'], rec['path'],
                                                                                 key[0], key[1], *results_of[key]))
        results_of[key] = (rec['line'], rec['path'])
    if args.limit:
        records = records[:args.limit]
    mine = [r for i, r in enumerate(records) if i % args.parts == args.part]
    detector = RetinaFace(args.prefix, args.epoch, ctx_id=args.gpu, network=args.network, nocrop=args.nocrop,
                          vote=(args.mode == 1))
    settings = run_settings(args)
    claim_output(args.output, settings, args.overwrite)
    done = skipped = failed = 0
    for rec in tqdm(mine, desc='WIDER %s mode %s' % (args.image_set, args.mode), unit='img'):
        event, result = result_key(rec['path'])
        name = os.path.basename(rec['path'])
        out_dir = os.path.join(args.output, event)
        out_path = os.path.join(out_dir, result)
        if os.path.exists(out_path):
            if not is_result_file(out_path, '%s/%s' % (event, name)):
                raise ValueError('%s exists and is not the result file of %s/%s: not writing over it (choose '
                                 'another --output)' % (out_path, event, name))
            if not args.overwrite:
                skipped += 1
                continue
        try:
            img = read_image(os.path.join(image_dir, rec['path']))
        except ValueError as err:
            logger.warning('%s:%d: %s', label, rec['line'], err)
            failed += 1
            continue
        scales, flip = test_scales(img.shape, args.mode)
        scales = args.scale_list or scales
        faces, _ = detector.detect(img, args.thresh, scales=scales, do_flip=flip)
        os.makedirs(out_dir, exist_ok=True)
        refuse_symlink(out_dir, 'result folder')
        write_submission(out_path, '%s/%s' % (event, name), faces)
        done += 1
    logger.info('%d images detected, %d already had results (use --overwrite), %d unreadable', done, skipped, failed)
    if args.parts > 1:
        if failed:
            logger.warning('%d images of this part could not be read: they have no result file and count as '
                           'images without detections (or are left out with --subset)', failed)
        if not args.gt and not any(len(r['boxes_xywh']) for r in records):  # the test split: no AP to compute
            logger.info('part %d of %d done; once every part is, pack them for the test server: run this command '
                        'once more without --parts/--part and with --zip (finished images are not detected again)',
                        args.part, args.parts)
            return None
        logger.info('part %d of %d done; once every part is, evaluate them together with: python -m '
                    'rcnn.dataset.widerface_eval --pred %s %s%s', args.part, args.parts, shlex.quote(args.output),
                    '--gt ' + shlex.quote(args.gt) if args.gt else '--label ' + shlex.quote(label),
                    ' --subset' if args.limit or args.gt else '')
        return None
    if args.zip:
        path, packed, left = write_zip(args.output, records)
        logger.info('submission archive: %s (%d result files)', path, packed)
        for where, why in left[:5]:
            logger.warning('not in the archive: %s (%s)', where, why)
        if len(left) > 5:
            logger.warning('%d more files not in the archive', len(left) - 5)
    if not args.gt and not any(len(r['boxes_xywh']) for r in records):
        logger.info('%s lists images only (no ground truth, as the WIDER test split): the result files are in %s in '
                    'the official layout; no AP can be computed here%s', label, args.output,
                    '' if args.zip else ' (--zip packs them for the test server)')
        return None
    run_images = {(os.path.basename(os.path.dirname(r['path'])), os.path.splitext(os.path.basename(r['path']))[0])
                  for r in records}
    gt = wider.load_mat_gt(args.gt) if args.gt else wider.load_label_gt(label)
    total = len(gt.images)
    preds, gt, _ = wider.read_folder(args.output, gt, subset=run_images)
    prepared = wider.prepare(preds, gt)
    results = wider.evaluate(preds, gt, prepared)
    title = '%s mode %s (%s)' % (os.path.basename(args.prefix), args.mode,
                                 'official .mat ground truth' if args.gt else 'label.txt ground truth')
    if len(gt.images) < total:
        title += ', subset: %d of its %d images' % (len(gt.images), total)
    paths = {result_key(r['path']): os.path.join(image_dir, r['path']) for r in records}
    extra = breakdown.explain(preds, gt, prepared, args.output, lambda key: paths.get((key[0], key[1] + '.txt')))
    wider.report(results, gt, args.output, title, run=settings, extra=extra)
    if len(gt.images) < len(run_images):
        logger.warning('%d run images are not in the ground truth and were not evaluated',
                       len(run_images) - len(gt.images))
    return results


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(message)s', stream=sys.stdout)
    try:
        run(args)
    except (CheckpointError, AnnotationError, OSError, ValueError, ImportError) as err:
        logger.error('error: %s', cli_words(str(err)))
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
