"""Detect faces in images or a folder, draw them and save the detections as JSON.

    python retinaface.py --prefix model/mnet.25 --epoch 0 --image photo.jpg --output out.jpg
    python -m rcnn.tools.detect --prefix model/mnet.25 --image photos/ --output drawn/

One input image: ``--output`` is the drawing's file name and the JSON is written beside it (``out.json``).
A folder: ``--output`` is a folder with one drawing per image and ``detections.json``. Nothing is
overwritten without ``--overwrite``, no input is ever written over (paths are compared after resolving
links), and no output is written through a symlink. An image that cannot be read or detected on is
skipped and reported; the others are kept.
"""
import argparse
import json
import logging
import os
import sys

import mxnet as mx

from retinaface import IMAGE_EXTENSIONS, RetinaFace, draw_detections, read_image, single_scale
from rcnn.core.checkpoint import CheckpointError
from rcnn.fileio import UnsafeOutputError, atomic_open, atomic_path, check_writable_dir, refuse_symlink

__all__ = ['main', 'detections_to_json']
logger = logging.getLogger('detect')


def detections_to_json(faces, landmarks):
    out = []
    for f, lm in zip(faces, landmarks if landmarks is not None else [None] * len(faces)):
        det = {'box': [round(float(v), 3) for v in f[:4]], 'score': round(float(f[4]), 6)}
        if len(f) > 5:
            det['mask'] = round(float(f[5]), 6)  # Anti-Cov models: probability that the face wears a mask
        det['landmarks'] = None if lm is None else [[round(float(x), 3), round(float(y), 3)] for x, y in lm]
        out.append(det)
    return out


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Detect faces and draw them.',
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--prefix', required=True, help='checkpoint prefix, e.g. model/mnet.25')
    p.add_argument('--epoch', type=int, default=0, help='checkpoint epoch')
    p.add_argument('--image', required=True, help='an image file or a folder of images')
    p.add_argument('--output', default='detections', help='output image file (one input) or folder')
    p.add_argument('--network', default='net3', help='anchor preset of the model')
    p.add_argument('--gpu', type=int, default=-1, help='GPU id; -1 for the CPU')
    p.add_argument('--thresh', '--threshold', dest='thresh', type=float, default=0.8, help='score threshold')
    p.add_argument('--scale', type=float, default=0.0,
                   help='resize factor; 0 = the original demo rule (short side 1024, long side <= 1980)')
    p.add_argument('--flip', action='store_true', help='also detect on the mirrored image')
    p.add_argument('--nms', type=float, default=0.4, help='NMS IoU threshold')
    p.add_argument('--mask_thresh', type=float, default=0.2,
                   help='Anti-Cov models (--network net3l): faces with a mask score at or above this are drawn green')
    p.add_argument('--overwrite', action='store_true', help='replace drawings and JSON that already exist')
    args = p.parse_args(argv)
    if not (args.scale == 0 or 0.01 <= args.scale <= 20):  # NaN fails too
        p.error('--scale must lie in [0.01, 20] (or be 0 for the demo rule), got %g' % args.scale)
    if not 0.0 <= args.thresh <= 1.0:
        p.error('--thresh must lie in [0, 1], got %g' % args.thresh)
    if not 0.0 <= args.mask_thresh <= 1.0:
        p.error('--mask_thresh must lie in [0, 1] (a mask probability), got %g' % args.mask_thresh)
    return p, args


def plan_outputs(parser, args):
    """(inputs, drawing paths, JSON path), refused with one sentence when an output would replace an input,
    an existing file (without --overwrite), or go through a symlink."""
    if os.path.isdir(args.image):
        inputs = sorted(os.path.join(args.image, f) for f in os.listdir(args.image)
                        if f.lower().endswith(IMAGE_EXTENSIONS))
        if not inputs:
            parser.error('--image %s holds no image files (%s)' % (args.image, ' '.join(IMAGE_EXTENSIONS)))
        if os.path.isfile(args.output):
            parser.error('--output %s is a file; with a folder of images it must be a folder' % args.output)
        if os.path.realpath(args.output) == os.path.realpath(args.image):
            parser.error('--output is the input folder %s (%s): the drawings would replace the images'
                         % (args.output, os.path.realpath(args.image)))
        out_paths = [os.path.join(args.output, os.path.basename(p)) for p in inputs]  # a.jpg and a.png: two
        json_path = os.path.join(args.output, 'detections.json')
    elif os.path.isfile(args.image):
        inputs = [args.image]
        ext = os.path.splitext(args.output)[1].lower()
        if ext and ext not in IMAGE_EXTENSIONS:
            parser.error('--output %s: not an image file name (%s)' % (args.output, ' '.join(IMAGE_EXTENSIONS)))
        out_paths = [args.output if ext else args.output + '.jpg']
        json_path = os.path.splitext(out_paths[0])[0] + '.json'
    else:
        parser.error('--image: no such file or folder: %s' % args.image)
    real_inputs = {os.path.realpath(p) for p in inputs}
    for path in out_paths + [json_path]:
        if os.path.realpath(path) in real_inputs:
            parser.error('--output: %s is an input image (%s): it would be replaced by the drawing'
                         % (path, os.path.realpath(path)))
        try:
            refuse_symlink(path)
        except UnsafeOutputError as err:
            parser.exit(2, 'error: %s\n' % err)
    existing = [p for p in out_paths + [json_path] if os.path.exists(p)]
    if existing and not args.overwrite:
        parser.exit(2, 'error: %s already exist%s (e.g. %s): pass --overwrite to replace them, or choose another '
                       '--output\n' % ('%d outputs' % len(existing) if len(existing) > 1 else existing[0],
                                       '' if len(existing) > 1 else 's', existing[0]))
    try:
        check_writable_dir(os.path.dirname(os.path.abspath(json_path)))
    except OSError as err:
        parser.exit(2, 'error: --output: %s\n' % err)
    return inputs, out_paths, json_path


def write_image(path, img):
    import cv2
    with atomic_path(path, 'drawing') as tmp:
        if not cv2.imwrite(tmp, img):
            raise OSError('OpenCV could not write %s' % path)


def main(argv=None):
    parser, args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    inputs, out_paths, json_path = plan_outputs(parser, args)
    try:
        detector = RetinaFace(args.prefix, args.epoch, ctx_id=args.gpu, network=args.network, nms=args.nms)
    except (CheckpointError, ValueError) as err:
        parser.exit(2, 'error: %s\n' % err)
    results, skipped = {}, []
    for path, out_path in zip(inputs, out_paths):
        try:
            img = read_image(path)
            scale = args.scale or single_scale(img.shape)
            faces, landmarks = detector.detect(img, args.thresh, scales=[scale], do_flip=args.flip)
        except (ValueError, mx.base.MXNetError) as err:
            reason = str(err).strip().splitlines()[-1]
            logger.warning('skipping %s: %s', path, reason)
            skipped.append((path, reason))
            continue
        try:
            write_image(out_path, draw_detections(img, faces, landmarks, args.mask_thresh))
        except OSError as err:
            parser.exit(2, 'error: could not write %s: %s\n' % (out_path, err.strerror or err))
        results[path] = detections_to_json(faces, landmarks)
        logger.info('%s: %d faces -> %s', path, len(faces), out_path)
    if not results:
        parser.exit(2, 'error: none of the %d input images could be detected on (%s)\n'
                    % (len(inputs), '; '.join('%s: %s' % s for s in skipped[:3])))
    try:
        with atomic_open(json_path, what='detections file') as f:
            json.dump(results, f, indent=1)
    except OSError as err:
        parser.exit(2, 'error: could not write %s: %s\n' % (json_path, err.strerror or err))
    logger.info('detections saved to %s', json_path)
    if skipped:
        logger.warning('%d of %d images skipped: %s', len(skipped), len(inputs), ', '.join(p for p, _ in skipped))
    return 0


if __name__ == '__main__':
    sys.exit(main())
