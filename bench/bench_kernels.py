"""Cython kernels vs their numpy twins: NMS on 1k/10k/50k boxes and anchor-plane generation.

    python bench/bench_kernels.py        # prints a table; goal: Cython NMS >= 5x numpy at 10k boxes
"""
import os
import sys
import timeit

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from rcnn.cython.anchors import anchors_cython  # noqa: E402
from rcnn.cython.cpu_nms import cpu_nms  # noqa: E402
from rcnn.processing.anchors import anchors_plane_py, generate_anchors  # noqa: E402
from rcnn.processing.nms import py_nms  # noqa: E402


def face_like_boxes(n, rng):
    """Detector-like candidates: clusters of jittered boxes around faces, scores in (0, 1)."""
    centres = rng.uniform(0, 2000, (max(1, n // 40), 2))
    sizes = rng.uniform(10, 200, (len(centres), 1))
    idx = rng.randint(0, len(centres), n)
    c = centres[idx] + rng.normal(0, 0.15, (n, 2)) * sizes[idx]
    s = sizes[idx] * rng.uniform(0.8, 1.25, (n, 1))
    return np.hstack([c - s / 2, c + s / 2, rng.rand(n, 1)]).astype(np.float32)


def best_of(fn, number, repeat=5):
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number


def main():
    rng = np.random.RandomState(0)
    print('%-28s %12s %12s %9s' % ('case', 'cython (ms)', 'numpy (ms)', 'speed-up'))
    for n in (1000, 10000, 50000):
        dets = face_like_boxes(n, rng)
        assert np.array_equal(cpu_nms(dets, 0.4), py_nms(dets, 0.4))
        number = 20 if n <= 1000 else 3 if n <= 10000 else 1
        tc = best_of(lambda: cpu_nms(dets, 0.4), number)
        tp = best_of(lambda: py_nms(dets, 0.4), number, repeat=3 if n < 50000 else 1)
        print('%-28s %12.3f %12.3f %8.1fx' % ('nms %d boxes (thr 0.4)' % n, tc * 1e3, tp * 1e3, tp / tc))
    base = generate_anchors(16, (1.0,), (2, 1))
    for h, w in ((80, 80), (250, 375)):
        tc = best_of(lambda: anchors_cython(h, w, 8, base), 50)
        tp = best_of(lambda: anchors_plane_py(h, w, 8, base), 50)
        print('%-28s %12.3f %12.3f %8.1fx' % ('anchor plane %dx%d, A=2' % (h, w), tc * 1e3, tp * 1e3, tp / tc))


if __name__ == '__main__':
    main()
