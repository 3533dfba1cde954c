"""Do our training targets agree with what the published model learned?

    python bench/target_fit.py [--models ../shared/models/mnet.25,out/finetune_real/mnet-ft:4] [--images 200]

The published mnet.25 was trained by the original on WIDER train, which includes the real train images of
``shared/``. On training crops of those images (``train.py``'s own pipeline: flips, random square crops,
seeded), the anchors our ``AnchorAssigner`` labels as faces are decoded twice: with the model's predicted
deltas and with our regression targets. If our box convention and targets are the original's, the
published model's boxes sit on our targets with no systematic offset; a convention that differs by one
pixel (the former ``x2 = x + w - 1``) shows as a one-pixel bias in the box width and height. The script
prints, per model, the median and mean of (predicted - target) in crop pixels for x1, y1, x2, y2, width
and height, over all face anchors and by face size, and the same against the former convention's targets;
and the box centre's offset on plain and on mirrored images (a flip one pixel off would split them by
about a pixel).
A fine-tuned model (``prefix:epoch``) is read the same way: training should not have to move the boxes.
"""
import argparse
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from retinaface import RetinaFace  # noqa: E402  (selects the CPU engine before MXNet loads)

from rcnn.config import get_config  # noqa: E402
from rcnn.dataset.retinaface import RetinaFaceDataset, flip_roidb  # noqa: E402
from rcnn.io.image import get_crop_image  # noqa: E402
from rcnn.io.rpn import AnchorAssigner  # noqa: E402
from rcnn.processing.bbox_transform import nonlinear_pred  # noqa: E402

SIZE_BINS = ((0, 16), (16, 32), (32, 64), (64, 10 ** 6))  # face width in crop pixels (x2 - x1 + 1)


def samples(data, count, seed, root):
    """(tensor, boxes, landmarks, mirrored) of `count` seeded training crops (plain and mirrored images)."""
    cfg = get_config('mnet', 'retinaface')
    roidb = RetinaFaceDataset('train', root, data).gt_roidb()
    roidb = roidb + flip_roidb(roidb)
    rng = np.random.RandomState(seed)
    picks = rng.choice(len(roidb), size=min(count, len(roidb)), replace=False)
    return cfg, [get_crop_image(roidb[i], cfg, rng) + (roidb[i]['flipped'],) for i in picks]


def residuals(det, cfg, crops, shift):
    """Per face anchor: (predicted box - target box) in crop pixels (N, 4), the target box width (N,) and
    whether the crop is of a mirrored image (N,).

    shift: subtracted from the ground truth's x2, y2 before the targets are computed (0: our convention,
    1: the former x2 = x + w - 1)."""
    assigner = AnchorAssigner(cfg.RPN_ANCHOR_CFG, cfg.RPN_FEAT_STRIDE, cfg.IMAGE_SIZE, landmarks=False)
    diffs, widths, mirrored = [], [], []
    for tensor, boxes, landmarks, flipped in crops:
        if len(boxes) == 0:
            continue
        gt = boxes.astype(np.float64).copy()
        gt[:, 2:] -= shift
        targets = assigner.assign(gt, landmarks)
        outputs = det.forward(tensor[None])
        for s in cfg.RPN_FEAT_STRIDE:
            A = assigner.num_anchors[s]
            label = targets['face_label_stride%d' % s].reshape(A, -1)             # (A, H*W)
            target = targets['face_bbox_target_stride%d' % s].reshape(A, 4, -1)    # (A, 4, H*W)
            bbox = outputs[det._heads[s]['bbox']][0]                                # (4A, H, W)
            a, cell = np.nonzero(label == 1)
            if a.size == 0:
                continue
            pred = bbox.reshape(A, 4, -1)
            anchors = det._anchors.get(s, *bbox.shape[1:])[cell * A + a]
            want = nonlinear_pred(anchors, target[a, :, cell])
            got = nonlinear_pred(anchors, pred[a, :, cell])
            diffs.append(got - want)
            widths.append(want[:, 2] - want[:, 0] + 1)
            mirrored.append(np.full(a.size, flipped))
    return np.vstack(diffs), np.concatenate(widths), np.concatenate(mirrored)


def summary(diff, width):
    d = np.column_stack((diff, diff[:, 2] - diff[:, 0], diff[:, 3] - diff[:, 1]))  # x1 y1 x2 y2 w h
    rows = [('all', d)] + [('%d-%s px' % (lo, hi if hi < 10 ** 6 else ''), d[(width >= lo) & (width < hi)])
                           for lo, hi in SIZE_BINS]
    return [(name, len(part), np.median(part, axis=0) if len(part) else None,
             part.mean(axis=0) if len(part) else None) for name, part in rows]


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--shared', default=os.path.join(ROOT, '..', 'shared'))
    p.add_argument('--models', default=None, help='comma list of prefix[:epoch] (default: the published mnet.25)')
    p.add_argument('--images', type=int, default=200, help='training crops')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--work', default=os.path.join(ROOT, 'out', 'target_fit'), help='roidb cache folder')
    args = p.parse_args()
    data = os.path.join(os.path.abspath(args.shared), 'widerface', 'retinaface')
    if not os.path.isfile(os.path.join(data, 'train', 'label.txt')):
        sys.exit('error: %s/train/label.txt not found (this check needs the shared material: --shared)' % data)
    models = (args.models or os.path.join(args.shared, 'models', 'mnet.25')).split(',')
    cfg, crops = samples(data, args.images, args.seed, args.work)
    print('%d training crops of %s (seed %d), %d faces' % (len(crops), data, args.seed,
                                                          sum(len(c[1]) for c in crops)))
    print('predicted - target box of every face anchor, crop pixels: median (mean)')
    for spec in models:
        prefix, _, epoch = spec.partition(':')
        det = RetinaFace(prefix, int(epoch or 0), ctx_id=-1)
        for shift, name in ((0, 'our targets (x2 = x + w, the original\'s)'), (1, 'former targets (x2 = x + w - 1)')):
            diff, width, mirrored = residuals(det, cfg, crops, shift)
            print('\n%s, against %s' % (spec, name))
            print('| faces | anchors | x1 | y1 | x2 | y2 | width | height |')
            print('|---|---|---|---|---|---|---|---|')
            for label, n, med, mean in summary(diff, width):
                if med is not None:
                    print('| %s | %d | %s |' % (label, n, ' | '.join('%+.2f (%+.2f)' % (m, a) for m, a in zip(med, mean))))
            centre = (diff[:, 0] + diff[:, 2]) / 2
            small = width < 64
            print('box centre x, faces under 64 px: plain images %+.2f, mirrored images %+.2f (median; the flip '
                  'x1\' = W - x2 - 1 is exact when the two agree)'
                  % tuple(np.median(centre[small & (mirrored == m)]) for m in (False, True)))


if __name__ == '__main__':
    main()
