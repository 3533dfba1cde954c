"""The overfit check of the training recipe: from the ImageNet MobileNet0.25 backbone, a few real WIDER train
images, until the model finds the faces it was trained on.

    python bench/overfit.py [--images 16] [--epochs 300] [--anchors net3,net5] [--work out/overfit]

``train.py --network mnet --pretrained <shared>/models/mobilenet_0_25`` (LAYER_FIX as the recipe: the stem
frozen) on the first ``--images`` real train images with 1 to 8 faces each, ``--image_size`` crops, batch
``--batch``, lr 0.01 (x0.1 at ``--lr_step``), trained ``--every`` epochs at a time (``--resume``: a rerun goes
on from the newest checkpoint); after each chunk ``rcnn.tools.overfit.training_recall`` detects on those same
images (threshold 0.3, scales 0.31, 0.625 and 1.0, each on its own) and counts the faces found at IoU 0.5.
``<work>/report.json`` keeps recall against iterations per preset (overall and by face side) and the first
iteration that found ``--target`` of the faces of 32 px and more at scale 1.0; ``<work>/recall.png`` plots it.
"""
import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from rcnn.fileio import atomic_open  # noqa: E402
from rcnn.tools.overfit import training_recall, write_subset  # noqa: E402

SCALES = (0.31, 0.625, 1.0)


def large_recall(by_size):
    """Recall of the faces of 32 px and more (at 320 px crops, smaller ones take far longer to learn)."""
    found, faces = (sum(v[i] for k, v in by_size.items() if float(k.split('-')[0]) >= 32) for i in (0, 1))
    return found / max(faces, 1)


def plot(report, path, title):
    """Recall at scale 1.0 against iterations: all faces and those of 32 px and more, one colour per preset."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for (preset, runs), colour in zip(report.items(), ('tab:blue', 'tab:red', 'tab:green')):
        rows = sorted(runs['rows'], key=lambda r: r['iteration'])
        its = [r['iteration'] for r in rows]
        ax.plot(its, [r['recall']['1.0'] for r in rows], '-', color=colour, label='%s: all faces' % preset)
        ax.plot(its, [r['recall_32px_up_at_1.0'] for r in rows], '--', color=colour,
                label='%s: faces of 32 px and more' % preset)
    ax.set_xlabel('iterations (batch 8)')
    ax.set_ylabel('training faces found (IoU 0.5, threshold 0.3)')
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--shared', default=os.path.join(os.path.dirname(ROOT), 'shared'))
    p.add_argument('--work', default=os.path.join(ROOT, 'out', 'overfit'))
    p.add_argument('--images', type=int, default=16)
    p.add_argument('--min_size', type=float, default=0, help='only images whose faces are all this large (px)')
    p.add_argument('--max_faces', type=int, default=8)
    p.add_argument('--epochs', type=int, default=300)
    p.add_argument('--every', type=int, default=25, help='epochs between two recall measurements')
    p.add_argument('--lr_step', default='280,300')
    p.add_argument('--image_size', type=int, default=320)
    p.add_argument('--batch', type=int, default=8)
    p.add_argument('--anchors', default='net3', help='comma-separated presets, trained in turn')
    p.add_argument('--target', type=float, default=0.9,
                   help='recall at scale 1.0 of the faces of 32 px and more that counts as found')
    args = p.parse_args()
    data = os.path.join(args.work, 'data')
    if not os.path.isfile(os.path.join(data, 'train', 'label.txt')):
        faces = write_subset(os.path.join(args.shared, 'widerface', 'retinaface', 'train'),
                             os.path.join(data, 'train'), args.images, max_faces=args.max_faces,
                             min_size=args.min_size)
        print('wrote %d images, %d faces to %s' % (args.images, faces, data), flush=True)
    report_path = os.path.join(args.work, 'report.json')
    report = json.load(open(report_path)) if os.path.isfile(report_path) else {}
    from retinaface import RetinaFace
    for preset in args.anchors.split(','):
        prefix = os.path.join(args.work, preset, 'mnet')
        rows = report.setdefault(preset, {'rows': []})['rows']
        done = {r['epoch'] for r in rows}
        for epoch in range(args.every, args.epochs + 1, args.every):
            if epoch in done:
                continue
            cmd = [sys.executable, os.path.join(ROOT, 'train.py'), '--network', 'mnet', '--anchors', preset,
                   '--dataset_path', data, '--root_path', args.work, '--prefix', prefix,
                   '--pretrained', os.path.join(args.shared, 'models', 'mobilenet_0_25'),
                   '--image_size', str(args.image_size), '--batch_images', str(args.batch), '--lr', '0.01',
                   '--lr_step', args.lr_step, '--end_epoch', str(epoch), '--frequent', '100', '--workers', '1',
                   '--seed', '0', '--resume']
            res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
            if res.returncode:
                sys.exit('train.py failed:\n' + (res.stdout + res.stderr)[-3000:])
            iters = next(int(line.split(' batches per epoch')[0].rsplit(' ', 1)[1]) for line in
                         res.stdout.splitlines() if ' batches per epoch' in line)
            det = RetinaFace(prefix, epoch, ctx_id=-1, network=preset)
            rec = training_recall(det, os.path.join(data, 'train'), SCALES)
            det.release()
            row = {'epoch': epoch, 'iteration': epoch * iters,
                   'recall': {str(s): rec[s]['recall'] for s in SCALES},
                   'found': {str(s): '%d/%d' % (rec[s]['found'], rec[s]['faces']) for s in SCALES},
                   'median_best_iou': {str(s): rec[s]['median_best_iou'] for s in SCALES},
                   'by_size_at_1.0': rec[1.0]['by_size'],
                   'recall_32px_up_at_1.0': large_recall(rec[1.0]['by_size'])}
            rows.append(row)
            print('%s epoch %d (iteration %d): found %s; at 1.0 by face side %s'
                  % (preset, epoch, row['iteration'], ', '.join('%s at %s' % (row['found'][str(s)], s) for s in SCALES),
                     ', '.join('%s px %d/%d' % (k, *v) for k, v in rec[1.0]['by_size'].items())), flush=True)
            first = next((r['iteration'] for r in rows if r['recall_32px_up_at_1.0'] >= args.target), None)
            report[preset]['first_iteration_at_target'] = first
            report[preset]['target'] = args.target
            with atomic_open(report_path, what='report') as f:
                json.dump(report, f, indent=1)
    plot(report, os.path.join(args.work, 'recall.png'), 'mnet from the ImageNet MobileNet0.25 backbone, %d real WIDER '
         'train images: its own faces found at scale 1.0' % args.images)
    print(json.dumps({k: {'first_iteration_at_target': v.get('first_iteration_at_target'),
                          'last': v['rows'][-1] if v['rows'] else None} for k, v in report.items()}, indent=1))


if __name__ == '__main__':
    main()
