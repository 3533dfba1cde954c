"""Validate a split in the RetinaFace layout without training on it.

    python -m rcnn.dataset.check data/retinaface/train

Every line of ``<split>/label.txt`` is parsed, every image must be present, decodable and complete (a JPEG
cut short is found), and every face box must lie inside its image. Prints the counts (images, faces, faces
with landmarks, invalid faces -- no area, or wholly outside the image: training skips them --, boxes
partly outside) and a histogram of face sizes, and lists the first problems by file and line. Exit status
0 when the split is usable as it is, 2 when something must be fixed.
"""
import argparse
import logging
import os
import sys

import numpy as np
from tqdm import tqdm

from rcnn.dataset.retinaface import AnnotationError, parse_label_file, read_training_image
from rcnn.cli import HelpFormatter

__all__ = ['check_split', 'main']
SIZE_BINS = (0, 8, 16, 32, 64, 128, 256, 512, np.inf)  # face size sqrt(w * h), pixels
SHOWN = 10  # problems listed per kind


def check_split(split):
    """{'images', 'faces', 'with_landmarks', 'invalid', 'partly_outside', 'sizes', 'problems': [(kind, text)]}."""
    label = os.path.join(split, 'label.txt')
    records = parse_label_file(label, with_landmarks=True)  # AnnotationError names the first bad line
    report = {'images': len(records), 'box_lines': 0, 'faces': 0, 'with_landmarks': 0, 'invalid': 0,
              'partly_outside': 0,
              'no_faces': 0, 'sizes': np.zeros(len(SIZE_BINS) - 1, dtype=np.int64), 'problems': []}
    seen = {}
    for rec in tqdm(records, desc='checking %s' % split, unit='img'):
        where = '%s:%d' % (label, rec['line'])
        if rec['path'] in seen:
            report['problems'].append(('duplicate', '%s: %s is listed again (first at line %d)'
                                       % (where, rec['path'], seen[rec['path']])))
            continue
        seen[rec['path']] = rec['line']
        try:
            img = read_training_image(os.path.join(split, 'images', rec['path']))
        except ValueError as err:
            report['problems'].append(('image', '%s: %s' % (where, err)))
            continue
        h, w = img.shape[:2]
        boxes = rec['boxes_xywh']
        real = (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
        if not real.any():
            report['no_faces'] += 1
        x1, y1 = boxes[:, 0], boxes[:, 1]
        x2, y2 = x1 + boxes[:, 2], y1 + boxes[:, 3]
        outside = real & ((x2 <= 0) | (y2 <= 0) | (x1 >= w) | (y1 >= h))
        partly = real & ~outside & ((x1 < 0) | (y1 < 0) | (x2 > w) | (y2 > h))
        report['faces'] += int(real.sum())
        report['box_lines'] += len(boxes)
        report['invalid'] += int((~real & (boxes.any(axis=1))).sum() + outside.sum())
        report['partly_outside'] += int(partly.sum())
        report['with_landmarks'] += int((real & (rec['landmarks'][:, :, 2] != -1).any(axis=1)).sum())
        sizes = np.sqrt(np.maximum(boxes[real, 2], 0) * np.maximum(boxes[real, 3], 0))
        report['sizes'] += np.histogram(sizes, bins=SIZE_BINS)[0]
        for line, box in zip(rec['lines'][outside], boxes[outside]):
            report['problems'].append(('outside', '%s:%d: face box %s lies outside the %dx%d image'
                                       % (label, line, ' '.join('%g' % v for v in box), w, h)))
    return report


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=HelpFormatter)
    p.add_argument('split', help='a split folder: <split>/label.txt and <split>/images')
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    if not os.path.isfile(os.path.join(args.split, 'label.txt')):
        p.exit(2, 'error: %s has no label.txt (expected the RetinaFace layout <split>/label.txt + images/)\n'
               % args.split)
    try:
        report = check_split(args.split)
    except AnnotationError as err:
        p.exit(2, 'error: %s\n' % err)
    print('%s: %d images (%d without faces), %d box lines: %d faces (%d with landmarks, %d partly outside: clipped '
          'in training) and %d invalid (no area or wholly outside the image: not trained on), the rest the "0 0 0 0" '
          'lines of images without faces'
          % (args.split, report['images'], report['no_faces'], report['box_lines'], report['faces'],
             report['with_landmarks'], report['partly_outside'], report['invalid']))
    print('face sizes (sqrt(w*h), px): ' + ', '.join(
        '%s-%s: %d' % (int(lo), '' if hi == np.inf else int(hi), n)
        for lo, hi, n in zip(SIZE_BINS[:-1], SIZE_BINS[1:], report['sizes'])))
    fatal = [p_ for p_ in report['problems'] if p_[0] in ('image', 'duplicate')]
    for kind in ('image', 'duplicate', 'outside'):
        mine = [text for k, text in report['problems'] if k == kind]
        for text in mine[:SHOWN]:
            print(('error: ' if kind != 'outside' else 'warning: ') + text)
        if len(mine) > SHOWN:
            print('... and %d more of this kind' % (len(mine) - SHOWN))
    if fatal:
        print('%d problems to fix before training or evaluating on %s' % (len(fatal), args.split))
        return 2
    if not report['faces']:
        print('ok: %s lists images only (no face boxes, as the WIDER test split): test.py can detect on it and pack '
              'the results (--zip); there is nothing to train or evaluate on' % args.split)
        return 0
    print('ok: %s can be trained or evaluated on as it is' % args.split)
    return 0


if __name__ == '__main__':
    sys.exit(main())
