"""Training end to end on CPU: the generated set, resume, NaN stop, distributed kvstore, real WIDER data."""
import os
import signal
import subprocess
import sys

import cv2
from rcnn.compat import mx
import numpy as np
import pytest

from conftest import ROOT, shared_path
from rcnn.core.checkpoint import list_epochs
from rcnn.cpu_engine import physical_cores
from rcnn.dataset.synthetic import generate
from retinaface import RetinaFace



@pytest.fixture(scope='module')
def tiny_set(tmp_path_factory):
    root = tmp_path_factory.mktemp('synthetic')
    generate(str(root / 'retinaface'), train=12, val=4, seed=3)
    return root


def run_train(args, env=None, timeout=600):
    cmd = [sys.executable, os.path.join(ROOT, 'train.py')] + [str(a) for a in args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=timeout,
                          env=dict(os.environ, **(env or {})))


def run_job(cmd, timeout):
    """A distributed job (launcher, scheduler, server, workers) in its own process group; on a timeout the
    whole group is killed (a hung job must not hold the scheduler port for later tests) and the test fails."""
    # MXNET_ENGINE_TYPE was set in this process by importing retinaface; a user's shell has not set it
    env = {k: v for k, v in os.environ.items() if k != 'MXNET_ENGINE_TYPE'}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env=dict(env, DMLC_INTERFACE='lo', PS_VERBOSE='0'), start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail('distributed job still running after %d s (hung):\n%s' % (timeout, (out + err)[-3000:]))
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def quick_args(root, prefix, *extra):
    return ['--network', 'mnet', '--dataset_path', root / 'retinaface', '--root_path', root, '--prefix', prefix,
            '--pretrained', 'none', '--image_size', 128, '--batch_images', 2, '--lr', 0.01, '--lr_step', '1,2',
            '--frequent', 1, '--workers', 0, '--max_batches', 3] + list(extra)


def test_train_checkpoints_resume_and_detector_loads(tiny_set, tmp_path):
    prefix = str(tmp_path / 'm')
    first = run_train(quick_args(tiny_set, prefix, '--end_epoch', 1))
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    out = first.stdout
    for name in ('Speed:', 'samples/sec', 'RPNAcc_s32=', 'RPNAcc_s8_FG=', 'RPNL1Loss_s16=', 'RPNLandMarkL1Loss_s8=',
                 'training from scratch'):
        assert name in out
    assert list_epochs(prefix) == [1]
    assert not [f for f in os.listdir(tmp_path) if f.endswith('.tmp')]
    second = run_train(quick_args(tiny_set, prefix, '--end_epoch', 2, '--resume'))
    assert second.returncode == 0, second.stderr[-3000:]
    assert 'resuming from %s-0001.params' % prefix in second.stdout
    assert 'Epoch[1]' in second.stdout and 'Epoch[0]' not in second.stdout
    # each checkpoint reports the rate its epoch trained with (--lr_step 1,2: epoch 2 at 0.001; the schedule kept)
    assert '(epoch 1, lr 0.01)' in first.stdout and '(epoch 2, lr 0.001)' in second.stdout
    assert list_epochs(prefix) == [1, 2]
    det = RetinaFace(prefix, 2, ctx_id=-1)
    faces, landmarks = det.detect(np.zeros((96, 128, 3), np.uint8), threshold=0.0)
    assert faces.shape[1] == 5 and landmarks.shape[1:] == (5, 2) and len(faces) > 0


def test_nan_loss_stops_with_message(tiny_set, tmp_path):
    prefix = str(tmp_path / 'nan')
    res = run_train(quick_args(tiny_set, prefix, '--end_epoch', 1, '--lr', 1e30))
    assert res.returncode == 3
    assert 'loss became non-finite' in res.stdout and 'no checkpoint was written' in res.stdout


def test_bad_label_line_is_reported(tmp_path):
    root = tmp_path
    generate(str(root / 'retinaface'), train=2, val=1, seed=1)
    label = root / 'retinaface' / 'train' / 'label.txt'
    lines = label.read_text().splitlines()
    lines.insert(1, '1 2 three 4')
    label.write_text('\n'.join(lines) + '\n')
    res = run_train(quick_args(root, str(tmp_path / 'bad'), '--end_epoch', 1))
    assert res.returncode == 2 and 'label.txt:2: not a list of numbers' in res.stdout
    assert 'Traceback' not in res.stdout + res.stderr


def test_distributed_parameter_server_two_workers(tiny_set, tmp_path):
    """1 scheduler + 1 server + 2 workers on 127.0.0.1 (MXNet's launcher): both end with the same weights."""
    prefix = str(tmp_path / 'dist')
    cmd = [sys.executable, '-m', 'rcnn.core.launch', '-n', '2', '-s', '1', '--launcher', 'local',
           sys.executable, os.path.join(ROOT, 'train.py')] + \
        [str(a) for a in quick_args(tiny_set, prefix, '--end_epoch', 1, '--kvstore', 'dist_sync', '--max_batches', 2)]
    res = run_job(cmd, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    a = mx.nd.load(prefix + '-0001.params')
    b = mx.nd.load(prefix + '.rank1-0001.params')
    args = [k for k in a if k.startswith('arg:')]
    assert len(args) == 179 and set(args) <= set(b)
    for k in args:
        np.testing.assert_array_equal(a[k].asnumpy(), b[k].asnumpy(), err_msg=k)
    init = mx.init.Normal(0.01)  # weights moved away from their initial values: real updates happened
    assert np.abs(a['arg:face_rpn_cls_score_stride8_bias'].asnumpy()).sum() > 0
    del init


def test_finetune_published_mnet25_on_real_wider(tmp_path):
    """A few iterations on real WIDER train images (landmarks missing) from the published model."""
    data = shared_path('widerface', 'retinaface', 'train', 'label.txt')
    model = shared_path('models', 'mnet.25-0000.params')
    prefix = str(tmp_path / 'ft')
    res = run_train(['--network', 'mnet', '--dataset_path', os.path.dirname(os.path.dirname(data)),
                     '--root_path', tmp_path, '--prefix', prefix, '--pretrained', model[:-len('-0000.params')],
                     '--pretrained_epoch', 0, '--image_size', 320, '--batch_images', 4, '--lr', 0.001,
                     '--lr_step', '10', '--end_epoch', 1, '--max_batches', 12, '--frequent', 4, '--workers', 1,
                     '--seed', 1], timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    losses = []
    for line in res.stdout.splitlines():
        if 'Speed:' in line:
            vals = dict(kv.split('=') for kv in line.split('\t') if '=' in kv)
            losses.append(np.mean([float(vals['RPNL1Loss_s%d' % s]) for s in (32, 16, 8)]
                                  + [float(vals['RPNLogLoss_s%d' % s]) for s in (32, 16, 8)]))
    assert len(losses) >= 2 and all(np.isfinite(losses))
    det = RetinaFace(prefix, 1, ctx_id=-1)
    img = cv2.imread(shared_path('images', 't1.jpg'))
    faces, _ = det.detect(img, 0.8, scales=[1024 / 886])
    assert len(faces) >= 4  # still finds the faces the published model finds (6)


def test_published_recipe_log_names(tmp_path):
    """Training from the ImageNet MobileNet0.25 backbone prints the metric names of the published log."""
    backbone = shared_path('models', 'mobilenet_0_25-0000.params')[:-len('-0000.params')]
    log = open(shared_path('reference', 'mnet25_train.log')).read()
    ref_line = next(line for line in log.splitlines() if 'Speed:' in line)
    ref_names = [kv.split('=')[0] for kv in ref_line.split('\t') if '=' in kv]
    root = tmp_path
    generate(str(root / 'retinaface'), train=6, val=1, seed=2)
    res = run_train(['--network', 'mnet', '--dataset_path', root / 'retinaface', '--root_path', root,
                     '--prefix', str(tmp_path / 'pub'), '--pretrained', backbone, '--image_size', 160,
                     '--batch_images', 2, '--end_epoch', 1, '--max_batches', 2, '--frequent', 1, '--workers', 0])
    assert res.returncode == 0, res.stdout[-3000:]
    assert 'backbone from %s-0000.params' % backbone in res.stdout
    line = next(line for line in res.stdout.splitlines() if 'Speed:' in line)
    names = [kv.split('=')[0] for kv in line.split('\t') if '=' in kv]
    assert [n for n in names if not n.startswith('RPNLogLoss')] == ref_names


def test_losses_fall_on_a_fixed_real_batch():
    """The training graph from the published weights, repeated SGD steps on one batch of real WIDER crops
    (landmarks missing): the OHEM classification and box losses fall."""
    from rcnn.config import get_config
    from rcnn.core.loader import CropLoader
    from rcnn.core.metric import get_metrics
    from rcnn.dataset.retinaface import RetinaFaceDataset
    from rcnn.symbol import get_symbol
    from rcnn.symbol.common import label_names
    data = os.path.dirname(os.path.dirname(shared_path('widerface', 'retinaface', 'train', 'label.txt')))
    _, arg, aux = mx.model.load_checkpoint(shared_path('models', 'mnet.25-0000.params')[:-len('-0000.params')], 0)
    cfg = get_config('mnet', IMAGE_SIZE=320, TRAIN__BATCH_IMAGES=4, DCN_PORTABLE=True)
    import tempfile
    with tempfile.TemporaryDirectory() as cache:
        roidb = RetinaFaceDataset('train', cache, data).gt_roidb()[:8]
    assert all((r['landmarks'][:, :, 2] == -1).all() for r in roidb)  # landmarks marked missing
    loader = CropLoader(roidb, cfg, 4, workers=0, seed=5)
    batch = loader.next()
    assert sum((lab.asnumpy() == 1).sum() for lab, d in zip(batch.label, loader.provide_label)
               if 'label' in d.name) > 0
    sym = get_symbol('mnet', 'train', cfg)
    mod = mx.mod.Module(sym, data_names=['data'], label_names=label_names(cfg.RPN_FEAT_STRIDE), context=mx.cpu())
    mod.bind(loader.provide_data, loader.provide_label)
    mod.init_params(mx.init.Xavier(), arg_params=arg, aux_params=aux, allow_missing=True)
    mod.init_optimizer(optimizer='sgd', optimizer_params={'learning_rate': 0.01, 'momentum': 0.9})
    metric = get_metrics(sym.list_outputs(), cfg.RPN_FEAT_STRIDE)
    losses = []
    for _ in range(12):
        metric.reset()
        mod.forward_backward(batch)
        mod.update_metric(metric, batch.label)
        mod.update()
        values = dict(zip(*metric.get()))
        # a stride without positive anchors in this batch has no box loss to average (NaN): leave it out
        losses.append(sum(values['RPNLogLoss_s%d' % s] for s in (32, 16, 8)) +
                      np.nansum([values['RPNL1Loss_s%d' % s] for s in (32, 16, 8)]))
        assert values['RPNLandMarkL1Loss_s8'] == 0.0  # no landmark weight anywhere: no loss, and never NaN
    assert np.all(np.isfinite(losses)) and np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3])


def test_missing_pretrained_backbone_is_explained(tiny_set, tmp_path):
    args = quick_args(tiny_set, str(tmp_path / 'x'), '--end_epoch', 1)
    args[args.index('--pretrained') + 1] = str(tmp_path / 'resnet-50')
    res = run_train(args)
    assert res.returncode == 2
    assert '%s-0000.params not found' % (tmp_path / 'resnet-50') in res.stdout
    assert '--pretrained none' in res.stdout and 'Traceback' not in res.stdout + res.stderr
    assert sorted(os.listdir(tmp_path)) == []  # refused before anything is written: no lock, no log, no config


def params_of(path):
    return {k: v.asnumpy() for k, v in mx.nd.load(path).items()}


def whole_and_resumed(root, tmp_path, *extra, env=None):
    """Two epochs in one run, and one epoch + --resume: checks that both end with the same weights and
    returns the stdout of the two-epoch run and of the resumed run."""
    whole, split = str(tmp_path / 'whole'), str(tmp_path / 'split')
    res = run_train(quick_args(root, whole, '--end_epoch', 2, *extra), env=env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    first = run_train(quick_args(root, split, '--end_epoch', 1, *extra), env=env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert os.path.isfile(split + '-0001.states.npz')
    resumed = run_train(quick_args(root, split, '--end_epoch', 2, '--resume', *extra), env=env)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert 'restored from %s-0001.states.npz' % split in resumed.stdout
    a, b = params_of(whole + '-0002.params'), params_of(split + '-0002.params')
    assert set(a) == set(b)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6, err_msg=k)
    return res.stdout, resumed.stdout


def test_resume_restores_momentum(tiny_set, tmp_path):
    """Two epochs in one run and one epoch + --resume end with the same weights: the SGD momentum is saved
    with each checkpoint (<prefix>-NNNN.states.npz) and restored."""
    whole_and_resumed(tiny_set, tmp_path, '--lr_step', '5')


def test_box_only_model_trains_and_detects(tiny_set, tmp_path):
    prefix = str(tmp_path / 'boxes')
    res = run_train(quick_args(tiny_set, prefix, '--end_epoch', 1, '--no_landmarks'))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert 'RPNLandMarkL1Loss' not in res.stdout and 'RPNL1Loss_s8=' in res.stdout
    sym = mx.sym.load(prefix + '-symbol.json')
    assert len(sym.list_outputs()) == 6 and not [n for n in sym.list_arguments() if 'landmark' in n]
    faces, landmarks = RetinaFace(prefix, 1, ctx_id=-1).detect(np.zeros((96, 128, 3), np.uint8), threshold=0.0)
    assert faces.shape[1] == 5 and len(faces) > 0 and landmarks is None


def test_unknown_ohem_mode_is_refused():
    from rcnn.config import get_config
    from rcnn.symbol import get_symbol
    with pytest.raises(ValueError, match='OHEM_MODE must be one of 0 .random sample., 1 .hardest examples., got 2'):
        get_symbol('mnet', 'train', get_config('mnet', TRAIN__OHEM_MODE=2))


def test_landmark_metric_ignores_batches_without_landmark_targets():
    from rcnn.core.metric import RPNRegressionMetric
    names = ['loss_output', 'weight_output']
    m = RPNRegressionMetric('RPNLandMarkL1Loss_s8', 'loss', 'weight', 10, names)
    m.update(None, [mx.nd.zeros((1, 20, 4)), mx.nd.zeros((1, 20, 4))])   # no landmark positives
    assert m.get() == ('RPNLandMarkL1Loss_s8', 0.0)
    w = np.zeros((1, 20, 4), np.float32)
    w[0, :10, 0] = 1  # one anchor, 10 values
    m.update(None, [mx.nd.full((1, 20, 4), 0.5) * mx.nd.array(w), mx.nd.array(w)])
    m.update(None, [mx.nd.zeros((1, 20, 4)), mx.nd.zeros((1, 20, 4))])
    assert m.get() == ('RPNLandMarkL1Loss_s8', 5.0)   # 10 x 0.5 summed per anchor, over the one anchor


def test_shards_are_equal():
    from rcnn.tools.train import shard
    roidb = list(range(801))
    parts = [shard(roidb, r, 3) for r in range(3)]
    assert [len(p) for p in parts] == [267, 267, 267] and not set(parts[0]) & set(parts[1])


def test_distributed_uneven_shards_finish(tmp_path):
    """13 images, no flips, 2 workers, 1 image per batch: 7 and 6 samples before the fix (one worker waits
    forever for the other's 7th push); now both run 6 batches and finish."""
    generate(str(tmp_path / 'retinaface'), train=13, val=1, seed=4)
    prefix = str(tmp_path / 'dist')
    args = quick_args(tmp_path, prefix, '--end_epoch', 1, '--kvstore', 'dist_sync', '--no_flip', '--batch_images', 1)
    i = args.index('--max_batches')
    del args[i:i + 2]  # whole epochs: the shard sizes decide the batch counts
    cmd = [sys.executable, '-m', 'rcnn.core.launch', '-n', '2', '-s', '1', '--launcher', 'local',
           sys.executable, os.path.join(ROOT, 'train.py')] + [str(a) for a in args]
    res = run_job(cmd, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert res.stdout.count('6 samples (1 of 13 left out so that every worker has as many)') == 2
    assert os.path.isfile(prefix + '-0001.params') and os.path.isfile(prefix + '.rank1-0001.params')


def test_bare_test_py_evaluates_what_train_py_wrote(tmp_path):
    """`python train.py` then `python test.py` with their defaults, in a project folder (model/, data/)."""
    env = dict({k: v for k, v in os.environ.items() if k not in ('MXNET_ENGINE_TYPE', 'OMP_NUM_THREADS')},
               PYTHONPATH=ROOT)
    res = subprocess.run([sys.executable, os.path.join(ROOT, 'test.py')], capture_output=True, text=True,
                         cwd=str(tmp_path), env=env, timeout=300)
    assert res.returncode == 2 and 'Traceback' not in res.stderr
    assert 'no checkpoint model/retinaface-NNNN.params' in res.stdout
    assert '--prefix model/mnet.25 --epoch 0' in res.stdout
    generate(str(tmp_path / 'data' / 'retinaface'), train=4, val=2, seed=6)
    res = subprocess.run([sys.executable, os.path.join(ROOT, 'train.py'), '--network', 'mnet', '--pretrained', 'none',
                          '--image_size', '128', '--batch_images', '2', '--lr_step', '2', '--max_batches', '1'],
                         capture_output=True, text=True, cwd=str(tmp_path), env=env, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    # the CPU defaults (README "Choosing the CPU defaults"): the calling-thread engine, every core computing
    # and one data worker
    assert ('devices: CPU, kvstore local; engine NaiveEngine, %d compute thread(s), 1 data worker(s)'
            % physical_cores()) in res.stdout
    assert list_epochs(str(tmp_path / 'model' / 'retinaface')) == [1, 2]
    res = subprocess.run([sys.executable, os.path.join(ROOT, 'test.py'), '--mode', '0', '--scales', '0.5'],
                         capture_output=True, text=True, cwd=str(tmp_path), env=env, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert 'evaluating model/retinaface-0002.params (the newest checkpoint of model/retinaface)' in res.stdout
    assert 'retinaface mode 0 (label.txt ground truth): 2 images' in res.stdout


def test_momentum_survives_a_change_of_context_count(tiny_set, tmp_path):
    """One epoch on 2 CPU contexts, then --resume on one with a rate too small to matter (1e-12): by SGD's
    definition (mom = 0.9 mom - lr g; w += mom) each weight then moves by exactly m1 (0.9 + 0.81 + ...) over
    the k steps, m1 the momentum saved with epoch 1. (Before: the states were keyed by index on one path and by
    name on the other, the log said "restored" and the weights did not move.)"""
    from rcnn.core.checkpoint import read_momentum
    prefix = str(tmp_path / 'ctx')
    first = run_train(quick_args(tiny_set, prefix, '--end_epoch', 1, '--cpus', 2, '--batch_images', 1))
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    momentum = read_momentum(prefix + '-0001.states.npz')
    resumed = run_train(quick_args(tiny_set, prefix, '--end_epoch', 2, '--resume', '--lr', 1e-12))
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    steps = 3  # --max_batches 3
    w1, w2 = params_of(prefix + '-0001.params'), params_of(prefix + '-0002.params')
    moved = [k for k in momentum if 'arg:' + k in w1 and np.abs(momentum[k]).max() > 1e-4]
    assert len(moved) > 50
    factor = sum(0.9 ** j for j in range(1, steps + 1))
    for k in moved:
        np.testing.assert_allclose(w2['arg:' + k] - w1['arg:' + k], factor * momentum[k], rtol=1e-3,
                                   atol=1e-6 * np.abs(w1['arg:' + k]).max() + 1e-7, err_msg=k)
    nxt = read_momentum(prefix + '-0002.states.npz')
    assert set(nxt) == set(momentum)  # one set, by name


def test_resume_never_unpickles_an_old_states_file(tiny_set, tmp_path):
    """A planted <prefix>-0001.states (the pickle of earlier versions) with a payload: --resume refuses with
    one sentence and the payload never runs; with --fresh_momentum it continues from the params."""
    import pickle
    prefix = str(tmp_path / 'p')
    first = run_train(quick_args(tiny_set, prefix, '--end_epoch', 1))
    assert first.returncode == 0, first.stdout[-3000:]
    os.remove(prefix + '-0001.states.npz')
    marker = tmp_path / 'payload_ran'

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), 'w'))
    with open(prefix + '-0001.states', 'wb') as f:
        pickle.dump(Payload(), f)
    before = sorted(os.listdir(tmp_path))
    config = open(prefix + '-config.json').read()
    res = run_train(quick_args(tiny_set, prefix, '--end_epoch', 2, '--resume'))
    assert res.returncode == 2 and not marker.exists()
    assert 'pickle format of earlier versions' in res.stdout and '--fresh_momentum' in res.stdout
    assert 'Traceback' not in res.stdout + res.stderr
    assert sorted(os.listdir(tmp_path)) == before and open(prefix + '-config.json').read() == config
    res = run_train(quick_args(tiny_set, prefix, '--end_epoch', 2, '--resume', '--fresh_momentum'))
    assert res.returncode == 0, res.stdout[-3000:]
    assert not marker.exists() and os.path.isfile(prefix + '-0002.params')
    # a truncated .npz is named, never a traceback
    with open(prefix + '-0002.states.npz', 'r+b') as f:
        f.truncate(100)
    res = run_train(quick_args(tiny_set, prefix, '--end_epoch', 3, '--resume'))
    assert res.returncode == 2 and 'cannot read optimizer state %s-0002.states.npz' % prefix in res.stdout
    assert 'Traceback' not in res.stdout + res.stderr


@pytest.mark.parametrize('first,then,what', [
    (['--anchors', 'net4a'], ['--anchors', 'net3a'], 'ANCHOR_NETWORK'),
    ([], ['--no_landmarks'], 'FACE_LANDMARK'),
    ([], ['--network', 'resnet'], 'NETWORK'),
])
def test_resume_refuses_another_setup_before_writing(tiny_set, tmp_path, first, then, what):
    prefix = str(tmp_path / 'r')
    res = run_train(quick_args(tiny_set, prefix, '--end_epoch', 1, *first))
    assert res.returncode == 0, res.stdout[-3000:]
    files = {p: open(os.path.join(tmp_path, p), 'rb').read() for p in os.listdir(tmp_path) if p.startswith('r-')
             and not p.endswith('.log')}
    res = run_train(quick_args(tiny_set, prefix, '--end_epoch', 2, '--resume', *first, *then))
    assert res.returncode == 2, res.stdout[-3000:]
    assert '--resume: %s was trained with %s=' % (prefix, what) in res.stdout and 'nothing was changed' in res.stdout
    assert 'Traceback' not in res.stdout + res.stderr
    after = {p: open(os.path.join(tmp_path, p), 'rb').read() for p in files}
    assert after == files and not os.path.exists(prefix + '-0002.params')


def test_kvstore_flag_is_checked(tiny_set, tmp_path):
    res = run_train(quick_args(tiny_set, str(tmp_path / 'k'), '--end_epoch', 1, '--kvstore', 'bogus'))
    assert res.returncode == 2 and "invalid choice: 'bogus'" in res.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith('DMLC_')}
    res = subprocess.run([sys.executable, os.path.join(ROOT, 'train.py')] + [str(a) for a in quick_args(
        tiny_set, str(tmp_path / 'k'), '--end_epoch', 1, '--kvstore', 'dist_sync')], capture_output=True, text=True,
        cwd=ROOT, env=env, timeout=300)
    assert res.returncode == 2 and 'python -m rcnn.core.launch' in res.stderr and 'Traceback' not in res.stderr


def test_memory_the_batches_cannot_have_is_refused_up_front(tiny_set, tmp_path):
    """--image_size 65536 (51 GB of crops), batches that do not fit in memory, --workers beyond reason: one
    sentence each, before any allocation."""
    res = run_train(quick_args(tiny_set, str(tmp_path / 'big'), '--end_epoch', 1, '--image_size', 65536))
    assert res.returncode == 2 and 'training crops are at most 4096 px' in res.stderr
    res = run_train(quick_args(tiny_set, str(tmp_path / 'big'), '--end_epoch', 1, '--image_size', 4096,
                               '--batch_images', 12, '--workers', 4))  # 10 slots of 2.4 GB
    assert res.returncode == 2 and 'the batch slots need' in res.stdout and 'GB are available' in res.stdout
    assert 'Traceback' not in res.stdout + res.stderr and 'MemoryError' not in res.stdout + res.stderr
    res = run_train(quick_args(tiny_set, str(tmp_path / 'many'), '--end_epoch', 1, '--workers', 1000))
    assert res.returncode == 2 and 'more data workers than twice the' in res.stderr


@pytest.mark.parametrize('flags,env', [([], {'CUDA_VISIBLE_DEVICES': '0'}), ([], {'CUDA_VISIBLE_DEVICES': '-1'}),
                                       (['--gpus', '-1'], {})])
def test_gpu_variable_or_minus_one_on_the_cpu_build_trains_on_the_cpu(tiny_set, tmp_path, flags, env):
    """CUDA_VISIBLE_DEVICES set on a machine with the CPU build, or -1 (no GPU): the CPU, said once (before: an
    error telling to pass --gpus -1, itself refused with the same hint)."""
    res = run_train(quick_args(tiny_set, str(tmp_path / 'c'), '--end_epoch', 1, *flags), env=env)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert 'devices: CPU, kvstore local' in res.stdout
    assert ('this MXNet is a CPU build: training on the CPU' in res.stdout) == (env.get('CUDA_VISIBLE_DEVICES') == '0')
