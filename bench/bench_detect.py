"""Detection speed on the CPU, side by side in one run: our detect() (fp32 and INT8) against onnxruntime.

    python bench/bench_detect.py [--prefix ../shared/models/mnet.25] [--runs 30] [--rounds 7] [--threads 1,2]

Same image (t1 at VGA 640x480 and at full size 1280x886), same threshold (0.5), same thread count per cell:
- ours: ``RetinaFace.detect(img)`` from the BGR image (tensor conversion, forward, decode, NMS), fp32 and the
  INT8 model of ``rcnn.tools.quantize`` (made once under out/bench/ from ../shared's train images);
- onnxruntime: the same checkpoint exported by ``rcnn.tools.export_onnx``, end to end from the input tensor
  (forward + plain numpy decode + NMS, bench/ort_runner.py) in a process of its own.
Each cell is a fresh process per engine, engines alternating, --rounds times; the table gives the best of
the per-round medians (the machine is shared: the least disturbed round of each engine), and, paired by
round (ours, then onnxruntime right after), the median of the per-round ratios and in how many rounds ours
was ahead. Also: fp32 detect() / raw forward at VGA (goal <= 1.10), and detect_batch on 8 VGA images against
8 detect() calls.
"""
import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
SHARED = os.path.join(os.path.dirname(ROOT), 'shared')
DEFAULT_PREFIX = os.path.join(SHARED, 'models', 'mnet.25')
DEFAULT_IMAGE = os.path.join(SHARED, 'images', 't1.jpg')
ORT_PYTHON = sys.executable  # onnxruntime shares the environment (requirements-base.txt)
WORK = os.path.join(ROOT, 'out', 'bench')


def images(path):
    import cv2
    full = cv2.imread(path)
    return {'VGA 640x480': cv2.resize(full, (640, 480)), 'full %dx%d' % (full.shape[1], full.shape[0]): full}


def timed(fn, runs):
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return 1e3 * statistics.median(out)


def measure(prefixes, image, runs, threshold):
    """Child process: per model and input, forward ms, detect ms and faces; detect_batch rates at VGA."""
    from retinaface import RetinaFace
    inputs = images(image)
    result = {}
    for name, prefix in prefixes.items():
        det = RetinaFace(prefix, 0, ctx_id=-1)
        rows = {}
        for label, img in inputs.items():
            tensor = det._to_tensor([img])
            for _ in range(3):  # warm-up: bind, allocate, first oneDNN primitives
                det.detect(img, threshold)
            fwd, full = [], []
            for _ in range(runs):  # interleaved, so both see the same machine load
                fwd.append(timed(lambda: det.forward(tensor), 1))
                full.append(timed(lambda: det.detect(img, threshold), 1))
            rows[label] = {'forward_ms': statistics.median(fwd), 'detect_ms': statistics.median(full),
                           'faces': det.detect(img, threshold)[0].tolist()}
        vga = [inputs['VGA 640x480']] * 8
        det.detect_batch(vga, threshold)
        n = max(3, runs // 6)
        rows['batch8'] = {'single_ips': 8e3 / timed(lambda: [det.detect(im, threshold) for im in vga], n),
                          'batch_ips': 8e3 / timed(lambda: det.detect_batch(vga, threshold), n)}
        result[name] = rows
    return result


def child_env(threads):
    return dict(os.environ, OMP_NUM_THREADS=str(threads))


def run_ours(prefixes, args, threads):
    out = subprocess.run([sys.executable, __file__, '--child', json.dumps(prefixes), '--image', args.image,
                          '--runs', str(args.runs), '--threshold', str(args.threshold)],
                         env=child_env(threads), capture_output=True, text=True)
    if out.returncode:
        sys.exit('detector child failed:\n' + out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_ort(onnx_path, inputs, args, threads):
    with tempfile.NamedTemporaryFile(suffix='.json') as res:
        subprocess.run([ORT_PYTHON, os.path.join(ROOT, 'bench', 'ort_runner.py'), '--onnx', onnx_path, '--inputs',
                        inputs, '--threads', str(threads), '--runs', str(args.runs), '--threshold',
                        str(args.threshold), '--out', res.name], check=True, env=child_env(threads))
        with open(res.name) as f:
            return json.load(f)


def prepare(args):
    """(models {name: prefix}, onnx path or None, inputs .npz, notes)."""
    import numpy as np
    from retinaface import RetinaFace
    os.makedirs(WORK, exist_ok=True)
    notes, models = [], {'fp32': args.prefix}
    int8 = args.int8 or os.path.join(WORK, 'mnet.25-int8')
    calib = os.path.join(SHARED, 'widerface', 'retinaface', 'train')
    if os.path.exists(int8 + '-0000.params'):
        models['int8'] = int8
    elif args.int8 is None and os.path.isfile(os.path.join(calib, 'label.txt')):
        subprocess.run([sys.executable, '-m', 'rcnn.tools.quantize', '--prefix', args.prefix, '--calib', calib,
                        '--output', int8], cwd=ROOT, check=True)
        models['int8'] = int8
    else:
        notes.append('INT8: skipped (no %s and no calibration images at %s)' % (int8, calib))
    det = RetinaFace(args.prefix, 0, ctx_id=-1)
    inputs = os.path.join(WORK, 'inputs.npz')
    np.savez(inputs, **{label: det._to_tensor([img]) for label, img in images(args.image).items()})
    onnx_path = os.path.join(WORK, os.path.basename(args.prefix) + '.onnx')
    if importlib.util.find_spec('onnxruntime') is None:
        notes.append('onnxruntime: skipped (not installed: pip install -r requirements.txt)')
        return models, None, inputs, notes
    try:
        from rcnn.tools.export_onnx import export
        export(args.prefix, 0, onnx_path)
    except ValueError as err:
        notes.append('onnxruntime: skipped (%s)' % err)
        return models, None, inputs, notes
    return models, onnx_path, inputs, notes


def main():
    parser = argparse.ArgumentParser(formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--prefix', default=DEFAULT_PREFIX, help='fp32 checkpoint (epoch 0)')
    parser.add_argument('--int8', default=None, help='INT8 checkpoint prefix (default: made under out/bench/)')
    parser.add_argument('--image', default=DEFAULT_IMAGE)
    parser.add_argument('--runs', type=int, default=30, help='timed calls per cell and process')
    parser.add_argument('--rounds', type=int, default=7, help='processes per engine and cell (alternating)')
    parser.add_argument('--threshold', type=float, default=0.5)
    parser.add_argument('--threads', default='1,2')
    parser.add_argument('--child', default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(json.loads(args.child), args.image, args.runs, args.threshold)))
        return
    for path in (args.prefix + '-0000.params', args.image):
        if not os.path.exists(path):
            sys.exit('missing %s (pass --prefix/--image)' % path)
    models, onnx_path, inputs, notes = prepare(args)
    table = []
    for n in [int(v) for v in args.threads.split(',')]:
        ours, ort = [], []
        for _ in range(args.rounds):
            ours.append(run_ours(models, args, n))
            if onnx_path:
                ort.append(run_ort(onnx_path, inputs, args, n))
        table.append((n, ours, ort))
    print('\nmnet.25, threshold %.2f, best of %d rounds of the median of %d calls (ms; lower is better)'
          % (args.threshold, args.rounds, args.runs))
    head = ['threads', 'input', 'onnxruntime e2e']
    head += ['ours %s detect' % m for m in models] + ['best / onnxruntime', 'per-round ratio (median)',
                                                      'rounds ahead', 'faces (ort/%s)' % '/'.join(models)]
    print('| ' + ' | '.join(head) + ' |\n|' + '---|' * len(head))
    med = min  # best round
    for n, ours, ort in table:
        for label in ours[0]['fp32']:
            if label == 'batch8':
                continue
            ort_ms = med(r['inputs'][label]['e2e_ms'] for r in ort) if ort else None
            ms = {m: med(r[m][label]['detect_ms'] for r in ours) for m in models}
            faces = [str(len(ort[0]['inputs'][label]['faces'])) if ort else '-']
            faces += [str(len(ours[0][m][label]['faces'])) for m in models]
            best = min(ms.values())
            # paired: each round's fastest model against the onnxruntime process run right after it
            paired = [min(o[m][label]['detect_ms'] for m in models) / r['inputs'][label]['e2e_ms']
                      for o, r in zip(ours, ort)]
            cells = [str(n), label, '%.2f' % ort_ms if ort_ms else '-'] + ['%.2f' % ms[m] for m in models]
            cells += ['%.2f' % (best / ort_ms) if ort_ms else '-',
                      '%.2f' % statistics.median(paired) if paired else '-',
                      '%d of %d' % (sum(p < 1 for p in paired), len(paired)) if paired else '-', '/'.join(faces)]
            print('| ' + ' | '.join(cells) + ' |')
    print('\nfp32 detect() / raw forward (goal <= 1.10) and detect_batch of 8 VGA images (images/s):')
    print('| threads | model | input | forward ms | detect ms | ratio | 8 x detect() img/s | detect_batch img/s |')
    print('|---|---|---|---|---|---|---|---|')
    for n, ours, _ in table:
        for m in models:
            label = 'VGA 640x480'
            fwd = med(r[m][label]['forward_ms'] for r in ours)
            det = med(r[m][label]['detect_ms'] for r in ours)
            single = max(r[m]['batch8']['single_ips'] for r in ours)  # images/s: the best round is the highest
            batch = max(r[m]['batch8']['batch_ips'] for r in ours)
            print('| %d | %s | %s | %.2f | %.2f | %.3f | %.1f | %.1f |' % (n, m, label, fwd, det, det / fwd, single,
                                                                        batch))
    for note in notes:
        print(note)


if __name__ == '__main__':
    main()
