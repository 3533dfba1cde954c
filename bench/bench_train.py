"""Training throughput: where a step's time goes, and the end-to-end rate of ``train.py``.

    python bench/bench_train.py [--size 640] [--batch 8] [--threads 1] [--batches 12] [--e2e_batches 60] [--defaults]

Data: the real WIDER train images of ../shared when present, else a generated set (rcnn.dataset.synthetic).
1. Breakdown (one process, ``--threads`` compute threads, mnet, OHEM and metrics on): per batch, the time
   of each data stage as a data worker runs it (decode, window resize, one-pass tensor, anchor targets
   into the batch arrays) and of each training stage
   (forward + backward with the OHEM op, the OHEM op's own numpy work, metric update, optimizer update).
2. End to end: ``train.py --network mnet`` as a user runs it (``--workers`` data processes, Speedometer),
   ``OMP_NUM_THREADS=--threads``; the samples/s of its last Speedometer line.
3. The other networks and the data pipeline alone (images/s), as before.
4. ``--defaults``: the ways ``train.py`` can use the machine's cores side by side, end to end (compute
   threads 1 or 2, 0 to 2 data workers, MXNet's threaded engine or the calling-thread engine that train.py
   now picks for one CPU context, the defaults, ``--cpus 2`` with 1 thread per context), interleaved over
   ``--rounds``; the side-by-side pipeline against the former commit is bench_loader.py.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_TRAIN = os.path.join(ROOT, '..', 'shared', 'widerface', 'retinaface')


def parse_args():
    p = argparse.ArgumentParser(formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--size', type=int, default=640, help='training crop side for mnet')
    p.add_argument('--resnet_size', type=int, default=256, help='training crop side for resnet')
    p.add_argument('--batch', type=int, default=8)
    p.add_argument('--threads', type=int, default=1, help='compute threads (OMP_NUM_THREADS)')
    p.add_argument('--batches', type=int, default=12, help='batches timed in the breakdown')
    p.add_argument('--e2e_batches', type=int, default=60, help='batches of the end-to-end train.py run (0: skip)')
    p.add_argument('--workers', default='0,1,2', help='data pipeline rates for these worker counts')
    p.add_argument('--e2e_workers', type=int, default=1, help='train.py --workers in the end-to-end run')
    p.add_argument('--others', action='store_true', help='also the resnet step and the data pipeline rates')
    p.add_argument('--defaults', action='store_true',
                   help='compare the ways train.py can use the cores (threads, workers, --cpus 2), end to end')
    p.add_argument('--rounds', type=int, default=2, help='--defaults: interleaved rounds')
    p.add_argument('--profile', action='store_true',
                   help='also the per-operator time of the training step (MXNet profiler, bulk execution off)')
    return p.parse_args()


ARGS = parse_args()
os.environ['OMP_NUM_THREADS'] = str(ARGS.threads)  # before mxnet is imported
if ARGS.profile:
    os.environ['MXNET_EXEC_BULK_EXEC_TRAIN'] = '0'  # one profiler row per operator, not per bulk segment
from rcnn.compat import mx  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, ROOT)
from rcnn.config import get_config  # noqa: E402
from rcnn.symbol import ohem  # noqa: E402
from rcnn.core.loader import CropLoader  # noqa: E402
from rcnn.core.metric import get_metrics  # noqa: E402
from rcnn.dataset.retinaface import RetinaFaceDataset, flip_roidb  # noqa: E402
from rcnn.dataset.synthetic import generate  # noqa: E402
from rcnn.io import image as image_io  # noqa: E402
from rcnn.io.rpn import AnchorAssigner  # noqa: E402
from rcnn.symbol import get_symbol  # noqa: E402
from rcnn.symbol.common import label_names  # noqa: E402


class Clock:
    def __init__(self):
        self.total = {}

    def add(self, name, seconds):
        self.total[name] = self.total.get(name, 0.0) + seconds


def data_breakdown(roidb, cfg, n, clock):
    """Per-sample stages of the crop pipeline as a data worker runs them, on n samples (one process, cv2
    single-threaded as in the workers), written into one batch's arrays."""
    import cv2
    cv2.setNumThreads(1)
    rng = np.random.RandomState(0)
    assigner = AnchorAssigner(cfg.RPN_ANCHOR_CFG, cfg.RPN_FEAT_STRIDE, cfg.IMAGE_SIZE,
                              cfg.TRAIN.RPN_POSITIVE_OVERLAP, cfg.TRAIN.RPN_NEGATIVE_OVERLAP)
    labels = assigner.empty_labels(ARGS.batch)
    data = np.zeros((ARGS.batch, 3, cfg.IMAGE_SIZE, cfg.IMAGE_SIZE), np.float32)
    for i in range(n):
        rec = roidb[i % len(roidb)]
        b = i % ARGS.batch
        t0 = time.perf_counter()
        img = image_io.load_image(rec)
        t1 = time.perf_counter()
        window = image_io.crop_window(img.shape, rec['boxes'], rec['landmarks'], cfg.IMAGE_SIZE, cfg.CROP_SCALES,
                                      cfg.CROP_TRIES, rng)
        crop = image_io.resize_crop(img, window, cfg.IMAGE_SIZE)
        t2 = time.perf_counter()
        image_io.crop_to_tensor(crop, cfg, rng, out=data[b])
        t3 = time.perf_counter()
        assigner.assign_into(labels, b, window.boxes, window.landmarks)
        t4 = time.perf_counter()
        for name, dt in (('data: decode', t1 - t0), ('data: crop (window resize)', t2 - t1),
                         ('data: jitter + tensor (one pass)', t3 - t2), ('data: anchor targets', t4 - t3)):
            clock.add(name, dt)


def step_breakdown(roidb, cfg, batch, n, clock):
    loader = CropLoader(roidb, cfg, batch, workers=0, seed=0)
    batches = [loader.next() for _ in range(3)]
    loader.close()
    sym = get_symbol('mnet', 'train', cfg)
    mod = mx.mod.Module(sym, data_names=['data'], label_names=label_names(cfg.RPN_FEAT_STRIDE), context=mx.cpu())
    mod.bind(loader.provide_data, loader.provide_label)
    mod.init_params(mx.init.Xavier())
    mod.init_optimizer(kvstore='local', optimizer='sgd',
                       optimizer_params={'learning_rate': 0.001, 'momentum': 0.9, 'wd': 5e-4})
    metric = get_metrics(sym.list_outputs(), cfg.RPN_FEAT_STRIDE, cfg.FACE_LANDMARK)
    for b in batches:  # warm-up
        mod.forward_backward(b)
        mod.update()
        mod.update_metric(metric, b.label)
    mx.nd.waitall()
    ohem_s = [0.0]
    orig = ohem.ohem_labels

    def timed(*a, **k):
        t = time.perf_counter()
        out = orig(*a, **k)
        ohem_s[0] += time.perf_counter() - t
        return out
    ohem.ohem_labels = timed
    if ARGS.profile:
        mx.profiler.set_config(profile_all=True, aggregate_stats=True,
                               filename=os.path.join(tempfile.gettempdir(), 'bench_train_profile.json'))
        mx.profiler.set_state('run')
    try:
        for i in range(n):
            b = batches[i % len(batches)]
            t0 = time.perf_counter()
            mod.forward_backward(b)
            mx.nd.waitall()
            t1 = time.perf_counter()
            mod.update_metric(metric, b.label)
            t2 = time.perf_counter()
            mod.update()
            mx.nd.waitall()
            t3 = time.perf_counter()
            clock.add('train: forward + backward (incl. OHEM op)', t1 - t0)
            clock.add('train: metric update', t2 - t1)
            clock.add('train: optimizer update', t3 - t2)
    finally:
        ohem.ohem_labels = orig
    clock.add('  of which OHEM numpy work', ohem_s[0])
    if ARGS.profile:
        mx.profiler.set_state('stop')
        print_operator_table(mx.profiler.dumps(reset=True), n)


def print_operator_table(dump, batches, top=20):
    """The profiler's operator section as ms per batch, largest first."""
    rows, section, previous = [], None, ''
    for line in dump.splitlines():
        if line.startswith('==='):  # a section title is underlined with '='
            section = previous.strip()
        previous = line
        parts = line.split()
        if section == 'operator' and len(parts) == 6 and parts[1].isdigit():
            rows.append((float(parts[2]), parts[0], int(parts[1])))
    total = sum(r[0] for r in rows)
    print('\n| operator (training step, per batch) | calls | ms | share |\n|---|---|---|---|')
    for ms, name, calls in sorted(rows, reverse=True)[:top]:
        print('| %s | %d | %.1f | %.0f%% |' % (name, calls // batches, ms / batches, 100 * ms / total))
    print('| all operators | | %.1f | |' % (total / batches))


def e2e_rate(data_path, batches, batch, size, workers, threads, extra=(), env_extra=None):
    """samples/s of train.py's last Speedometer line (fresh prefix in a temporary folder); threads None:
    train.py's default (every core, shared among the contexts)."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items()
               if k not in ('OMP_NUM_THREADS', 'MXNET_ENGINE_TYPE', 'MXNET_CPU_WORKER_NTHREADS')}
        env.update(env_extra or {})
        if threads:
            env['OMP_NUM_THREADS'] = str(threads)
        cmd = [sys.executable, os.path.join(ROOT, 'train.py'), '--network', 'mnet', '--dataset_path', data_path,
               '--root_path', tmp, '--prefix', os.path.join(tmp, 'm'), '--pretrained', 'none', '--image_size',
               str(size), '--batch_images', str(batch), '--lr', '0.001', '--lr_step', '1', '--end_epoch', '1',
               '--max_batches', str(batches), '--frequent', str(max(1, batches // 3))] + \
            (['--workers', str(workers)] if workers is not None else []) + list(extra)
        out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
        speeds = re.findall(r'Speed: ([0-9.]+) samples/sec', out.stdout + out.stderr)
        if out.returncode or not speeds:
            raise RuntimeError('train.py failed:\n' + (out.stdout + out.stderr)[-3000:])
        return float(speeds[-1])


# (label, compute threads (None: train.py's default), --workers (None: train.py's default), contexts, flags, env)
THREADED = {'MXNET_ENGINE_TYPE': 'ThreadedEnginePerDevice'}  # MXNet's own default engine
DEFAULT_CASES = [
    ('1 compute thread, --workers 1, threaded engine', 1, 1, 1, (), THREADED),
    # MXNet's x86 build computes on half the logical CPUs when OMP_NUM_THREADS is unset: 1 of 2 cores here
    ("the former defaults (MXNet's threads: half the cores, --workers min(4, cores), threaded engine)",
     max(1, (os.cpu_count() or 2) // 2), min(4, os.cpu_count() or 1), 1, (), THREADED),
    ('2 compute threads, --workers 1, threaded engine', 2, 1, 1, (), THREADED),
    ('2 compute threads, --workers 0, calling-thread engine', 2, 0, 1, (), {}),
    ('2 compute threads, --workers 2, calling-thread engine', 2, 2, 1, (), {}),
    ('train.py defaults (every core, calling-thread engine, --workers 1)', None, None, 1, (), {}),
    ('--cpus 2, MXNET_CPU_WORKER_NTHREADS=1 (one engine worker for both contexts)', None, None, 2, ('--cpus', '2'),
     {'MXNET_CPU_WORKER_NTHREADS': '1'}),
    ('--cpus 2, defaults (1 thread and 1 engine worker per context, --workers 1)', None, None, 2, ('--cpus', '2'), {}),
]


def defaults_table(data_path, args):
    """The end-to-end rate of each way to use the cores, interleaved over rounds (ratios within one run)."""
    rates = {case[0]: [] for case in DEFAULT_CASES}
    for _ in range(args.rounds):
        for label, threads, workers, contexts, flags, env in DEFAULT_CASES:
            rates[label].append(e2e_rate(data_path, args.e2e_batches, args.batch // contexts, args.size, workers,
                                         threads, flags, env))
    base = max(rates[DEFAULT_CASES[0][0]])
    print('\n| train.py, mnet %dx%d, global batch %d, %d batches | samples/s (best of %d) | vs 1 thread |'
          % (args.size, args.size, args.batch, args.e2e_batches, args.rounds))
    print('|---|---|---|')
    for label, values in rates.items():
        print('| %s | %.2f | %.2fx |' % (label, max(values), max(values) / base))


def other_rates(roidb, args):
    for network, size in (('resnet', args.resnet_size),):
        cfg = get_config(network, IMAGE_SIZE=size, TRAIN__BATCH_IMAGES=args.batch, DCN_PORTABLE=True)
        clock = Clock()
        loader = CropLoader(roidb, cfg, args.batch, workers=0, seed=0)
        b = loader.next()
        loader.close()
        sym = get_symbol(network, 'train', cfg)
        mod = mx.mod.Module(sym, data_names=['data'], label_names=label_names(cfg.RPN_FEAT_STRIDE), context=mx.cpu())
        mod.bind(loader.provide_data, loader.provide_label)
        mod.init_params(mx.init.Xavier())
        mod.init_optimizer(optimizer='sgd', optimizer_params={'learning_rate': 0.001, 'momentum': 0.9})
        for _ in range(2):
            mod.forward_backward(b)
            mod.update()
        mx.nd.waitall()
        t = time.perf_counter()
        for _ in range(args.batches // 2 or 1):
            mod.forward_backward(b)
            mod.update()
        mx.nd.waitall()
        clock.add('x', time.perf_counter() - t)
        print('%-52s %10.1f images/s' % ('train step %s %dx%d, batch %d' % (network, size, size, args.batch),
                                         (args.batches // 2 or 1) * args.batch / clock.total['x']))
    cfg = get_config('mnet', IMAGE_SIZE=args.size, TRAIN__BATCH_IMAGES=args.batch)
    for w in [int(v) for v in args.workers.split(',')]:
        loader = CropLoader(roidb, cfg, args.batch, workers=w, seed=0)
        loader.next()
        t = time.perf_counter()
        for _ in range(args.batches):
            loader.next()
        rate = args.batches * args.batch / (time.perf_counter() - t)
        loader.close()
        print('%-52s %10.1f images/s' % ('data pipeline %dx%d, %d worker(s)' % (args.size, args.size, w), rate))


def main():
    args = ARGS
    with tempfile.TemporaryDirectory() as tmp:
        if os.path.isfile(os.path.join(SHARED_TRAIN, 'train', 'label.txt')):
            data_path, source = os.path.abspath(SHARED_TRAIN), 'real WIDER train images (../shared)'
        else:
            data_path, source = os.path.join(tmp, 'retinaface'), 'generated images (no ../shared)'
            generate(data_path, train=96, val=1, seed=0)
        roidb = RetinaFaceDataset('train', tmp, data_path).gt_roidb()
        roidb = roidb + flip_roidb(roidb)
        cfg = get_config('mnet', IMAGE_SIZE=args.size, TRAIN__BATCH_IMAGES=args.batch)
        print('mnet %dx%d, batch %d, %d compute thread(s), OHEM + metrics on; data: %s'
              % (args.size, args.size, args.batch, args.threads, source))
        clock = Clock()
        data_breakdown(roidb, cfg, args.batches * args.batch, clock)
        step_breakdown(roidb, cfg, args.batch, args.batches, clock)
        print('\n| stage | ms per batch of %d |' % args.batch)
        print('|---|---|')
        for name, total in clock.total.items():
            print('| %s | %.1f |' % (name, 1000 * total / args.batches))
        compute = sum(v for k, v in clock.total.items() if k.startswith('train'))
        print('| main-process step (train rows) | %.1f = %.1f samples/s |'
              % (1000 * compute / args.batches, args.batches * args.batch / compute))
        if args.e2e_batches:
            rate = e2e_rate(data_path, args.e2e_batches, args.batch, args.size, args.e2e_workers, args.threads)
            print('\ntrain.py end to end (%d batches, --workers %d, OMP_NUM_THREADS=%d): %.1f samples/s'
                  % (args.e2e_batches, args.e2e_workers, args.threads, rate))
        if args.others:
            other_rates(roidb, args)
        if args.defaults:
            defaults_table(data_path, args)


if __name__ == '__main__':
    main()
