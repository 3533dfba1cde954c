"""detect() vs the raw network forward, at VGA (640x480) and full-size t1 (1280x886).

    python bench/bench_detect.py [--prefix ../shared/models/mnet.25] [--runs 30]

Each thread count runs in its own process (OMP_NUM_THREADS is read when MXNet starts). Reports the
median over --runs runs after warm-up. Goal: detect() <= 1.10 x forward at VGA.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
DEFAULT_PREFIX = os.path.join(os.path.dirname(ROOT), 'shared', 'models', 'mnet.25')
DEFAULT_IMAGE = os.path.join(os.path.dirname(ROOT), 'shared', 'images', 't1.jpg')


def measure(prefix, image, runs, threshold):
    import cv2
    from retinaface import RetinaFace
    det = RetinaFace(prefix, 0, ctx_id=-1)
    full = cv2.imread(image)
    rows = []
    for label, img in (('VGA 640x480', cv2.resize(full, (640, 480))),
                       ('t1 %dx%d' % (full.shape[1], full.shape[0]), full)):
        tensor = det._to_tensor([img])
        for _ in range(3):  # warm-up: bind, allocate, first MKLDNN primitives
            det.detect(img, threshold)
        fwd, full_t = [], []
        for _ in range(runs):
            t0 = time.perf_counter()
            det.forward(tensor)
            t1 = time.perf_counter()
            faces, _ = det.detect(img, threshold)
            t2 = time.perf_counter()
            fwd.append(t1 - t0)
            full_t.append(t2 - t1)
        rows.append({'input': label, 'forward_ms': 1e3 * statistics.median(fwd),
                     'detect_ms': 1e3 * statistics.median(full_t), 'faces': int(len(faces))})
    return rows


def main():
    parser = argparse.ArgumentParser(formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--prefix', default=DEFAULT_PREFIX)
    parser.add_argument('--image', default=DEFAULT_IMAGE)
    parser.add_argument('--runs', type=int, default=30)
    parser.add_argument('--threshold', type=float, default=0.5)
    parser.add_argument('--threads', default='1,2')
    parser.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.prefix, args.image, args.runs, args.threshold)))
        return
    for path in (args.prefix + '-0000.params', args.image):
        if not os.path.exists(path):
            sys.exit('missing %s (pass --prefix/--image)' % path)
    print('%-8s %-16s %12s %12s %8s %6s' % ('threads', 'input', 'forward ms', 'detect ms', 'ratio', 'faces'))
    for n in args.threads.split(','):
        env = dict(os.environ, OMP_NUM_THREADS=n, MXNET_CPU_WORKER_NTHREADS=n)
        out = subprocess.run([sys.executable, __file__, '--child', '--prefix', args.prefix, '--image', args.image,
                              '--runs', str(args.runs), '--threshold', str(args.threshold)],
                             env=env, capture_output=True, text=True, check=True).stdout
        for row in json.loads(out.strip().splitlines()[-1]):
            print('%-8s %-16s %12.2f %12.2f %8.3f %6d' % (n, row['input'], row['forward_ms'], row['detect_ms'],
                                                          row['detect_ms'] / row['forward_ms'], row['faces']))


if __name__ == '__main__':
    main()
