"""Training as users run it: several devices (checked on CPU contexts) and every anchor preset."""
import os
import subprocess
import sys
import warnings

from rcnn.compat import mx
import numpy as np
import pytest

from conftest import ROOT
from rcnn.config import get_config
from rcnn.core.checkpoint import CheckpointError
from rcnn.core.loader import CropLoader
from rcnn.core.metric import get_metrics
from rcnn.cpu_engine import local_cpu_contexts, physical_cores
from rcnn.dataset.retinaface import RetinaFaceDataset
from rcnn.dataset.synthetic import generate
from rcnn.processing.anchors import TRAINABLE_PRESETS, anchor_config, generate_anchors
from rcnn.symbol import get_symbol
from rcnn.symbol.common import label_names
from retinaface import RetinaFace
from test_train import params_of, quick_args, run_job, run_train, whole_and_resumed

SIZE = 128


@pytest.fixture(scope='module')
def tiny_set(tmp_path_factory):
    root = tmp_path_factory.mktemp('multidevice')
    generate(str(root / 'retinaface'), train=12, val=4, seed=5)
    return root


def _batch(root, cfg, batch):
    roidb = RetinaFaceDataset('train', str(root), str(root / 'retinaface')).gt_roidb()
    loader = CropLoader(roidb, cfg, batch, shuffle=False, workers=0, seed=11)
    try:
        return loader, next(loader)
    finally:
        loader.close()


def _module(sym, cfg, ctxs, loader, batch):
    mod = mx.mod.Module(sym, data_names=['data'], label_names=label_names(cfg.RPN_FEAT_STRIDE), context=ctxs)
    shapes = [mx.io.DataDesc(d.name, (batch,) + tuple(d.shape[1:])) for d in loader.provide_data]
    labels = [mx.io.DataDesc(d.name, (batch,) + tuple(d.shape[1:])) for d in loader.provide_label]
    mod.bind(data_shapes=shapes, label_shapes=labels, for_training=True, grad_req='add' if len(ctxs) == 1 else 'write')
    return mod


def _slice(batch, lo, hi):
    return mx.io.DataBatch(data=[d[lo:hi] for d in batch.data], label=[lab[lo:hi] for lab in batch.label], pad=0)


def test_two_contexts_give_the_data_parallel_update(tiny_set):
    """2 CPU contexts x 4 images in one step == one context accumulating the same two halves of 4 and the same
    SGD step (rescale 1/2): the batch is split in order, each device normalises its own losses (OHEM per
    device, as the original), gradients are summed over devices and averaged by rescale_grad."""
    cfg = get_config('mnet', IMAGE_SIZE=SIZE, TRAIN__BATCH_IMAGES=4, DCN_PORTABLE=True)
    sym = get_symbol('mnet', 'train', cfg)
    loader, batch = _batch(tiny_set, cfg, 8)
    mx.random.seed(3)
    two = _module(sym, cfg, [mx.cpu(0), mx.cpu(1)], loader, 8)
    two.init_params(mx.init.Xavier())
    arg, aux = two.get_params()
    arg, aux = ({k: v.copy() for k, v in d.items()} for d in (arg, aux))  # get_params refreshes its dicts in place
    one = _module(sym, cfg, [mx.cpu(0)], loader, 4)
    one.init_params(arg_params=arg, aux_params=aux)
    warnings.filterwarnings('ignore', message='Optimizer created manually outside Module')
    for mod in (one, two):
        mod.init_optimizer(kvstore='local', optimizer=mx.optimizer.SGD(learning_rate=0.01, momentum=0.9, wd=5e-4,
                                                                       rescale_grad=0.5))
    two.forward_backward(batch)
    two.update()
    for lo in (0, 4):
        one.forward_backward(_slice(batch, lo, lo + 4))
    one.update()
    a, _ = one.get_params()
    b, _ = two.get_params()
    moved = 0
    for name in a:
        np.testing.assert_allclose(b[name].asnumpy(), a[name].asnumpy(), rtol=1e-4, atol=1e-6, err_msg=name)
        moved += not np.array_equal(a[name].asnumpy(), arg[name].asnumpy())
    assert moved > 100  # the step changed (nearly) every parameter


def test_metrics_are_summed_over_devices(tiny_set):
    cfg = get_config('mnet', IMAGE_SIZE=SIZE, TRAIN__BATCH_IMAGES=3, DCN_PORTABLE=True)
    sym = get_symbol('mnet', 'train', cfg)
    loader, batch = _batch(tiny_set, cfg, 6)
    mod = mx.mod.Module(sym, data_names=['data'], label_names=label_names(cfg.RPN_FEAT_STRIDE),
                        context=[mx.cpu(0), mx.cpu(1)])
    mod.bind(data_shapes=loader.provide_data, label_shapes=loader.provide_label, for_training=True)
    mod.init_params(mx.init.Xavier())
    mod.forward(batch, is_train=True)
    both = get_metrics(sym.list_outputs(), cfg.RPN_FEAT_STRIDE)
    mod.update_metric(both, batch.label)
    per_device = []
    for exe in mod._exec_group.execs:
        m = get_metrics(sym.list_outputs(), cfg.RPN_FEAT_STRIDE)
        m.update(None, exe.outputs)
        per_device.append({c.name: (c.sum_metric, c.num_inst) for c in m.metrics})
    for c in both.metrics:
        s0, n0 = per_device[0][c.name]
        s1, n1 = per_device[1][c.name]
        assert c.num_inst == pytest.approx(n0 + n1) and c.sum_metric == pytest.approx(s0 + s1, rel=1e-6), c.name
        if c.name.startswith(('RPNAcc', 'RPNLogLoss')):
            assert n0 > 0 and n1 > 0  # both devices contribute (OHEM keeps anchors on every image)
    assert sum(per_device[1][n][1] for n in per_device[1] if n.startswith('RPNL1Loss')) > 0  # positives on device 1


def test_two_context_run_trains_checkpoints_and_resumes(tiny_set, tmp_path):
    """Under the threaded engine two CPU contexts run concurrently and their float results are not
    reproducible bit for bit from run to run; the comparison runs on the calling-thread engine (the same
    operators in a fixed order), where two identical runs agree and resume must agree with them."""
    whole, _ = whole_and_resumed(tiny_set, tmp_path, '--cpus', 2, '--lr_step', '5',
                                 env={'MXNET_ENGINE_TYPE': 'NaiveEngine'})
    assert 'devices: 2 CPU contexts' in whole and '4 per batch' in whole  # 2 per context x 2


@pytest.mark.parametrize('argv, environ, expected', [
    ([], {}, 1),
    (['--network', 'mnet', '--cpus', '1'], {}, 1),
    (['--kvstore', 'local'], {}, 1),
    (['--cpus', '2'], {}, 2),
    (['--cpus=4'], {}, 4),
    (['--gpus', '0,1'], {}, 0),
    ([], {'CUDA_VISIBLE_DEVICES': '0'}, 1),  # the CPU build: a GPU variable does not make a GPU
    ([], {'CUDA_VISIBLE_DEVICES': '-1'}, 1),
    (['--gpus', '-1'], {}, 1),
    (['--kvstore', 'dist_sync', '--cpus', '2'], {}, 0),
    ([], {'DMLC_ROLE': 'server'}, 0),  # a process of a distributed job
    (['--cpus', 'two'], {}, 0),  # left to train.py's parser, which reports it
])
def test_local_cpu_contexts_from_train_arguments(argv, environ, expected):
    assert local_cpu_contexts(argv, environ) == expected


@pytest.mark.parametrize('argv, environ, expected', [
    ([], {}, ('NaiveEngine', 'cores')),  # one context: the calling thread, every core
    (['--cpus', '2'], {}, (None, 'cores/2')),  # two contexts: two engine workers run them concurrently
    ([], {'OMP_NUM_THREADS': '3', 'MXNET_ENGINE_TYPE': 'ThreadedEngine'}, ('ThreadedEngine', '3')),  # the user's
    (['--gpus', '0'], {}, None),
])
def test_training_defaults_are_set_before_mxnet_loads(argv, environ, expected):
    """In a fresh interpreter (the settings only count before MXNet loads): MXNet's x86 build would compute on
    half the cores, so train.py's CPU defaults set OMP_NUM_THREADS to the cores per context."""
    env = {k: v for k, v in os.environ.items() if k not in ('OMP_NUM_THREADS', 'MXNET_ENGINE_TYPE',
                                                             'MXNET_OMP_MAX_THREADS', 'CUDA_VISIBLE_DEVICES',
                                                             'MXNET_CPU_WORKER_NTHREADS')}
    env.update(environ, PYTHONPATH=ROOT)
    code = ('import os, sys; from rcnn.cpu_engine import prefer_training_defaults as p; print(p(sys.argv[1:])); '
            'print(os.environ.get("MXNET_CPU_WORKER_NTHREADS"))')
    res = subprocess.run([sys.executable, '-c', code] + argv, capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 0, res.stderr
    if expected is not None:
        threads = {'cores': str(physical_cores()), 'cores/2': str(max(1, physical_cores() // 2))}
        expected = (expected[0], threads.get(expected[1], expected[1]))
    result, engine_workers = res.stdout.split('\n')[:2]
    assert result == repr(expected)
    assert engine_workers == ('2' if argv == ['--cpus', '2'] else 'None')


def one_process_reference(root, start, workers, contexts, batch_images, steps, lr, seed=0):
    """The definition of a dist_sync step: the same training in one process on the union of the shards, one
    CPU context per worker's context (each holding that worker's images of the step, so BatchNorm sees the
    same images), gradients summed over all of them and averaged (rescale 1 / devices), SGD with the recipe's
    momentum, decay, schedule and frozen stem. Returns the trained arg params (numpy)."""
    from rcnn.core.checkpoint import load_params
    from rcnn.core.freeze import STEM_PARAMS, freeze_plan
    from rcnn.core.schedule import RetinaFaceScheduler
    from rcnn.dataset.retinaface import flip_roidb
    from rcnn.tools.train import shard
    cfg = get_config('mnet', IMAGE_SIZE=SIZE, TRAIN__BATCH_IMAGES=batch_images, DCN_PORTABLE=True)
    roidb = RetinaFaceDataset('train', str(root), str(root / 'retinaface')).gt_roidb()
    roidb = roidb + flip_roidb(roidb)
    loaders = [CropLoader(shard(roidb, r, workers), cfg, batch_images * contexts, workers=0, seed=seed + 7919 * r)
               for r in range(workers)]
    try:
        for loader in loaders:
            loader.max_batches = steps
            loader.reset_epoch(0)
        batches = [[next(loader) for _ in range(steps)] for loader in loaders]
        provide_data = [mx.io.DataDesc(d.name, (d.shape[0] * workers,) + tuple(d.shape[1:]))
                        for d in loaders[0].provide_data]
        provide_label = [mx.io.DataDesc(d.name, (d.shape[0] * workers,) + tuple(d.shape[1:]))
                         for d in loaders[0].provide_label]
        iters = loaders[0].batches_per_epoch
    finally:
        for loader in loaders:
            loader.close()
    sym = get_symbol('mnet', 'train', cfg)
    arg, aux = load_params(start)
    frozen = [n for n in STEM_PARAMS['mnet'] if n in arg]
    fixed, zero_lr = freeze_plan(sym, frozen)
    mod = mx.mod.Module(sym, data_names=['data'], label_names=label_names(cfg.RPN_FEAT_STRIDE),
                        context=[mx.cpu(i) for i in range(workers * contexts)], fixed_param_names=fixed)
    mod.bind(provide_data, provide_label)
    mod.init_params(arg_params=arg, aux_params=aux, allow_missing=False)
    opt = mx.optimizer.SGD(learning_rate=lr, momentum=0.9, wd=5e-4, rescale_grad=1.0 / (workers * contexts),
                           lr_scheduler=RetinaFaceScheduler(lr, [100], iters))
    opt.set_lr_mult({n: 0.0 for n in zero_lr})
    opt.set_wd_mult({n: 0.0 for n in zero_lr})
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        mod.init_optimizer(kvstore='local', optimizer=opt)
    for k in range(steps):
        union = mx.io.DataBatch(
            data=[mx.nd.concat(*[b[k].data[i] for b in batches], dim=0) for i in range(len(provide_data))],
            label=[mx.nd.concat(*[b[k].label[i] for b in batches], dim=0) for i in range(len(provide_label))])
        mod.forward_backward(union)
        mod.update()
    mx.nd.waitall()
    return {k: v.asnumpy() for k, v in mod.get_params()[0].items()}


@pytest.mark.parametrize('contexts', [1, 2])
def test_dist_sync_equals_the_same_training_in_one_process(tiny_set, tmp_path, contexts):
    """2 workers x `contexts` CPU contexts, --kvstore dist_sync through rcnn.core.launch, 2 steps at lr 0.01 from
    a common checkpoint: the weights rank 0 saves are those of one_process_reference (before: the server could
    not unpickle the optimizer and stored the summed gradients as the weights; the old test only compared the
    two workers with each other)."""
    start = str(tmp_path / 'start')
    res = run_train(quick_args(tiny_set, start, '--end_epoch', 1))
    assert res.returncode == 0, res.stdout[-3000:]
    prefix = str(tmp_path / 'dist')
    cmd = [sys.executable, '-m', 'rcnn.core.launch', '-n', '2', '-s', '1', '--launcher', 'local',
           sys.executable, os.path.join(ROOT, 'train.py')] + \
        [str(a) for a in quick_args(tiny_set, prefix, '--end_epoch', 1, '--kvstore', 'dist_sync', '--cpus', contexts,
                                    '--max_batches', 2, '--batch_images', 2, '--pretrained', start,
                                    '--pretrained_epoch', 1, '--lr_step', 100)]
    res = run_job(cmd, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert 'pickle.loads' not in res.stderr and 'lr_scheduler' not in res.stderr, res.stderr[-2000:]
    # a distributed job keeps the threaded engine (its kvstore server works on engine threads)
    assert 'kvstore dist_sync (worker 0 of 2); engine ThreadedEnginePerDevice' in res.stdout + res.stderr
    want = one_process_reference(tiny_set, start + '-0001.params', 2, contexts, 2, 2, 0.01)
    got = params_of(prefix + '-0001.params')
    first = params_of(start + '-0001.params')
    names = [k[4:] for k in got if k.startswith('arg:')]
    assert len(names) > 100
    moved = 0
    for name in names:
        step = np.abs(want[name] - first['arg:' + name]).max()
        # float summation order differs (engine threads, server): allow 1% of the tensor's largest update
        assert np.abs(got['arg:' + name] - want[name]).max() <= 1e-2 * step + 1e-6, name
        moved += step > 0
    assert moved > 100  # the steps did move the weights: the equality is not that of an idle run


def test_net5_anchors_hand_computed():
    cfg = anchor_config('net5')
    assert cfg['strides'] == (64, 32, 16, 8, 4) and cfg['num_anchors'] == 3
    sides = {s: generate_anchors(16, (1.0,), cfg['anchor_cfg'][s]['SCALES']) for s in cfg['strides']}
    width = {s: a[:, 2] - a[:, 0] + 1 for s, a in sides.items()}
    # 16 px base window x 2^(k/3), k = 0..14 over the five levels (widths are not rounded: scales multiply w)
    np.testing.assert_allclose(width[4], [16.0, 16 * 2 ** (1 / 3), 16 * 2 ** (2 / 3)], rtol=1e-6)
    np.testing.assert_allclose(width[4], [16.0, 20.1587, 25.3984], atol=1e-3)
    np.testing.assert_allclose(width[64], [256.0, 322.5397, 406.3747], atol=1e-3)
    for a in sides.values():  # all centred on the base cell centre (7.5, 7.5)
        np.testing.assert_allclose((a[:, 0] + a[:, 2]) / 2, 7.5, atol=1e-5)


@pytest.mark.parametrize('network', ['mnet', 'resnet'])
@pytest.mark.parametrize('preset', TRAINABLE_PRESETS)
def test_every_preset_forward_backward(network, preset):
    cfg = get_config(network, IMAGE_SIZE=SIZE, ANCHOR_NETWORK=preset, TRAIN__BATCH_IMAGES=1, DCN_PORTABLE=True)
    sym = get_symbol(network, 'train', cfg)
    strides = anchor_config(preset)['strides']
    assert cfg.RPN_FEAT_STRIDE == strides
    names = sym.list_outputs()
    assert [n for n in names if n.startswith('face_rpn_cls_prob_stride')] == \
        ['face_rpn_cls_prob_stride%d_output' % s for s in strides]  # order 64, 32, 16, 8, 4 for net5
    shapes = {'data': (1, 3, SIZE, SIZE)}
    A = cfg.NUM_ANCHORS
    for s in strides:
        hw = (SIZE // s) ** 2
        shapes.update({'face_label_stride%d' % s: (1, A * hw), 'face_bbox_target_stride%d' % s: (1, 4 * A, hw),
                       'face_bbox_weight_stride%d' % s: (1, 4 * A, hw),
                       'face_landmark_target_stride%d' % s: (1, 10 * A, hw),
                       'face_landmark_weight_stride%d' % s: (1, 10 * A, hw)})
    exe = sym.simple_bind(mx.cpu(), grad_req='write', **shapes)
    rng = np.random.RandomState(0)
    for name, arr in exe.arg_dict.items():
        if name.startswith('face_label'):
            arr[:] = rng.randint(0, 2, arr.shape)
        elif name.endswith('_weight') and name.startswith('face_'):
            arr[:] = 1
        elif name != 'data':
            arr[:] = rng.normal(0, 0.05, arr.shape)
    exe.arg_dict['data'][:] = rng.uniform(0, 255, shapes['data'])
    exe.forward(is_train=True)
    exe.backward()
    for s in strides:  # every level's head gets a gradient
        grad = exe.grad_dict['face_rpn_cls_score_stride%d_weight' % s].asnumpy()
        assert np.isfinite(grad).all() and np.abs(grad).sum() > 0, (preset, s)
    test = get_symbol(network, 'test', cfg)
    _, outs, _ = test.infer_shape(data=(1, 3, 96, 160))  # odd sizes: Crop absorbs them on every level
    assert len(outs) == 3 * len(strides)


def test_net5_model_trains_and_is_decoded_only_with_its_preset(tiny_set, tmp_path):
    prefix = str(tmp_path / 'five')
    res = run_train(quick_args(tiny_set, prefix, '--end_epoch', 1, '--anchors', 'net5'))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    for name in ('RPNAcc_s64=', 'RPNAcc_s4=', 'RPNL1Loss_s64=', 'RPNLandMarkL1Loss_s4=', '--network net5'):
        assert name in res.stdout, name
    det = RetinaFace(prefix, 1, ctx_id=-1, network='net5')
    faces, landmarks = det.detect(np.zeros((96, 128, 3), np.uint8), threshold=0.0)
    assert faces.shape[1] == 5 and landmarks.shape[1:] == (5, 2) and len(faces) > 0
    for other in ('net3', 'net5a', 'net4'):
        with pytest.raises(CheckpointError, match="trained with the anchor preset 'net5', not network='%s'" % other):
            RetinaFace(prefix, 1, ctx_id=-1, network=other)
    bad = run_train(quick_args(tiny_set, prefix, '--end_epoch', 2, '--resume', '--anchors', 'net3'))
    assert bad.returncode == 2 and 'was trained with ANCHOR_NETWORK=net5, this run asks for net3' in bad.stdout, \
        bad.stdout[-2000:]


def test_levels_coarser_than_32_are_their_laterals():
    """net6 as the original: P128 and P64 are plain laterals (no stride-64 aggregation conv fed by stride 128);
    the top-down merges start at stride 32. net5 is unchanged (its stride 64 is the coarsest)."""
    for preset, coarse in (('net6', (128, 64)), ('net5', (64,))):
        cfg = get_config('mnet', IMAGE_SIZE=256, ANCHOR_NETWORK=preset, DCN_PORTABLE=True)
        names = get_symbol('mnet', 'test', cfg).list_arguments()
        for s in coarse:
            k = {4: 0, 8: 1, 16: 2, 32: 3, 64: 4, 128: 5}[s]
            assert not [n for n in names if n.startswith('rf_c%d_aggr' % k)], (preset, s)
            assert not [n for n in names if n.startswith('rf_c%d_up' % (k + 1))], (preset, s)
        assert [n for n in names if n.startswith('rf_c2_aggr')]  # stride 16 merges stride 32
