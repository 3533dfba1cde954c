"""GPU checks, run by bench/gpu_check.sh; prints one summary table (and writes it to --out).

Each check reports PASS / FAIL / SKIP with its numbers or the exact reason, and a failing check does not
stop the others: gpu_nms vs cpu_nms (1k/10k/50k boxes), the MXNet CUDA build (import, GPUs, runtime
libraries), RetinaFace(ctx_id=0) vs CPU detections, 20 training iterations of mnet on one GPU, and
detect() latency at VGA on the GPU.
"""
import argparse
import ctypes
import json
import os
import platform
import subprocess
import sys
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
CUDA11_LIBS = ['libcudart.so.11.0', 'libcublas.so.11', 'libcudnn.so.8', 'libnccl.so.2', 'libcufft.so.10',
               'libcusolver.so.11', 'libcurand.so.10', 'libnvrtc.so.11.2']
ROWS = []


def row(check, status, detail):
    ROWS.append((check, status, detail))
    print('[%s] %s: %s' % (status, check, detail), flush=True)


def guarded(name):
    def wrap(fn):
        def run(*a, **kw):
            try:
                return fn(*a, **kw)
            except Exception as err:  # a check that breaks is reported, the others still run
                row(name, 'FAIL', '%s: %s' % (type(err).__name__, str(err).strip().splitlines()[-1][:300]))
                traceback.print_exc()
                return None
        return run
    return wrap


def environment():
    smi = subprocess.run(['bash', '-c', 'nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap '
                          '--format=csv,noheader'], capture_output=True, text=True)
    row('GPU', 'INFO', smi.stdout.strip() or smi.stderr.strip()[:200] or 'nvidia-smi not found')
    row('python', 'INFO', '%s %s' % (platform.python_version(), sys.executable))
    nvcc = subprocess.run(['bash', '-c', 'nvcc --version | tail -2 | head -1'], capture_output=True, text=True)
    row('nvcc', 'INFO', nvcc.stdout.strip() or 'not found')


@guarded('gpu_nms == cpu_nms')
def check_nms():
    import numpy as np
    from rcnn.processing.nms import cpu_nms, gpu_nms, py_nms
    if gpu_nms is None:
        row('gpu_nms == cpu_nms', 'FAIL', 'rcnn.cython.gpu_nms was not built (see the build step above)')
        return
    sys.path.insert(0, os.path.join(ROOT, 'bench'))
    from bench_kernels import face_like_boxes
    rng = np.random.RandomState(0)
    details = []
    for n in (1000, 10000, 50000):
        dets = face_like_boxes(n, rng)
        for thr in (0.3, 0.4, 0.7):
            g, c = gpu_nms(dets, thr, 0), cpu_nms(dets, thr)
            if not np.array_equal(g, c):
                row('gpu_nms == cpu_nms', 'FAIL', '%d boxes thr %.1f: %d vs %d kept' % (n, thr, len(g), len(c)))
                return
        if n <= 10000:
            assert np.array_equal(cpu_nms(dets, 0.4), py_nms(dets, 0.4))
        gpu_nms(dets, 0.4, 0)
        t = time.perf_counter()
        for _ in range(5):
            gpu_nms(dets, 0.4, 0)
        tg = (time.perf_counter() - t) / 5
        t = time.perf_counter()
        cpu_nms(dets, 0.4)
        tc = time.perf_counter() - t
        details.append('%dk: gpu %.2f ms, cpu %.2f ms' % (n // 1000, tg * 1e3, tc * 1e3))
    row('gpu_nms == cpu_nms', 'PASS', 'identical keeps on 1k/10k/50k boxes at IoU 0.3/0.4/0.7; ' + '; '.join(details))


def check_mxnet():
    """Returns the mxnet module when it sees a GPU, else None (with the reason recorded)."""
    missing = []
    for lib in CUDA11_LIBS:
        try:
            ctypes.CDLL(lib)
        except OSError:
            missing.append(lib)
    try:
        from rcnn.compat import import_mxnet
        mx = import_mxnet()
    except Exception as err:
        row('mxnet CUDA build', 'FAIL', 'import mxnet failed: %s: %s; CUDA 11.2 libraries not loadable here: %s'
            % (type(err).__name__, str(err).strip().splitlines()[-1][:200], ', '.join(missing) or 'none'))
        return None
    try:
        gpus = mx.context.num_gpus()
    except Exception as err:
        row('mxnet CUDA build', 'FAIL', 'mxnet %s: num_gpus() failed: %s' % (mx.__version__, err))
        return None
    if gpus == 0:
        row('mxnet CUDA build', 'FAIL', 'mxnet %s sees no GPU (a CPU build?)' % mx.__version__)
        return None
    try:
        x = mx.nd.ones((64, 64), ctx=mx.gpu(0))
        mx.nd.Convolution(x.reshape((1, 1, 64, 64)), mx.nd.ones((1, 1, 3, 3), ctx=mx.gpu(0)), kernel=(3, 3),
                          num_filter=1, no_bias=True).wait_to_read()
    except Exception as err:
        row('mxnet CUDA build', 'FAIL', 'mxnet %s sees %d GPU(s) but a convolution fails: %s'
            % (mx.__version__, gpus, str(err).strip().splitlines()[-1][:300]))
        return None
    row('mxnet CUDA build', 'PASS', 'mxnet %s, %d GPU(s), convolution runs' % (mx.__version__, gpus))
    return mx


@guarded('RetinaFace GPU == CPU')
def check_detect(prefix, images):
    import cv2
    import numpy as np
    from retinaface import RetinaFace
    gpu, cpu = RetinaFace(prefix, 0, ctx_id=0), RetinaFace(prefix, 0, ctx_id=-1)
    worst, counts = 0.0, []
    for path in images:
        img = cv2.imread(path)
        a, la = gpu.detect(img, 0.5, scales=[1024.0 / min(img.shape[:2])])
        b, lb = cpu.detect(img, 0.5, scales=[1024.0 / min(img.shape[:2])])
        if len(a) != len(b):
            row('RetinaFace GPU == CPU', 'FAIL', '%s: %d faces on GPU, %d on CPU' % (path, len(a), len(b)))
            return
        worst = max(worst, float(np.abs(a - b).max(initial=0)), float(np.abs(la - lb).max(initial=0)))
        counts.append(len(a))
    status = 'PASS' if worst < 0.05 else 'FAIL'
    row('RetinaFace GPU == CPU', status, 'faces %s, max |diff| %.4f px/score' % (counts, worst))
    img = cv2.resize(cv2.imread(images[0]), (640, 480))
    for _ in range(5):
        gpu.detect(img, 0.5)
    times = []
    for _ in range(30):
        t = time.perf_counter()
        gpu.detect(img, 0.5)
        times.append(time.perf_counter() - t)
    row('detect() latency VGA, GPU', 'PASS', 'median %.2f ms over 30 runs' % (1e3 * sorted(times)[15]))


@guarded('train mnet, 1 GPU, 20 iterations')
def check_train(tmp):
    out = subprocess.run([sys.executable, '-m', 'rcnn.dataset.synthetic', '--output', os.path.join(tmp, 'retinaface'),
                          '--train', '64', '--val', '2'], capture_output=True, text=True, cwd=ROOT)
    if out.returncode:
        raise RuntimeError(out.stderr[-500:])
    res = subprocess.run([sys.executable, os.path.join(ROOT, 'train.py'), '--network', 'mnet', '--gpus', '0',
                          '--dataset_path', os.path.join(tmp, 'retinaface'), '--root_path', tmp, '--prefix',
                          os.path.join(tmp, 'gpu'), '--pretrained', 'none', '--batch_images', '8', '--image_size',
                          '640', '--end_epoch', '1', '--max_batches', '20', '--frequent', '10', '--workers', '8'],
                         capture_output=True, text=True, cwd=ROOT)
    speeds = [float(line.split('Speed:')[1].split()[0]) for line in res.stdout.splitlines() if 'Speed:' in line]
    if res.returncode or not speeds:
        raise RuntimeError('train.py exit %d: %s' % (res.returncode, (res.stdout + res.stderr)[-400:]))
    row('train mnet, 1 GPU, 20 iterations', 'PASS', '%.1f images/s at 640x640, batch 8' % speeds[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--prefix', default=os.path.join(os.path.dirname(ROOT), 'shared', 'models', 'mnet.25'))
    parser.add_argument('--images', default=os.path.join(os.path.dirname(ROOT), 'shared', 'images'))
    parser.add_argument('--tmp', default='/tmp/retinaface_gpu_check')
    parser.add_argument('--out', default=None, help='file for the summary table')
    args = parser.parse_args()
    os.makedirs(args.tmp, exist_ok=True)
    environment()
    check_nms()
    mx = check_mxnet()
    if mx is None:
        for name in ('RetinaFace GPU == CPU', 'detect() latency VGA, GPU', 'train mnet, 1 GPU, 20 iterations'):
            row(name, 'SKIP', 'needs a working MXNet CUDA build (see above)')
    else:
        images = [os.path.join(args.images, f) for f in ('t1.jpg', 't4.jpg')
                  if os.path.exists(os.path.join(args.images, f))]
        if images and os.path.exists(args.prefix + '-0000.params'):
            check_detect(args.prefix, images)
        else:
            row('RetinaFace GPU == CPU', 'SKIP', 'model %s or images in %s missing' % (args.prefix, args.images))
        check_train(args.tmp)
    width = max(len(r[0]) for r in ROWS)
    table = '\n'.join('%-*s  %-4s  %s' % (width, c, s, d) for c, s, d in ROWS)
    print('\n==== GPU check summary ====\n' + table)
    if args.out:
        with open(args.out, 'w') as f:
            f.write(table + '\n')
        with open(os.path.splitext(args.out)[0] + '.json', 'w') as f:
            json.dump([{'check': c, 'status': s, 'detail': d} for c, s, d in ROWS], f, indent=1)
    return 0 if all(s != 'FAIL' for _, s, _ in ROWS) else 1


if __name__ == '__main__':
    sys.exit(main())
