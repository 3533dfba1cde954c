"""Does a trained checkpoint find the faces it was trained on? (the overfit check of a training recipe)

    python -m rcnn.tools.overfit --prefix model/of --epoch 300 --dataset_path data/of [--scales 0.31,0.625,1.0]

A recipe that trains correctly drives a small training set to high recall of its own faces; one that is broken
outside the loss (a stale BatchNorm, a wrong decoding, anchors of another preset) reaches low losses and still
finds nothing. ``write_subset`` copies the first images with a given face count from a split in the RetinaFace
layout; ``training_recall`` detects on every image of a split and counts the faces matched at IoU 0.5.
"""
import argparse
import contextlib
import json
import os
import shutil
import sys

import numpy as np

from rcnn.dataset.retinaface import parse_label_file, xywh_to_boxes
from rcnn.fileio import atomic_open
from rcnn.processing.bbox_transform import bbox_overlaps

__all__ = ['write_subset', 'matched_faces', 'training_recall', 'batchnorm_statistics']


def write_subset(split_dir, out_split_dir, count, min_faces=1, max_faces=8, min_size=0):
    """Copy the first `count` images of `split_dir` (label.txt order) holding min_faces..max_faces faces, none
    smaller than `min_size` pixels (the square root of w x h), and their label lines, to `out_split_dir` (a new
    folder); returns the number of faces."""
    label = os.path.join(split_dir, 'label.txt')
    records = [r for r in parse_label_file(label) if min_faces <= len(r['boxes_xywh']) <= max_faces and
               np.sqrt(r['boxes_xywh'][:, 2] * r['boxes_xywh'][:, 3]).min() >= min_size][:count]
    if len(records) < count:
        raise ValueError('%s has %d images with %d to %d faces of at least %g px, fewer than %d'
                         % (label, len(records), min_faces, max_faces, min_size, count))
    os.makedirs(out_split_dir)
    with open(label) as f:
        lines = f.read().splitlines()
    faces = 0
    with atomic_open(os.path.join(out_split_dir, 'label.txt'), what='label file') as out:
        for rec in records:
            dest = os.path.join(out_split_dir, 'images', rec['path'])
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            shutil.copyfile(os.path.join(split_dir, 'images', rec['path']), dest)
            out.write('# %s\n' % rec['path'])
            for lineno in rec['lines']:
                out.write(lines[lineno - 1].strip() + '\n')
            faces += len(rec['lines'])
    return faces


def matched_faces(det_boxes, gt_boxes, iou=0.5):
    """(matched, best_iou per ground-truth box): detections matched one to one to ground truth, greedily by
    overlap, at IoU >= `iou` (inclusive-pixel IoU, as training and the WIDER toolkit)."""
    gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    det_boxes = np.asarray(det_boxes, dtype=np.float64).reshape(-1, 4)
    if not len(gt_boxes) or not len(det_boxes):
        return 0, np.zeros(len(gt_boxes))
    ov = bbox_overlaps(gt_boxes, det_boxes)
    best = ov.max(axis=1)
    matched, used_gt, used_det = 0, set(), set()
    for g, d in zip(*np.unravel_index(np.argsort(-ov, axis=None), ov.shape)):
        if ov[g, d] < iou:
            break
        if g in used_gt or d in used_det:
            continue
        used_gt.add(g)
        used_det.add(d)
        matched += 1
    return matched, best


SIZE_BUCKETS = ((0, 16), (16, 32), (32, 64), (64, float('inf')))  # face side sqrt(w h) in pixels


def training_recall(detector, split_dir, scales, threshold=0.3, iou=0.5):
    """{scale: {'found', 'faces', 'recall', 'median_best_iou', 'detections', 'by_size'}} of `detector` (a
    RetinaFace) on every image of `split_dir`, one scale at a time; by_size: {'16-32': [found, faces], ...}
    by the face's side in the image."""
    import cv2
    records = parse_label_file(os.path.join(split_dir, 'label.txt'))
    images = [cv2.imread(os.path.join(split_dir, 'images', r['path'])) for r in records]
    out = {}
    for scale in scales:
        found = faces = dets = 0
        bests, sides, hits = [], [], []
        for rec, img in zip(records, images):
            gt = xywh_to_boxes(rec['boxes_xywh'], img.shape[1], img.shape[0])
            gt = gt[(gt[:, 2] > gt[:, 0]) & (gt[:, 3] > gt[:, 1])]
            det, _ = detector.detect(img, threshold, scales=[scale])
            m, best = matched_faces(det[:, :4], gt, iou)
            found, faces, dets = found + m, faces + len(gt), dets + len(det)
            bests.extend(best.tolist())
            sides.extend(np.sqrt((gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1])).tolist())
            hits.extend((best >= iou).tolist())
        sides, hits = np.array(sides), np.array(hits, dtype=bool)
        by_size = {'%g-%g' % (lo, hi): [int(hits[(sides >= lo) & (sides < hi)].sum()),
                                        int(((sides >= lo) & (sides < hi)).sum())] for lo, hi in SIZE_BUCKETS}
        out[scale] = {'found': found, 'faces': faces, 'recall': found / max(faces, 1),
                      'median_best_iou': float(np.median(bests)) if bests else 0.0, 'detections': dets,
                      'by_size': by_size}
    return out


@contextlib.contextmanager
def _no_subgraph():
    old = os.environ.get('MXNET_SUBGRAPH_BACKEND')
    os.environ['MXNET_SUBGRAPH_BACKEND'] = 'NONE'
    try:
        yield
    finally:
        if old is None:
            del os.environ['MXNET_SUBGRAPH_BACKEND']
        else:
            os.environ['MXNET_SUBGRAPH_BACKEND'] = old


def batchnorm_statistics(sym, arg_params, aux_params, batches):
    """{BatchNorm name: (moving_mean, moving_var, batch_mean, batch_var)}: a checkpoint's moving statistics
    next to what they estimate, the batch statistics of each BatchNorm's input averaged over `batches` (NCHW
    arrays of training crops, one device's batch each: a BatchNorm sees only its device's images), every
    BatchNorm normalising by its batch statistics as in a training step. Per channel, numpy float64."""
    from rcnn.compat import mx
    nodes = json.loads(sym.tojson())['nodes']
    internals = sym.get_internals()  # one copy of the graph: the taps must share its nodes
    outputs = internals.list_outputs()
    bns, taps = [], []
    for node in (n for n in nodes if n['op'] == 'BatchNorm'):
        src, index = nodes[node['inputs'][0][0]], node['inputs'][0][1]
        tap = src['name'] if src['op'] == 'null' else '%s_output' % src['name']
        if tap not in outputs:
            tap = '%s_output%d' % (src['name'], index)
        moving = [nodes[i[0]]['name'] for i in node['inputs'][3:5]]  # moving mean, moving var (aux inputs)
        bns.append((node['name'], moving))
        taps.append(internals[outputs.index(tap)])
    group = mx.sym.Group(taps)
    per_batch = []
    for data in batches:
        args = {k: v for k, v in arg_params.items() if k in group.list_arguments()}
        args['data'] = mx.nd.array(data)
        auxs = {k: v.copy() for k, v in aux_params.items() if k in group.list_auxiliary_states()}
        with _no_subgraph():  # oneDNN's graph partitioning miscounts the inputs of a group of taps
            exe = group.bind(mx.cpu(), args, aux_states=auxs, grad_req='null')
        outs = [o.asnumpy().astype(np.float64) for o in exe.forward(is_train=True)]
        per_batch.append([(o.mean(axis=(0, 2, 3)), o.var(axis=(0, 2, 3))) for o in outs])
    out = {}
    for k, (name, (mean_name, var_name)) in enumerate(bns):
        out[name] = (aux_params[mean_name].asnumpy().astype(np.float64),
                     aux_params[var_name].asnumpy().astype(np.float64),
                     np.mean([b[k][0] for b in per_batch], axis=0), np.mean([b[k][1] for b in per_batch], axis=0))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description='Recall of a checkpoint on the faces of a split (default: the one '
                                            'it was trained on)')
    p.add_argument('--prefix', required=True, help='checkpoint prefix')
    p.add_argument('--epoch', type=int, required=True, help='checkpoint epoch')
    p.add_argument('--network', default='net3', help='anchor preset of the checkpoint')
    p.add_argument('--dataset_path', required=True, help='folder with <image_set>/label.txt and images/')
    p.add_argument('--image_set', default='train', help='split folder')
    p.add_argument('--scales', default='0.31,0.625,1.0', help='test scales, each evaluated on its own')
    p.add_argument('--thresh', type=float, default=0.3, help='score threshold')
    args = p.parse_args(argv)
    from retinaface import RetinaFace
    det = RetinaFace(args.prefix, args.epoch, ctx_id=-1, network=args.network)
    result = training_recall(det, os.path.join(args.dataset_path, args.image_set),
                             [float(s) for s in args.scales.split(',')], args.thresh)
    for scale, r in result.items():
        print('scale %.3g: %d of %d faces found (recall %.3f, median best IoU %.2f, %d detections); by side: %s'
              % (scale, r['found'], r['faces'], r['recall'], r['median_best_iou'], r['detections'],
                 ', '.join('%s px %d/%d' % (k, *v) for k, v in r['by_size'].items())))
    json.dump({str(k): v for k, v in result.items()}, sys.stdout)
    print()
    return 0


if __name__ == '__main__':
    sys.exit(main())
