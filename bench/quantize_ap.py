"""INT8 against fp32 on real WIDER val: AP (mode 0, official .mat ground truth) and forward time.

    python bench/quantize_ap.py [--variants default,backbone_int8] [--shared ../shared]

For each variant: ``python -m rcnn.tools.quantize`` (entropy calibration on 40 real train images, the tool's
defaults unless the variant says otherwise), then ``test.py --mode 0`` on <shared>/widerface/retinaface/val
(307 images) with the official ground truth; fp32 is the published mnet.25. Prints one table (AP, the drop
against fp32, VGA forward ms with 1 and 2 threads, same process for all models). About 3 min per model.
"""
import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETTINGS = ('easy', 'medium', 'hard')
VARIANTS = {  # name -> --keep_fp32 (None: the tool's default, backbone,heads)
    'default': None,
    'first_early_heads': 'first,early,heads',
    'first_heads': 'first,heads',
    'backbone': 'backbone',
    'all_int8': '',
}
TIMING = r"""
import json, sys, time
sys.path.insert(0, %r)
import cv2, numpy as np
from retinaface import RetinaFace
img = cv2.resize(cv2.imread(%r), (640, 480))
out = {}
for name, prefix in json.loads(sys.argv[1]).items():
    det = RetinaFace(prefix, 0, ctx_id=-1)
    t = det._to_tensor([img])
    for _ in range(5):
        det.forward(t)
    ts = []
    for _ in range(40):
        a = time.perf_counter(); det.forward(t); ts.append(time.perf_counter() - a)
    out[name] = 1e3 * float(np.median(ts))
print(json.dumps(out))
"""


def evaluate(prefix, shared, output):
    subprocess.run([sys.executable, 'test.py', '--network', 'net3', '--prefix', prefix, '--epoch', '0',
                    '--dataset_path', os.path.join(shared, 'widerface', 'retinaface'), '--mode', '0', '--gpu', '-1',
                    '--gt', os.path.join(shared, 'widerface', 'ground_truth'), '--output', output, '--overwrite'],
                   cwd=ROOT, check=True)
    with open(os.path.join(output, 'ap.json')) as f:
        ap = json.load(f)['ap']
    return {k: ap[k] for k in SETTINGS}


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--shared', default=os.path.join(ROOT, '..', 'shared'))
    p.add_argument('--variants', default='default', help='comma list of: %s' % ', '.join(VARIANTS))
    p.add_argument('--work', default=os.path.join(ROOT, 'out', 'quantize_ap'))
    p.add_argument('--num_calib', type=int, default=40)
    args = p.parse_args()
    fp32 = os.path.join(args.shared, 'models', 'mnet.25')
    calib = os.path.join(args.shared, 'widerface', 'retinaface', 'train')
    for path in (fp32 + '-0000.params', os.path.join(calib, 'label.txt')):
        if not os.path.exists(path):
            sys.exit('missing %s (needs the shared real material: --shared)' % path)
    models = {'fp32': fp32}
    for name in args.variants.split(','):
        if name not in VARIANTS:
            sys.exit('unknown variant %r (choose from %s)' % (name, ', '.join(VARIANTS)))
        out = os.path.join(args.work, 'mnet.25-int8-' + name)
        cmd = [sys.executable, '-m', 'rcnn.tools.quantize', '--prefix', fp32, '--calib', calib, '--num_calib',
               str(args.num_calib), '--output', out, '--overwrite']
        if VARIANTS[name] is not None:
            cmd += ['--keep_fp32', VARIANTS[name]]
        subprocess.run(cmd, cwd=ROOT, check=True)
        models['int8 ' + name] = out
    ap = {name: evaluate(prefix, args.shared, os.path.join(args.work, 'eval-' + name.replace(' ', '-')))
          for name, prefix in models.items()}
    ms = {}
    for threads in (1, 2):
        run = subprocess.run([sys.executable, '-c', TIMING % (ROOT, os.path.join(args.shared, 'images', 't1.jpg')),
                              json.dumps(models)], env=dict(os.environ, OMP_NUM_THREADS=str(threads)),
                             capture_output=True, text=True, check=True)
        ms[threads] = json.loads(run.stdout.strip().splitlines()[-1])
    print('\n| model | Easy | Medium | Hard | drop vs fp32 (E / M / H) | VGA forward ms, 1 / 2 threads |')
    print('|---|---|---|---|---|---|')
    for name in models:
        drop = ' / '.join('%+.4f' % (ap[name][k] - ap['fp32'][k]) for k in SETTINGS)
        print('| %s | %s | %s | %.1f / %.1f |' % (name, ' | '.join('%.4f' % ap[name][k] for k in SETTINGS),
                                                  drop if name != 'fp32' else '-', ms[1][name], ms[2][name]))


if __name__ == '__main__':
    main()
