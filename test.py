"""Evaluate a RetinaFace model on WIDER FACE val: submission files + Easy/Medium/Hard AP.

    python test.py --network net3 --prefix model/mnet.25 --epoch 0 --dataset_path data/retinaface \\
                   --output out/mnet25 --gt data/widerface/ground_truth

Writes ``<output>/<event>/<image>.txt`` (name line, count line, ``x y w h score`` lines) for every image
of the split in label.txt, then prints the AP table and writes ``ap.json`` and ``pr_curves.png``.
Without --gt the split's own label.txt is the ground truth (all faces count).
Modes: 0 single scale (short side 1600, long side <= 2150) + NMS; 1 five scales x flip + box voting
(the original default); 2 five scales x flip + NMS.
"""
import argparse
import logging
import os
import sys

import mxnet as mx
import numpy as np
from tqdm import tqdm

from rcnn.core.checkpoint import CheckpointError, latest_epoch
from rcnn.dataset import widerface_eval as wider
from rcnn.dataset.retinaface import AnnotationError, parse_label_file
from retinaface import RetinaFace, read_image

logger = logging.getLogger('test')
DEFAULT_PREFIX = 'model/retinaface'  # train.py's default --prefix: `python train.py` then `python test.py` chain
PYRAMID = (500, 800, 1100, 1400, 1700)  # pixels of the short side at base 800: scales base * s / 800
MODE0_TARGET, MODE0_MAX = 1600, 2150     # single-scale mode: short side target, long side cap (pixels)
PYRAMID_BASE, PYRAMID_MAX = 800, 1200    # pyramid modes: base short side, long side cap at base


def test_scales(shape, mode):
    """Scales and flip of the original test_widerface.py for an image shape (H, W, ...) and mode."""
    short, long_ = min(shape[:2]), max(shape[:2])
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
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        f.writelines(lines)
    os.replace(tmp, path)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Test a RetinaFace model on WIDER FACE val',
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--network', default='net3', help='anchor preset of the model')
    p.add_argument('--dataset', default='retinaface', choices=['retinaface'], help='dataset layout')
    p.add_argument('--image-set', '--image_set', dest='image_set', default='val', help='split folder')
    p.add_argument('--root-path', '--root_path', dest='root_path', default='./data', help='cache parent folder')
    p.add_argument('--dataset-path', '--dataset_path', dest='dataset_path', default='./data/retinaface',
                   help='folder with <split>/label.txt and <split>/images')
    p.add_argument('--gpu', type=int, default=0 if mx.context.num_gpus() > 0 else -1,
                   help='GPU id; -1 for the CPU')
    p.add_argument('--prefix', default=DEFAULT_PREFIX, help='model prefix (default: what train.py writes by default)')
    p.add_argument('--epoch', type=int, default=None, help='model epoch (default: the newest checkpoint of --prefix)')
    p.add_argument('--output', default='./wout', help='result folder')
    p.add_argument('--nocrop', action='store_true', help='pad inputs to multiples of 32')
    p.add_argument('--thresh', type=float, default=0.02, help='score threshold before suppression')
    p.add_argument('--mode', type=int, default=1, choices=[0, 1, 2],
                   help='0 single scale + NMS, 1 pyramid + flip + voting, 2 pyramid + flip + NMS')
    p.add_argument('--part', type=int, default=0, help='this process handles images i with i %% parts == part')
    p.add_argument('--parts', type=int, default=1, help='number of processes sharing the split')
    p.add_argument('--gt', default=None, help='folder with the official wider_*_val.mat ground truth; '
                                              'default: the split label.txt, every face counted')
    p.add_argument('--scales', default='', help='comma-separated resize factors replacing the mode\'s rule '
                                                '(e.g. 1.0 for small images); flip still follows --mode')
    p.add_argument('--overwrite', action='store_true', help='recompute images whose result file exists')
    p.add_argument('--limit', type=int, default=0, help='only the first N images of the split (0 = all)')
    args = p.parse_args(argv)
    if not 0 <= args.part < args.parts:
        p.error('--part must lie in [0, --parts)')
    try:
        args.scale_list = [float(v) for v in args.scales.split(',') if v.strip()]
    except ValueError:
        p.error('--scales must be comma-separated numbers, got %r' % args.scales)
    return args


def resolve_epoch(prefix, epoch):
    """--epoch, or the newest complete checkpoint of the prefix; CheckpointError saying what was looked for."""
    if epoch is not None:
        return epoch
    newest = latest_epoch(prefix)
    if newest is None:
        raise CheckpointError('no checkpoint %s-NNNN.params (with %s-symbol.json) found. Train one first '
                              '(python train.py --network mnet writes %s-NNNN.params by default), or evaluate a '
                              'published model: --prefix model/mnet.25 --epoch 0' % (prefix, prefix, DEFAULT_PREFIX))
    logger.info('evaluating %s-%04d.params (the newest checkpoint of %s)', prefix, newest, prefix)
    return newest


def run(args):
    args.epoch = resolve_epoch(args.prefix, args.epoch)
    label = os.path.join(args.dataset_path, args.image_set, 'label.txt')
    image_dir = os.path.join(args.dataset_path, args.image_set, 'images')
    records = parse_label_file(label, with_landmarks=False)
    if args.limit:
        records = records[:args.limit]
    mine = [r for i, r in enumerate(records) if i % args.parts == args.part]
    detector = RetinaFace(args.prefix, args.epoch, ctx_id=args.gpu, network=args.network, nocrop=args.nocrop,
                          vote=(args.mode == 1))
    done = skipped = failed = 0
    for rec in tqdm(mine, desc='WIDER %s mode %d' % (args.image_set, args.mode), unit='img'):
        event = os.path.basename(os.path.dirname(rec['path']))
        name = os.path.basename(rec['path'])
        out_dir = os.path.join(args.output, event)
        out_path = os.path.join(out_dir, name.replace('jpg', 'txt'))
        if os.path.exists(out_path) and not args.overwrite:
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
        write_submission(out_path, '%s/%s' % (event, name), faces)
        done += 1
    logger.info('%d images detected, %d already had results (use --overwrite), %d unreadable', done, skipped, failed)
    if args.parts > 1:
        logger.info('part %d of %d done; evaluate all parts with: python -m rcnn.dataset.widerface_eval --pred %s %s',
                    args.part, args.parts, args.output, '--gt ' + args.gt if args.gt else '--label ' + label)
        return None
    run_images = {(os.path.basename(os.path.dirname(r['path'])), os.path.splitext(os.path.basename(r['path']))[0])
                  for r in records}
    gt = wider.load_mat_gt(args.gt) if args.gt else wider.load_label_gt(label)
    results, gt, _ = wider.evaluate_folder(args.output, gt, subset=run_images)
    title = '%s mode %d (%s)' % (os.path.basename(args.prefix), args.mode,
                                 'official .mat ground truth' if args.gt else 'label.txt ground truth')
    wider.report(results, gt, args.output, title)
    if len(gt.images) < len(run_images):
        logger.warning('%d run images are not in the ground truth and were not evaluated',
                       len(run_images) - len(gt.images))
    return results


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(message)s', stream=sys.stdout)
    try:
        run(args)
    except (CheckpointError, AnnotationError, FileNotFoundError, ValueError) as err:
        logger.error('error: %s', err)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
