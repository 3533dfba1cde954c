"""Training mnet from the ImageNet backbone on the real WIDER train images, as a report.

    python bench/train_real.py [--minutes 60] [--shared ../shared] [--work out/train_real] [--anchors net3,net5]

1. ``train.py --network mnet`` from ``<shared>/models/mobilenet_0_25`` (the recipe: lr 0.01, steps 55,68,80,
   640x640 crops; batch ``--batch``) on ``<shared>/widerface/retinaface/train`` for ``--minutes`` of wall time
   (then stopped; every complete epoch is a checkpoint, and a rerun resumes);
2. ``test.py --mode 0`` on the real val images (official .mat ground truth) for the newest checkpoint and
   ``--eval_every`` epochs before it;
3. ``<work>/ap.png``: AP against iterations, beside the face accuracy per stride against iterations, ours and
   the published run's; ``<work>/curves.png``: per-stride face (foreground) accuracy and box loss against
   samples seen, ours next to the published mnet.25 run (``<shared>/reference/mnet25_train.log``: 2 GPUs x 32 images, 402 batches per
   epoch); ``<work>/report.json`` keeps the numbers.

With several ``--anchors`` presets each is trained for ``--minutes`` in turn (same seed, batch, LR) and
``<work>/curves_<a>_vs_<b>.png`` puts their face accuracy and box loss per stride side by side against
iterations; the first preset's run keeps the published comparison.

400 images are 3% of WIDER train, and an hour on 2 CPU cores is a few thousand iterations: this shows how far
training gets and whether the curves follow the published ones, not a final AP.
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STRIDES = (32, 16, 8)
PUBLISHED_BATCH, PUBLISHED_BATCHES_PER_EPOCH = 64, 402  # 2 GPUs x 32 images; 25,752 samples (with flips) / 64
LINE = re.compile(r'Epoch\[(\d+)\] Batch \[(?:\d+-)?(\d+)\]\tSpeed: ([0-9.]+) samples/sec\t(.*)')


def parse_log(path, batch, batches_per_epoch):
    """Speedometer lines -> list of {samples, speed, metric: value} (running values since the epoch began)."""
    rows = []
    with open(path, errors='replace') as f:
        for line in f:
            m = LINE.search(line)
            if not m:
                continue
            epoch, nbatch, speed, rest = int(m.group(1)), int(m.group(2)), float(m.group(3)), m.group(4)
            values = {}
            for kv in rest.split('\t'):
                if '=' in kv:
                    k, v = kv.split('=', 1)
                    values[k.strip()] = float(v)
            rows.append(dict(values, samples=(epoch * batches_per_epoch + nbatch) * batch, speed=speed,
                             iteration=epoch * batches_per_epoch + nbatch))
    return rows


def plot_presets(runs, path, title):
    """runs: [(preset, strides, rows)] -> face accuracy and box loss per stride against iterations, one line
    style per preset."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(14, 5))
    styles = ['-', '--', ':', '-.']
    colours = {4: 'tab:purple', 8: 'tab:green', 16: 'tab:orange', 32: 'tab:blue', 64: 'tab:red', 128: 'tab:brown'}
    for k, (preset, strides, rows) in enumerate(runs):
        for s in sorted(strides):
            colour = colours[s]
            for ax, key in zip(axes, ('RPNAcc_s%d_FG', 'RPNL1Loss_s%d')):
                pts = [(r['iteration'], r[key % s]) for r in rows if key % s in r and r['iteration'] > 0]
                if pts:
                    ax.plot(*zip(*pts), styles[k % len(styles)], color=colour, lw=1.1,
                            label='%s stride %d' % (preset, s))
    for ax, label in zip(axes, ('face (foreground) accuracy of the OHEM-kept anchors', 'box smooth-L1 loss per '
                                                                                     'positive anchor')):
        ax.set_xscale('log')
        ax.set_xlabel('iterations')
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, ncol=2)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot(ours, published, path, title, batch):
    """Top row against samples seen, bottom row against iterations (ours: `batch` per step, published: 64)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, 3, figsize=(17, 9))
    colours = {32: 'tab:blue', 16: 'tab:orange', 8: 'tab:green'}
    panels = (('RPNAcc_s%d_FG', 'face (foreground) accuracy of the OHEM-kept anchors'),
              ('RPNAcc_s%d_BG', 'background accuracy'),
              ('RPNL1Loss_s%d', 'box smooth-L1 loss per positive anchor'))
    for row, (unit, per) in enumerate((('samples seen', (1, 1)), ('iterations', (batch, PUBLISHED_BATCH)))):
        for ax, (key, label) in zip(axes[row], panels):
            for s in STRIDES:
                name = key % s
                for rows, style, who, div in ((published, '--', 'published', per[1]), (ours, '-', 'ours', per[0])):
                    pts = [(r['samples'] / div, r[name]) for r in rows if name in r and r['samples'] > 0]
                    if pts:
                        ax.plot(*zip(*pts), style, color=colours[s], lw=1.2 if who == 'ours' else 0.8,
                                label='%s stride %d' % (who, s))
            ax.set_xscale('log')
            ax.set_xlabel(unit)
            ax.set_title(label, fontsize=10)
            ax.grid(alpha=0.3)
        axes[row][0].legend(fontsize=7, ncol=2)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_ap(ap, iters_per_epoch, ours, published, path, title):
    """Left: WIDER AP (mode 0, real val images) of our checkpoints against iterations; right: the face
    accuracy of the OHEM-kept anchors per stride, ours next to the published run's, against iterations."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, (left, right) = plt.subplots(1, 2, figsize=(15, 5))
    epochs = sorted(ap)
    for key, colour in (('easy', 'tab:green'), ('medium', 'tab:orange'), ('hard', 'tab:red')):
        left.plot([e * iters_per_epoch for e in epochs], [ap[e][key] for e in epochs], 'o-', color=colour,
                  label=key.capitalize())
    left.set_xlabel('iterations')
    left.set_ylabel('AP (official protocol, mode 0)')
    left.set_ylim(0, 1)
    left.grid(alpha=0.3)
    left.legend(fontsize=8)
    left.set_title('ours: WIDER AP on the 307 real val images', fontsize=10)
    colours = {32: 'tab:blue', 16: 'tab:orange', 8: 'tab:green'}
    for s in STRIDES:
        name = 'RPNAcc_s%d_FG' % s
        for rows, style, who, batch in ((published, '--', 'published', PUBLISHED_BATCH), (ours, '-', 'ours', None)):
            pts = [(r['iteration'], r[name]) for r in rows if name in r and r['iteration'] > 0]
            if pts:
                right.plot(*zip(*pts), style, color=colours[s], lw=1.2 if who == 'ours' else 0.8,
                           label='%s stride %d' % (who, s))
    right.set_xscale('log')
    right.set_xlabel('iterations')
    right.set_title('face (foreground) accuracy of the OHEM-kept anchors', fontsize=10)
    right.grid(alpha=0.3)
    right.legend(fontsize=7, ncol=2)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def train(args, data, backbone, prefix, anchors):
    cmd = [sys.executable, os.path.join(ROOT, 'train.py'), '--network', 'mnet', '--anchors', anchors, '--pretrained',
           backbone,
           '--pretrained_epoch', '0', '--dataset_path', data, '--root_path', args.work, '--prefix', prefix,
           '--lr', str(args.lr), '--lr_step', '55,68,80', '--end_epoch', '80', '--batch_images', str(args.batch),
           '--image_size', str(args.image_size), '--workers', str(args.workers), '--frequent', '20', '--seed', '0',
           '--resume']
    print('$ ' + ' '.join(cmd), flush=True)
    proc = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True)
    try:
        proc.wait(timeout=args.minutes * 60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)  # train.py and its data workers; finished epochs are on disk
        proc.wait()
        print('stopped after %.0f minutes (--minutes)' % args.minutes, flush=True)


def evaluate(prefix, epoch, data, gt, output, anchors='net3'):
    """AP of one checkpoint (reused when a finished evaluation of that checkpoint is in `output`)."""
    done = os.path.join(output, 'ap.json')
    if os.path.isfile(done) and os.path.getmtime(done) > os.path.getmtime('%s-%04d.params' % (prefix, epoch)):
        with open(done) as f:
            ap = json.load(f)
        if ap.get('run', {}).get('epoch') == epoch and ap['run'].get('mode') == 0:
            return ap['ap']
    subprocess.run([sys.executable, os.path.join(ROOT, 'test.py'), '--network', anchors, '--prefix', prefix, '--epoch',
                    str(epoch), '--dataset_path', data, '--mode', '0', '--gpu', '-1', '--gt', gt, '--output', output,
                    '--overwrite'], cwd=ROOT, check=True)
    with open(os.path.join(output, 'ap.json')) as f:
        return json.load(f)['ap']


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--shared', default=os.path.join(ROOT, '..', 'shared'))
    p.add_argument('--work', default=os.path.join(ROOT, 'out', 'train_real'))
    p.add_argument('--minutes', type=float, default=60, help='wall time of training')
    p.add_argument('--batch', type=int, default=8)
    p.add_argument('--image_size', type=int, default=640)
    p.add_argument('--lr', type=float, default=0.01)
    p.add_argument('--workers', type=int, default=1)
    p.add_argument('--eval_every', type=int, default=0, help='also evaluate every N-th epoch (0: newest only)')
    p.add_argument('--anchors', default='net3', help='comma-separated train.py --anchors presets, trained in turn')
    args = p.parse_args()
    shared = os.path.abspath(args.shared)
    data = os.path.join(shared, 'widerface', 'retinaface')
    gt = os.path.join(shared, 'widerface', 'ground_truth')
    backbone = os.path.join(shared, 'models', 'mobilenet_0_25')
    ref_log = os.path.join(shared, 'reference', 'mnet25_train.log')
    for need in (os.path.join(data, 'train', 'label.txt'), gt, backbone + '-0000.params', ref_log):
        if not os.path.exists(need):
            sys.exit('error: %s not found (this report needs the shared material: --shared)' % need)
    args.work = os.path.abspath(args.work)
    os.makedirs(args.work, exist_ok=True)
    sys.path.insert(0, ROOT)
    from rcnn.presets import anchor_config
    presets = [a.strip() for a in args.anchors.split(',') if a.strip()]
    runs, reports = [], {}
    for k, anchors in enumerate(presets):
        prefix = os.path.join(args.work, 'mnet-imagenet' + ('' if anchors == 'net3' else '-' + anchors))
        report = run_one(args, data, gt, backbone, ref_log, prefix, anchors, published=(k == 0))
        reports[anchors] = report
        runs.append((anchors, anchor_config(anchors)['strides'], report.pop('rows')))
    if len(runs) > 1:
        path = os.path.join(args.work, 'curves_%s.png' % '_vs_'.join(presets))
        plot_presets(runs, path, 'mnet from ImageNet MobileNet0.25 on 400 real WIDER train images: %s, %g minutes '
                                 'each, batch %d' % (' vs '.join(presets), args.minutes, args.batch))
        print('comparison: %s' % path)
    with open(os.path.join(args.work, 'report.json'), 'w') as f:
        json.dump(reports, f, indent=1)


def run_one(args, data, gt, backbone, ref_log, prefix, anchors, published):
    """Train (for --minutes), evaluate and plot one preset; returns its report (with the log rows)."""
    from rcnn.core.checkpoint import list_epochs
    from rcnn.presets import anchor_config
    strides = anchor_config(anchors)['strides']
    start = time.time()
    if args.minutes > 0:
        train(args, data, backbone, prefix, anchors)
    epochs = list_epochs(prefix)
    if not epochs:
        sys.exit('error: no checkpoint was written in %.0f minutes; give --minutes more time' % args.minutes)
    with open(prefix + '-train.log') as f:
        per_epoch = [int(m.group(1)) for m in re.finditer(r'(\d+) batches per epoch', f.read())]
    ours = parse_log(prefix + '-train.log', args.batch, per_epoch[-1])
    to_eval = sorted({epochs[-1]} | ({e for e in epochs if e % args.eval_every == 0} if args.eval_every else set()))
    ap = {e: evaluate(prefix, e, data, gt, os.path.join(os.path.dirname(prefix), 'val_mode0_%s_epoch%d'
                                                         % (anchors, e)), anchors) for e in to_eval}
    seen = ours[-1]['samples'] if ours else 0
    pub = parse_log(ref_log, PUBLISHED_BATCH, PUBLISHED_BATCHES_PER_EPOCH)
    if published:
        title = ('mnet (%s) from ImageNet MobileNet0.25 on 400 real WIDER train images (%d samples seen, %d epochs) '
                 'vs the published run (12,876 images)' % (anchors, seen, epochs[-1]))
        plot(ours, pub, os.path.join(args.work, 'curves.png'), title, args.batch)
        plot_ap(ap, per_epoch[-1], ours, pub, os.path.join(args.work, 'ap.png'),
                'mnet (%s) from the ImageNet MobileNet0.25 backbone, 640 px crops, batch %d, on the 400 real '
                'WIDER train images of shared/' % (anchors, args.batch))
    print('\n%s\n| epoch | samples seen | Easy | Medium | Hard |' % anchors)
    print('|---|---|---|---|---|')
    for e in to_eval:
        print('| %d | %d | %s |' % (e, e * per_epoch[-1] * args.batch,
                                    ' | '.join('%.4f' % ap[e][k] for k in ('easy', 'medium', 'hard'))))
    last = ours[-1] if ours else {}
    print('last logged: %s' % ', '.join('%s=%.3f' % ('RPNAcc_s%d_FG' % s, last.get('RPNAcc_s%d_FG' % s, float('nan')))
                                         for s in strides))
    pub_at = [r for r in pub if r['samples'] <= seen]
    if published and pub_at:
        print('published run at the same samples seen: %s'
              % ', '.join('%s=%.3f' % ('RPNAcc_s%d_FG' % s, pub_at[-1]['RPNAcc_s%d_FG' % s]) for s in STRIDES))
    return {'epochs': epochs, 'samples_seen': seen, 'ap': ap, 'last_logged': last, 'rows': ours,
            'published_at_same_samples': pub_at[-1] if published and pub_at else None, 'settings': vars(args),
            'wall_minutes': (time.time() - start) / 60}


if __name__ == '__main__':
    main()
