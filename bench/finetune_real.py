"""Fine-tuning check on real WIDER FACE data: does a model trained by ``train.py`` stay as good as the
published one?

    python bench/finetune_real.py [--shared ../shared] [--work out/finetune_real] [--with_published]

1. ``train.py`` fine-tunes the published mnet.25 on ``<shared>/widerface/retinaface/train`` (400 real images,
   4 epochs, lr 0.001, 640x640 crops, batch 8: the settings of the check);
2. ``test.py --mode 0`` evaluates the result on ``<shared>/widerface/retinaface/val`` (307 images) with the
   official .mat ground truth restricted to those images;
3. the table compares it with the published model on the same subset (its numbers below, or measured in
   this run with ``--with_published``). Goal: no setting more than 0.005 below the published model.

Both steps run as the user runs them (separate processes, the README's commands); ``<work>/result.json``
keeps the table.
"""
import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PUBLISHED = {'easy': 0.9185, 'medium': 0.9128, 'hard': 0.8537}  # mnet.25, mode 0, this subset (README)
SETTINGS = ('easy', 'medium', 'hard')


def run(cmd):
    print('$ ' + ' '.join(cmd), flush=True)
    t = time.time()
    subprocess.run([sys.executable] + cmd, cwd=ROOT, check=True)
    return time.time() - t


def evaluate(prefix, epoch, data, gt, output, threads):
    run(['test.py', '--network', 'net3', '--prefix', prefix, '--epoch', str(epoch), '--dataset_path', data,
         '--mode', '0', '--gpu', '-1', '--gt', gt, '--output', output, '--overwrite'])
    with open(os.path.join(output, 'ap.json')) as f:
        ap = json.load(f)
    return {k: ap['ap'][k] for k in SETTINGS}


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--shared', default=os.path.join(ROOT, '..', 'shared'), help='the shared material folder')
    p.add_argument('--work', default=os.path.join(ROOT, 'out', 'finetune_real'), help='checkpoints and results')
    p.add_argument('--epochs', type=int, default=4)
    p.add_argument('--lr', type=float, default=0.001)
    p.add_argument('--batch', type=int, default=8)
    p.add_argument('--image_size', type=int, default=640)
    p.add_argument('--workers', type=int, default=1)
    p.add_argument('--seed', type=int, default=0, help='train.py --seed (crops, order, jitter)')
    p.add_argument('--with_published', action='store_true', help='also evaluate the published model in this run')
    args = p.parse_args()
    shared = os.path.abspath(args.shared)
    data = os.path.join(shared, 'widerface', 'retinaface')
    gt = os.path.join(shared, 'widerface', 'ground_truth')
    published = os.path.join(shared, 'models', 'mnet.25')
    for need in (os.path.join(data, 'train', 'label.txt'), os.path.join(data, 'val', 'label.txt'),
                 os.path.join(gt, 'wider_face_val.mat'), published + '-0000.params'):
        if not os.path.exists(need):
            sys.exit('error: %s not found (this check needs the shared material: --shared)' % need)
    work = os.path.abspath(args.work)
    os.makedirs(work, exist_ok=True)
    prefix = os.path.join(work, 'mnet-ft')
    train_s = run(['train.py', '--network', 'mnet', '--pretrained', published, '--pretrained_epoch', '0',
                   '--dataset_path', data, '--root_path', work, '--prefix', prefix, '--lr', str(args.lr),
                   '--lr_step', str(args.epochs), '--end_epoch', str(args.epochs), '--batch_images', str(args.batch),
                   '--image_size', str(args.image_size), '--workers', str(args.workers), '--seed', str(args.seed),
                   '--resume'])
    ours = evaluate(prefix, args.epochs, data, gt, os.path.join(work, 'val_mode0'), 0)
    base = evaluate(published, 0, data, gt, os.path.join(work, 'val_mode0_published'), 0) \
        if args.with_published else dict(PUBLISHED)
    print('\n| model (307 real val images, mode 0, official .mat GT) | Easy | Medium | Hard |')
    print('|---|---|---|---|')
    print('| published mnet.25%s | %s |' % ('' if args.with_published else ' (README)',
                                          ' | '.join('%.4f' % base[k] for k in SETTINGS)))
    print('| fine-tuned here (%d epochs, lr %g, %d² crops, batch %d, seed %d) | %s |'
          % (args.epochs, args.lr, args.image_size, args.batch, args.seed, ' | '.join('%.4f' % ours[k] for k in SETTINGS)))
    delta = {k: ours[k] - base[k] for k in SETTINGS}
    print('| difference | %s |' % ' | '.join('%+.4f' % delta[k] for k in SETTINGS))
    ok = all(d >= -0.005 for d in delta.values())
    print('goal (no setting more than 0.005 below the published model): %s; training took %.1f min'
          % ('MET' if ok else 'NOT MET', train_s / 60))
    with open(os.path.join(work, 'result.json'), 'w') as f:
        json.dump({'published': base, 'finetuned': ours, 'difference': delta, 'goal_met': ok,
                   'train_minutes': train_s / 60, 'settings': vars(args)}, f, indent=1)
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
