"""Peak memory of the detector and of an evaluation: flat in the number of images and sizes.

    python bench/bench_memory.py [--sizes 1000] [--eval_images 307] [--shared ../shared]

1. ``detect()`` of mnet.25 over ``--sizes`` random image sizes (96 to 1024 px a side), in a fresh process each
   for the detector as it is (anchor planes and MXNet's oneDNN primitive cache bounded) and as it was
   (both unbounded: the baseline, same run): peak RSS (VmHWM) and RSS after 10%, 50% and all of the sizes
   (the peak also rises with the largest image met so far).
2. ``test.py --mode 1`` (each image's pyramid of sizes, flip) of mnet.25 on the first ``--eval_images`` real
   val images, in-process: RSS when 50, 150 and all result files exist (0 skips it).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DETECT = r'''
import sys, json
sys.path.insert(0, sys.argv[1])
import numpy as np
from retinaface import RetinaFace
det = RetinaFace(sys.argv[2], 0, ctx_id=-1)
if sys.argv[4] == 'unbounded':
    det._anchors.max_planes = 10 ** 9
rng = np.random.RandomState(0)
n = int(sys.argv[3])
marks = {max(1, n // 10): None, n // 2: None, n: None}

def status(key):
    for line in open('/proc/self/status'):
        if line.startswith(key + ':'):
            return int(line.split()[1]) / 1024.0
for i in range(1, n + 1):
    h, w = rng.randint(96, 1025, size=2)
    det.detect(rng.randint(0, 255, (h, w, 3), dtype=np.uint8), 0.5)
    if i in marks:
        marks[i] = (status('VmHWM'), status('VmRSS'))
print(json.dumps({'peak_mb': {str(k): round(v[0], 1) for k, v in marks.items()},
                  'rss_mb': {str(k): round(v[1], 1) for k, v in marks.items()}, 'planes': len(det._anchors)}))
'''


def detect_peaks(model, sizes, kind):
    env = dict(os.environ)
    if kind == 'unbounded':  # the former detector: MXNet's oneDNN primitive cache unbounded too
        env['MXNET_MKLDNN_CACHE_NUM'] = '-1'
    res = subprocess.run([sys.executable, '-c', DETECT, ROOT, model, str(sizes), kind], capture_output=True,
                         text=True, cwd=ROOT, env=env)
    if res.returncode:
        sys.exit(res.stderr[-3000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def rss_mb():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024.0
    return float('nan')


def eval_peaks(model, shared, images):
    """RSS of test.py --mode 1 run in this process when 50, 150 and `images` result files exist."""
    sys.path.insert(0, ROOT)
    from rcnn.tools import evaluate
    out = tempfile.mkdtemp(prefix='bench_memory_')
    marks, seen, done = [m for m in (50, 150, images) if m <= images], {}, threading.Event()

    def watch():
        while not done.is_set():
            count = sum(len(files) for _, _, files in os.walk(out))
            for m in marks:
                if count >= m and m not in seen:
                    seen[m] = round(rss_mb(), 1)
            time.sleep(0.2)
    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    evaluate.main(['--network', 'net3', '--prefix', model, '--epoch', '0', '--dataset_path',
                   os.path.join(shared, 'widerface', 'retinaface'), '--mode', '1', '--gpu', '-1', '--limit',
                   str(images), '--output', out, '--gt', os.path.join(shared, 'widerface', 'ground_truth')])
    done.set()
    thread.join()
    seen.setdefault(images, round(rss_mb(), 1))
    return seen


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--shared', default=os.path.join(os.path.dirname(ROOT), 'shared'))
    p.add_argument('--sizes', type=int, default=1000)
    p.add_argument('--eval_images', type=int, default=307)
    args = p.parse_args()
    model = os.path.join(args.shared, 'models', 'mnet.25')
    report = {'detect_random_sizes': {kind: detect_peaks(model, args.sizes, kind) for kind in ('bounded',
                                                                                            'unbounded')}}
    print(json.dumps(report, indent=1), flush=True)
    if args.eval_images:
        report['test_py_mode1_rss_mb'] = eval_peaks(model, args.shared, args.eval_images)
    print(json.dumps(report, indent=1))


if __name__ == '__main__':
    main()
