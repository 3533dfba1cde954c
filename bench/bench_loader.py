"""The training data pipeline side by side: this tree's CropLoader against a baseline commit's, one process tree.

    python bench/bench_loader.py [--baseline 581e053] [--rounds 3] [--batches 12] [--workers 0,1,2]

The baseline commit is exported next to this checkout (``git archive``, into a temporary folder) and its
Cython kernels are built, so both loaders run their own code with the same Python, MXNet and OpenCV. Each
round runs every (tree, workers) case in a fresh process, in turn, on the same real WIDER train images
(../shared; a generated set without it): mnet crops of --size, batch --batch, ``CropLoader`` iterated with
nothing else running, as ``train.py`` iterates it (the NDArrays it hands to the Module). Reported: the
median samples/s over the rounds and the ratios the issue asks for (one new worker against the baseline's
in-process loader, two new workers against one).

It also checks that the same seed gives the same samples: the first batches of both trees, in process,
compared array by array (training targets must be equal; pixels may differ by one grey level where the
crop is resampled from the source instead of from the resized image).
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_TRAIN = os.path.join(ROOT, '..', 'shared', 'widerface', 'retinaface')

CHILD = r'''
import json, os, sys, time, tempfile
root, data_path, size, batch, workers, batches, dump = sys.argv[1:8]
sys.path.insert(0, root)
os.chdir(root)
import numpy as np
from rcnn.config import get_config
from rcnn.core.loader import CropLoader
from rcnn.dataset.retinaface import RetinaFaceDataset, flip_roidb
with tempfile.TemporaryDirectory() as cache:
    roidb = RetinaFaceDataset('train', cache, data_path).gt_roidb()
roidb = roidb + flip_roidb(roidb)
cfg = get_config('mnet', IMAGE_SIZE=int(size), TRAIN__BATCH_IMAGES=int(batch))
loader = CropLoader(roidb, cfg, int(batch), shuffle=True, workers=int(workers), seed=0)
if dump != '-':
    out = {}
    for k in range(2):
        b = loader.next()
        out['data%d' % k] = b.data[0].asnumpy()
        for name, arr in zip(loader.label_name, b.label):
            out['%s_%d' % (name, k)] = arr.asnumpy()
    np.savez(dump, **out)
else:
    for _ in range(6):  # warm-up: workers started, every batch slot (2 per worker + 2) written once
        loader.next()
    t = time.perf_counter()
    for _ in range(int(batches)):
        b = loader.next()
        b.data[0].wait_to_read()
    print(json.dumps({'rate': int(batches) * int(batch) / (time.perf_counter() - t)}))
loader.close()
'''


def parse_args():
    p = argparse.ArgumentParser(formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--baseline', default='581e053', help='commit whose loader is the baseline')
    p.add_argument('--size', type=int, default=640)
    p.add_argument('--batch', type=int, default=8)
    p.add_argument('--batches', type=int, default=20, help='batches timed per case (after 6 warm-up batches)')
    p.add_argument('--rounds', type=int, default=3)
    p.add_argument('--workers', default='0,1,2')
    p.add_argument('--baseline_workers', default='0,1')
    return p.parse_args()


def export_baseline(commit, dest):
    archive = subprocess.run(['git', 'archive', commit], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(['tar', '-x', '-C', dest], input=archive, check=True)
    subprocess.run([sys.executable, 'setup.py', '-q', 'build_ext', '--inplace'], cwd=dest, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env=dict(os.environ, RETINAFACE_NO_CUDA='1'))


def child(tree, data_path, args, workers, dump='-'):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    out = subprocess.run([sys.executable, '-c', CHILD, tree, data_path, str(args.size), str(args.batch),
                          str(workers), str(args.batches), dump], capture_output=True, text=True, env=env)
    if out.returncode:
        raise RuntimeError('%s loader failed:\n%s' % (tree, out.stderr[-3000:]))
    return json.loads(out.stdout.strip().splitlines()[-1]) if dump == '-' else None


def compare(a_path, b_path):
    import numpy as np
    a, b = np.load(a_path), np.load(b_path)
    assert sorted(a.files) == sorted(b.files), (a.files, b.files)
    pixels, targets = 0.0, []
    for name in a.files:
        if name.startswith('data'):
            pixels = max(pixels, float(np.abs(a[name] - b[name]).max()))
        elif not np.array_equal(a[name], b[name]):
            targets.append(name)
    return pixels, targets


def main():
    args = parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if os.path.isfile(os.path.join(SHARED_TRAIN, 'train', 'label.txt')):
            data_path, source = os.path.abspath(SHARED_TRAIN), 'real WIDER train images (../shared)'
        else:
            sys.path.insert(0, ROOT)
            from rcnn.dataset.synthetic import generate
            data_path, source = os.path.join(tmp, 'retinaface'), 'generated images (no ../shared)'
            generate(data_path, train=96, val=1, seed=0)
        base = os.path.join(tmp, 'baseline')
        os.makedirs(base)
        export_baseline(args.baseline, base)
        cases = [('baseline', base, int(w)) for w in args.baseline_workers.split(',') if w.strip()] + \
            [('new', ROOT, int(w)) for w in args.workers.split(',') if w.strip()]
        rates = {(name, w): [] for name, _, w in cases}
        for _ in range(args.rounds):
            for name, tree, w in cases:
                rates[(name, w)].append(child(tree, data_path, args, w)['rate'])
        print('mnet %dx%d crops, batch %d, %d batches x %d rounds, OMP_NUM_THREADS=1; data: %s; baseline %s'
              % (args.size, args.size, args.batch, args.batches, args.rounds, source, args.baseline))
        print('\n| loader | workers | samples/s (median) | rounds |\n|---|---|---|---|')
        med = {}
        for (name, w), values in rates.items():
            med[(name, w)] = statistics.median(values)
            print('| %s | %d | %.1f | %s |' % (name, w, med[(name, w)], ' '.join('%.1f' % v for v in values)))
        print()
        if ('new', 1) in med and ('baseline', 0) in med:
            print('one new worker / baseline in process: %.2fx (goal >= 3)' % (med[('new', 1)] / med[('baseline', 0)]))
        if ('new', 2) in med and ('new', 1) in med:
            print('two new workers / one: %.2fx (goal >= 1.7)' % (med[('new', 2)] / med[('new', 1)]))
        if ('new', 0) in med and ('baseline', 0) in med:
            print('in process, new / baseline: %.2fx' % (med[('new', 0)] / med[('baseline', 0)]))
        a, b = os.path.join(tmp, 'base.npz'), os.path.join(tmp, 'new.npz')
        child(base, data_path, args, 0, a)
        child(ROOT, data_path, args, 0, b)
        pixels, targets = compare(a, b)
        print('same seed, first 2 batches: training targets %s; largest pixel difference %g grey level(s)'
              % ('equal' if not targets else 'DIFFER in %s' % ', '.join(targets), pixels))
        shutil.rmtree(base, ignore_errors=True)


if __name__ == '__main__':
    main()
