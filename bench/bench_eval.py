"""Time the WIDER AP computation on a full-size prediction set (all 3226 val images).

    python bench/bench_eval.py [--gt ../shared/widerface/ground_truth]

Predictions are generated from the ground truth: jittered true boxes, dropped faces and false
positives, about 150 boxes per image, then written as files and evaluated. Goal: < 3 s on one core.
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from rcnn.dataset import widerface_eval as W  # noqa: E402

DEFAULT_GT = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                          'shared', 'widerface', 'ground_truth')


def synthesise(gt, pred_dir, rng, fp_per_image=100):
    total = 0
    for (event, name), boxes in zip(gt.images, gt.boxes):
        b = boxes.astype(np.float64)
        keep = rng.rand(len(b)) > 0.15                                    # drop 15 % of the faces
        tp = b[keep] + rng.normal(0, 0.08, (int(keep.sum()), 4)) * np.maximum(b[keep, 2:3], 4)
        tp_scores = rng.uniform(0.3, 1.0, len(tp))
        n_fp = rng.poisson(fp_per_image)
        fp = np.hstack([rng.uniform(0, 900, (n_fp, 2)), rng.uniform(5, 120, (n_fp, 2))])
        rows = np.vstack([np.hstack([tp, tp_scores[:, None]]), np.hstack([fp, rng.uniform(0.02, 0.7, (n_fp, 1))])])
        os.makedirs(os.path.join(pred_dir, event), exist_ok=True)
        with open(os.path.join(pred_dir, event, name + '.txt'), 'w') as f:
            f.write('%s/%s.jpg\n%d\n' % (event, name, len(rows)))
            f.writelines('%d %d %d %d %g \n' % tuple(r) for r in rows)
        total += len(rows)
    return total


def main():
    parser = argparse.ArgumentParser(formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--gt', default=DEFAULT_GT, help='folder of the official wider_*_val.mat')
    args = parser.parse_args()
    if not os.path.isdir(args.gt):
        sys.exit('ground truth folder not found: %s' % args.gt)
    gt = W.load_mat_gt(args.gt)
    with tempfile.TemporaryDirectory() as tmp:
        n = synthesise(gt, tmp, np.random.RandomState(0))
        t0 = time.perf_counter()
        preds, _ = W.read_predictions(tmp, gt)
        t1 = time.perf_counter()
        results = W.evaluate(preds, gt)
        t2 = time.perf_counter()
    print('%d images, %d predicted boxes' % (len(gt.images), n))
    print('read files %.2f s, AP %.2f s, total %.2f s' % (t1 - t0, t2 - t1, t2 - t0))
    print('  '.join('%s %.4f' % (s, r['ap']) for s, r in results.items()))


if __name__ == '__main__':
    main()
