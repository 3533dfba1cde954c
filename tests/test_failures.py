"""Faults and bad input: nothing overwritten, nothing silent (train.py, test.py, the CLI, checkpoints)."""
import json
import os
import signal
import shutil
import subprocess
import sys

import cv2
from rcnn.compat import mx
import numpy as np
import pytest

from conftest import ROOT, shared_path
from rcnn.core.checkpoint import CheckpointError, PrefixLock, list_epochs, save_checkpoint
from rcnn.dataset.synthetic import generate
from retinaface import RetinaFace
from test_train import quick_args


def run(script, args, cwd=ROOT, timeout=600):
    return subprocess.run([sys.executable, os.path.join(ROOT, script)] + [str(a) for a in args], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout)


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp('tiny')
    generate(str(root / 'retinaface'), train=6, val=3, seed=5)
    return root


def train_args(root, prefix, *extra):
    """test_train's quick run, 2 epochs of 2 batches (later flags win)."""
    return quick_args(root, prefix, '--lr_step', '2', '--max_batches', 2, *extra)


# ------------------------------------------------------------------------------------------ train.py
def test_rerun_without_resume_is_refused_and_overwrite_starts_clean(tiny, tmp_path):
    prefix = str(tmp_path / 'm')
    assert run('train.py', train_args(tiny, prefix)).returncode == 0
    before = {p: os.path.getmtime(p) for p in (prefix + '-0001.params', prefix + '-0002.params')}
    again = run('train.py', train_args(tiny, prefix, '--end_epoch', 1))
    assert again.returncode == 2 and 'already has checkpoints (epochs 1, 2): --resume' in again.stdout
    assert {p: os.path.getmtime(p) for p in before} == before  # nothing touched
    fresh = run('train.py', train_args(tiny, prefix, '--end_epoch', 1, '--overwrite'))
    assert fresh.returncode == 0, fresh.stdout[-2000:]
    assert list_epochs(prefix) == [1]  # no mixed set: the old epoch 2 is gone


def test_two_runs_on_one_prefix_are_refused(tiny, tmp_path):
    prefix = str(tmp_path / 'busy')
    lock = PrefixLock(prefix)  # as a running training holds it
    try:
        res = run('train.py', train_args(tiny, prefix))
        assert res.returncode == 2 and 'busy.lock is locked by a running training (pid %d)' % os.getpid() in res.stdout
        assert not list_epochs(prefix)
    finally:
        lock.release()
    assert run('train.py', train_args(tiny, prefix, '--end_epoch', 1)).returncode == 0


def test_divergence_never_writes_a_non_finite_checkpoint(tiny, tmp_path):
    prefix = str(tmp_path / 'div')
    res = run('train.py', train_args(tiny, prefix, '--lr', 1e6, '--lr_step', '4'))
    assert res.returncode == 3, res.stdout[-2000:]
    assert 'training stopped' in res.stdout
    for epoch in list_epochs(prefix):  # whatever was written holds finite numbers only
        saved = mx.nd.load('%s-%04d.params' % (prefix, epoch))
        assert all(np.isfinite(v.asnumpy()).all() for v in saved.values())
    named = [w for w in res.stdout.split() if w.startswith(prefix + '-') and w.endswith('.params')]
    for path in named:
        assert os.path.isfile(path.rstrip('.,;'))
    for attempt in range(3):  # a failed run exits with its code, every time (it used to hang at exit now and then)
        again = run('train.py', train_args(tiny, '%s%d' % (prefix, attempt), '--lr', 1e6, '--lr_step', '4'),
                    timeout=180)
        assert again.returncode == 3


def test_non_finite_checkpoints_are_neither_saved_nor_loaded(tmp_path, mnet25_prefix):
    sym = mx.sym.load(mnet25_prefix + '-symbol.json')
    arg, aux = {}, {}
    for k, v in mx.nd.load(mnet25_prefix + '-0000.params').items():
        (arg if k.startswith('arg:') else aux)[k[4:]] = v
    bad_aux = dict(aux)
    bad_aux['rf_c1_aggr_bn_moving_var'] = aux['rf_c1_aggr_bn_moving_var'] * np.inf
    with pytest.raises(CheckpointError, match='1 tensors hold NaN/inf .aux:rf_c1_aggr_bn_moving_var'):
        save_checkpoint(str(tmp_path / 'x'), 1, sym, arg, bad_aux)
    assert not os.path.exists(str(tmp_path / 'x-0001.params'))
    payload = {'arg:' + k: v for k, v in arg.items()}
    payload.update({'aux:' + k: v for k, v in bad_aux.items()})
    mx.nd.save(str(tmp_path / 'y-0000.params'), payload)
    shutil.copy(mnet25_prefix + '-symbol.json', str(tmp_path / 'y-symbol.json'))
    with pytest.raises(CheckpointError, match=r'y-0000.params holds NaN/inf in 1 tensors \(aux:rf_c1_aggr_bn_moving'):
        RetinaFace(str(tmp_path / 'y'), 0, ctx_id=-1)


# ------------------------------------------------------------------------------------------ test.py
def eval_args(root, out, *extra):
    return ['--prefix', shared_path('models', 'mnet.25-0000.params')[:-len('-0000.params')], '--epoch', 0,
            '--dataset_path', root / 'retinaface', '--output', out, '--mode', 0, '--scales', 0.5] + list(extra)


def test_result_files_are_named_by_stem_and_foreign_files_kept(tmp_path):
    root = tmp_path
    generate(str(root / 'retinaface'), train=1, val=2, seed=7)
    images = root / 'retinaface' / 'val' / 'images'
    first = sorted(images.rglob('*.jpg'))[0]
    png = first.with_suffix('.png')                       # a .png image whose name contains "jpg" too
    png = png.with_name(png.stem + '_jpg.png')
    cv2.imwrite(str(png), cv2.imread(str(first)))
    label = root / 'retinaface' / 'val' / 'label.txt'
    rel = os.path.relpath(str(png), str(images))
    label.write_text(label.read_text() + '# %s\n10 10 20 20\n' % rel)
    out = tmp_path / 'out'
    res = run('test.py', eval_args(root, out))
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert (out / os.path.dirname(rel) / (png.stem + '.txt')).is_file()
    assert '3 images' in res.stdout
    manifest = json.load(open(out / 'run.json'))
    assert manifest['mode'] == 0 and json.load(open(out / 'ap.json'))['run'] == manifest
    # results written into the images folder never replace an image, and a foreign .txt is not overwritten
    foreign = images / os.path.dirname(rel) / (png.stem + '.txt')
    foreign.write_text('my notes\n')
    res = run('test.py', eval_args(root, images, '--overwrite'))
    assert res.returncode == 2 and 'is not the result file of' in res.stdout
    assert foreign.read_text() == 'my notes\n' and cv2.imread(str(png)) is not None


def test_results_of_another_run_are_not_mixed(tmp_path):
    generate(str(tmp_path / 'retinaface'), train=1, val=2, seed=8)
    out = tmp_path / 'out'
    assert run('test.py', eval_args(tmp_path, out)).returncode == 0
    res = run('test.py', eval_args(tmp_path, out, '--thresh', 0.5))
    assert res.returncode == 2 and 'holds results of another run (thresh 0.02, now 0.5)' in res.stdout
    assert 'Easy' not in res.stdout and 'All' not in res.stdout
    ok = run('test.py', eval_args(tmp_path, out, '--thresh', 0.5, '--overwrite'))
    assert ok.returncode == 0 and json.load(open(out / 'run.json'))['thresh'] == 0.5


def test_bad_splits_and_flags_are_explained(tmp_path):
    generate(str(tmp_path / 'retinaface'), train=1, val=2, seed=9)
    label = tmp_path / 'retinaface' / 'val' / 'label.txt'
    lines = label.read_text().splitlines()
    label.write_text('\n'.join(lines + lines[:2]) + '\n')  # the first image listed again
    res = run('test.py', eval_args(tmp_path, tmp_path / 'o'))
    assert res.returncode == 2 and 'label.txt:%d: image' % (len(lines) + 1) in res.stdout and 'listed twice' in res.stdout
    label.write_text('')
    res = run('test.py', eval_args(tmp_path, tmp_path / 'o'))
    assert res.returncode == 2 and 'lists no images' in res.stdout
    res = run('test.py', eval_args(tmp_path, tmp_path / 'o', '--limit', -1))
    assert res.returncode == 2 and '--limit must be >= 0' in res.stderr


def test_parts_hint_evaluates_correctly(tmp_path):
    generate(str(tmp_path / 'retinaface'), train=1, val=4, seed=10)
    out = tmp_path / 'parts'
    res = run('test.py', eval_args(tmp_path, out, '--parts', 2, '--part', 0, '--limit', 3))
    assert res.returncode == 0
    hint = res.stdout.split('evaluate them together with: ')[1].splitlines()[0].split()
    assert hint[:3] == ['python', '-m', 'rcnn.dataset.widerface_eval'] and '--subset' in hint


# ------------------------------------------------------------------------------------------ CLI
def test_cli_keeps_same_stem_images_apart_and_never_replaces_inputs(tmp_path, mnet25_prefix):
    images = tmp_path / 'in'
    images.mkdir()
    img = cv2.resize(cv2.imread(shared_path('images', 't1.jpg')), (320, 222))
    cv2.imwrite(str(images / 'a.jpg'), img)
    cv2.imwrite(str(images / 'a.png'), img[:, ::-1])
    out = tmp_path / 'out'
    res = run('retinaface.py', ['--prefix', mnet25_prefix, '--image', images, '--output', out, '--scale', 1])
    assert res.returncode == 0, res.stderr
    assert (out / 'a.jpg').is_file() and (out / 'a.png').is_file()
    res = run('retinaface.py', ['--prefix', mnet25_prefix, '--image', images, '--output', images])
    assert res.returncode == 2 and 'would replace the images' in res.stderr
    res = run('retinaface.py', ['--prefix', mnet25_prefix, '--image', images / 'a.jpg', '--output',
                                tmp_path / 'no_such_dir' / 'x.txt'])
    assert res.returncode == 2 and 'not an image file name' in res.stderr
    res = run('retinaface.py', ['--prefix', mnet25_prefix, '--image', images / 'a.jpg', '--scale', -1])
    assert res.returncode == 2 and '--scale must lie in' in res.stderr
    empty = tmp_path / 'empty'
    empty.mkdir()
    res = run('retinaface.py', ['--prefix', mnet25_prefix, '--image', empty])
    assert res.returncode == 2 and 'holds no image files' in res.stderr


def _truncate(path):
    data = open(path, 'rb').read()
    open(path, 'wb').write(data[:len(data) // 2])


def test_truncated_jpeg_is_named_with_its_label_line(tmp_path):
    generate(str(tmp_path / 'retinaface'), train=4, val=1, seed=11)
    label = tmp_path / 'retinaface' / 'train' / 'label.txt'
    lines = label.read_text().splitlines()
    victim = [i for i, line in enumerate(lines) if line.startswith('#')][1]
    image = tmp_path / 'retinaface' / 'train' / 'images' / lines[victim][1:].strip()
    pristine = image.read_bytes()
    _truncate(image)
    res = run('train.py', train_args(tmp_path, str(tmp_path / 'a'), '--end_epoch', 1))
    assert res.returncode == 2 and 'label.txt:%d: truncated JPEG' % (victim + 1) in res.stdout
    skipped = run('train.py', train_args(tmp_path, str(tmp_path / 'b'), '--end_epoch', 1, '--skip_bad'))
    assert skipped.returncode == 0 and 'skipped 1 bad entries' in skipped.stdout
    # cached while intact, truncated afterwards: the run stops with the image's label line, no traceback
    image.write_bytes(pristine)
    (tmp_path / 'cache').exists() and shutil.rmtree(str(tmp_path / 'cache'))
    assert run('train.py', train_args(tmp_path, str(tmp_path / 'c'), '--end_epoch', 1)).returncode == 0
    _truncate(image)
    res = run('train.py', train_args(tmp_path, str(tmp_path / 'd'), '--end_epoch', 1, '--max_batches', 0),
              timeout=300)
    assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-2000:]
    assert 'label.txt:%d: truncated JPEG' % (victim + 1) in res.stdout and 'Traceback' not in res.stderr


@pytest.mark.parametrize('flag,value,msg', [('--image_size', 0, 'positive multiple of 32'),
                                            ('--batch_images', 0, '--batch_images must be > 0'),
                                            ('--max_batches', -1, '--max_batches must be >= 0'),
                                            ('--lr', 'nan', '--lr must be a positive number')])
def test_train_flags_are_checked_before_work(tiny, tmp_path, flag, value, msg):
    res = run('train.py', train_args(tiny, str(tmp_path / 'f'), flag, value))
    assert res.returncode == 2 and msg in res.stderr and 'Traceback' not in res.stderr


@pytest.mark.skipif(mx.context.num_gpus() > 0, reason='checks the message of a machine without GPUs')
def test_gpu_requests_on_a_cpu_build_are_one_clear_sentence(tiny, tmp_path, mnet25_prefix):
    with pytest.raises(ValueError, match=r'ctx_id=0 \(--gpu 0\) asks for GPU 0 but this MXNet sees 0 GPU\(s\)'):
        RetinaFace(mnet25_prefix, 0, ctx_id=0)
    res = run('train.py', train_args(tiny, str(tmp_path / 'g'), '--gpus', '0'))
    assert res.returncode == 2 and '--gpus 0 asks for GPU 0 but this MXNet sees 0 GPU(s)' in res.stderr
    res = run('test.py', ['--prefix', mnet25_prefix, '--epoch', 0, '--gpu', 0, '--dataset_path', tiny / 'retinaface',
                          '--output', tmp_path / 'o'])
    assert res.returncode == 2 and 'asks for GPU 0 but this MXNet sees 0 GPU(s)' in res.stdout
    assert 'Traceback' not in res.stdout + res.stderr


def test_dead_data_worker_is_reported_not_waited_for(tiny):
    """A data worker SIGKILLed (as the out-of-memory killer does) is named within seconds, with the signal; the
    former pool replaced it silently and waited 600 s for the lost batch."""
    import time
    from rcnn.config import get_config
    from rcnn.core.loader import CropLoader, DataWorkerError
    from rcnn.dataset.retinaface import RetinaFaceDataset
    roidb = RetinaFaceDataset('train', str(tiny), str(tiny / 'retinaface')).gt_roidb()
    crops = CropLoader(roidb, get_config('mnet', IMAGE_SIZE=128), 2, workers=1)
    try:
        crops.next()
        pid = crops._pool[0].proc.pid
        os.kill(pid, signal.SIGKILL)
        start = time.time()
        with pytest.raises(DataWorkerError, match=r'data worker 0 \(pid %d\) was killed by SIGKILL' % pid):
            for _ in range(len(roidb)):
                crops.next()
        assert time.time() - start < 10
    finally:
        crops.close()
