"""The training command line: arguments, config, data, initial weights; the loop is rcnn/core/engine.py.

Train RetinaFace (mnet or resnet) on a dataset in the RetinaFace layout.

    python train.py --network mnet --dataset retinaface --prefix model/retina --end_epoch 80
    python train.py --network resnet --pretrained model/resnet-50 --pretrained_epoch 0 --gpus 0,1,2,3
    python train.py --network mnet --anchors net5          # the paper's five levels, strides 64 to 4
    python train.py --network mnet --cpus 2                 # data parallel over 2 CPU contexts (the --gpus path)
    python -m rcnn.core.launch -n 2 -s 1 --launcher ssh -H hosts python train.py --kvstore dist_sync ...

One checkpoint per epoch, ``<prefix>-symbol.json`` (the 9-output test graph RetinaFace loads),
``<prefix>-<epoch>.params`` and the optimizer state ``<prefix>-<epoch>.states.npz`` (SGD momentum by parameter
name, plain arrays), written atomically; ``--resume`` continues from the newest one, momentum included, and
refuses a checkpoint of another --network, --anchors or landmark setting before anything is written.
"""
import argparse
import glob
import json
import logging
import math
import os
import random
import sys
import traceback

import numpy as np

from rcnn.compat import MXNetMissingError, mx

from rcnn.cli import HelpFormatter
from rcnn.config import get_config
from rcnn.core.checkpoint import (CheckpointError, PrefixLock, latest_epoch, legacy_states_path, list_epochs,
                                  load_checkpoint, load_params, read_momentum, remove_epochs, states_path)
from rcnn.core.device import DeviceError, check_gpus
from rcnn.core.engine import HELD_BATCHES, Run, train
from rcnn.core.freeze import STEM_PARAMS, freeze_plan
from rcnn.core.loader import CropLoader, LoaderMemoryError
from rcnn.core.schedule import parse_lr_steps
from rcnn.dataset.retinaface import AnnotationError, RetinaFaceDataset, flip_roidb
from rcnn.fileio import check_writable_dir, open_append, refuse_symlink
from rcnn.presets import TRAINABLE_PRESETS, anchor_config
from rcnn.symbol import get_backbone, get_symbol

logger = logging.getLogger('train')
DEFAULT_PREFIX = 'model/retinaface'  # the --prefix default here and in test.py


KVSTORES = ('device', 'local', 'dist_sync', 'dist_device_sync', 'dist_async')
_DIST_KVSTORES = []
MAX_IMAGE_SIZE = 4096


RECIPE_FLAGS = ('pretrained', 'lr', 'lr_step', 'batch_images')  # their defaults follow --network's recipe


def recipe_defaults(network, dataset='retinaface'):
    """{flag: default} of a network's recipe (rcnn/config.py)."""
    cfg = get_config(network, dataset)
    return {'pretrained': cfg.pretrained, 'lr': cfg.lr, 'lr_step': cfg.lr_step, 'batch_images': cfg.TRAIN.BATCH_IMAGES}


def parse_args(argv=None):
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument('--network', default='resnet')
    pre.add_argument('--dataset', default='retinaface')
    known, _ = pre.parse_known_args(argv)
    try:
        cfg = get_config(known.network, known.dataset)
    except ValueError as err:
        pre.error(str(err))
    recipes = {n: recipe_defaults(n, known.dataset) for n in ('mnet', 'resnet')}
    p = argparse.ArgumentParser(description='Train RetinaFace. The defaults of --pretrained, --lr, --lr_step and '
                                            '--batch_images follow --network (each flag lists both recipes).',
                                formatter_class=HelpFormatter)

    def add(name, **kw):
        p.add_argument('--' + name, *(['--' + name.replace('_', '-')] if '_' in name else []), **kw)

    def recipe(name, text):
        return '%s (default: %s)' % (text, '; '.join('%s %s' % (n, recipes[n][name]) for n in ('mnet', 'resnet')))

    add('network', default=known.network, choices=['mnet', 'resnet'], help='backbone, and with it the recipe')
    add('dataset', default=known.dataset, choices=['retinaface'], help='dataset layout')
    add('image_set', default=cfg.image_set, help='split folder to train on')
    add('root_path', default=cfg.root_path, help='parent of the roidb cache folder')
    add('dataset_path', default=cfg.dataset_path, help='folder with <split>/label.txt and <split>/images')
    add('prefix', default=DEFAULT_PREFIX, help='checkpoint prefix')
    add('pretrained', default=None,
        help=recipe('pretrained', "weights to start from: an ImageNet backbone prefix, or a whole detector to "
                                  "fine-tune (e.g. model/mnet.25); 'none' trains from scratch"))
    add('pretrained_epoch', type=int, default=cfg.pretrained_epoch, help='epoch of the --pretrained checkpoint')
    add('begin_epoch', type=int, default=0, help='first epoch (with --resume: taken from the checkpoint)')
    add('end_epoch', type=int, default=None, help='stop after this epoch (default: the last --lr_step)')
    add('lr', type=float, default=None, help=recipe('lr', 'base learning rate'))
    add('lr_step', default=None, help=recipe('lr_step', 'epochs where the learning rate changes'))
    add('wd', type=float, default=cfg.wd, help='weight decay')
    add('frequent', type=int, default=20, help='Speedometer period (batches)')
    add('kvstore', default=None, choices=KVSTORES,
        help='gradient aggregation (default: device on GPUs, local on the CPU); dist_* need the launcher: '
             'python -m rcnn.core.launch -n WORKERS -s SERVERS [--launcher local|ssh|mpi] python train.py ...')
    add('no_flip', action='store_true', help='no mirrored copies of the training images')
    add('no_shuffle', action='store_true', help='keep the label.txt order')
    add('gpus', default=None, help='comma-separated GPU ids (default: $CUDA_VISIBLE_DEVICES if set, else CPU)')
    add('cpus', type=int, default=0, help='N > 0: data parallel over N CPU contexts cpu(0)..cpu(N-1), the code '
                                          'path of --gpus with N GPUs (--batch_images per context)')
    add('anchors', default='net3', choices=TRAINABLE_PRESETS,
        help='anchor preset: net3 (strides 32-8, the published models), net4 (+ stride 4), net5 (the paper: '
             'strides 64-4, 3 anchors per cell), net6 (128-4); "a" variants add the 1.5 aspect ratio')
    add('batch_images', type=int, default=None, help=recipe('batch_images', 'images per device per iteration'))
    add('image_size', type=int, default=cfg.IMAGE_SIZE, help='side of the square training crop (multiple of 32)')
    add('seed', type=int, default=0, help='seed of python, numpy, mxnet and the data pipeline')
    add('resume', action='store_true', help='continue from the newest complete epoch of --prefix')
    add('fresh_momentum', action='store_true',
        help='with --resume: continue from the params with the SGD momentum restarted from zero, where the '
             'checkpoint has no readable momentum (a dist run, or a .states pickle of an earlier version)')
    add('overwrite', action='store_true', help='delete the checkpoints of --prefix and start again (without this, '
                                               'a prefix that has checkpoints needs --resume)')
    add('workers', type=int, default=None,
        help='data worker processes (0 = inline; default: 1 on the CPU, where one worker outpaces the step and '
             'every further one takes a core from it; min(4, cores) on GPUs)')
    add('skip_bad', action='store_true', help='skip (and count) malformed label lines and unreadable images')
    add('max_batches', type=int, default=0, help='cap on batches per epoch (0 = whole epoch); for quick runs')
    add('no_landmarks', action='store_true', help='a box-only model (FACE_LANDMARK False): no landmark head')
    args = p.parse_args(argv)
    args.recipe_defaults = []
    for name in RECIPE_FLAGS:  # the recipe of the network asked for, where the flag was not given
        if getattr(args, name) is None:
            setattr(args, name, recipes[args.network][name])
            args.recipe_defaults.append(name)
    top = max(anchor_config(args.anchors)['strides'])
    if args.image_size > MAX_IMAGE_SIZE:
        p.error('--image_size %d: training crops are at most %d px (the recipe uses 640)'
                % (args.image_size, MAX_IMAGE_SIZE))
    if args.image_size <= 0 or args.image_size % max(32, top):
        p.error('--image_size must be a positive multiple of %d (the largest stride of --anchors %s), got %d'
                % (max(32, top), args.anchors, args.image_size))
    if args.cpus < 0:
        p.error('--cpus must be >= 0, got %d' % args.cpus)
    if args.kvstore and args.kvstore.startswith('dist') and 'DMLC_ROLE' not in os.environ:
        p.error('--kvstore %s runs under the launcher, which starts the scheduler, servers and workers: python -m '
                'rcnn.core.launch -n WORKERS -s SERVERS --launcher local python train.py ... --kvstore %s'
                % (args.kvstore, args.kvstore))
    if args.cpus and args.gpus:
        p.error('--cpus and --gpus exclude each other: train on CPU contexts or on GPUs')
    for name in ('batch_images', 'frequent', 'end_epoch'):
        value = getattr(args, name)
        if value is not None and value <= 0:
            p.error('--%s must be > 0, got %d' % (name, value))
    if args.workers is not None and args.workers > 2 * (os.cpu_count() or 1):
        p.error('--workers %d: more data workers than twice the %d CPUs only take memory; at most %d'
                % (args.workers, os.cpu_count() or 1, 2 * (os.cpu_count() or 1)))
    for name in ('max_batches', 'workers', 'begin_epoch'):
        if getattr(args, name) is not None and getattr(args, name) < 0:
            p.error('--%s must be >= 0, got %d' % (name, getattr(args, name)))
    if not (math.isfinite(args.lr) and args.lr > 0):
        p.error('--lr must be a positive number, got %g' % args.lr)
    try:
        args.lr_steps = parse_lr_steps(args.lr_step)
    except ValueError as err:
        p.error(str(err))
    if args.pretrained.lower() == 'none':
        args.pretrained = ''
    if args.end_epoch is None:
        args.end_epoch = args.lr_steps[-1] if args.lr_steps else 1
    return args


def get_contexts(gpus, cpus=0):
    """(contexts, description). --cpus N: N CPU contexts; --gpus wins (-1: the CPU); else
    $CUDA_VISIBLE_DEVICES when set, non-empty, not -1 and the MXNet build has CUDA; else one CPU context.
    DeviceError when a GPU asked for is not there."""
    if cpus:
        return [mx.cpu(i) for i in range(cpus)], '%d CPU contexts' % cpus if cpus > 1 else 'CPU'
    what = '--gpus %s' % gpus
    if gpus is None:
        visible = os.environ.get('CUDA_VISIBLE_DEVICES', '').strip()
        if not visible or visible.startswith('-1') or not mx.runtime.Features().is_enabled('CUDA'):
            if visible and not visible.startswith('-1'):
                print('CUDA_VISIBLE_DEVICES=%s is set, but this MXNet is a CPU build: training on the CPU'
                      % visible, flush=True)
            return [mx.cpu()], 'CPU'
        gpus = ','.join(str(i) for i in range(len(visible.split(','))))
        what = 'CUDA_VISIBLE_DEVICES=%s' % visible
    if str(gpus).strip() == '-1':
        return [mx.cpu()], 'CPU'
    try:
        ids = [int(g) for g in str(gpus).split(',') if g.strip()]
    except ValueError:
        raise DeviceError('%s: give comma-separated GPU ids such as 0,1 (or -1 for the CPU)' % what) from None
    if not ids:
        return [mx.cpu()], 'CPU'
    check_gpus(ids, what)
    return [mx.gpu(i) for i in ids], 'GPUs %s' % ','.join(map(str, ids))


def shard(roidb, rank, workers):
    """Worker `rank`'s part of the samples. Every worker gets the same count (len // workers; the remainder is
    left out), so that all run the same number of batches per epoch and change the LR at the same step: a
    dist_sync step waits for every worker, and a worker with one batch more would wait forever."""
    per = len(roidb) // workers
    return roidb[rank::workers][:per]


def refuse_planted_links(prefix):
    """UnsafeOutputError when a file this run would write (or delete) is a symbolic link."""
    for path in ['%s%s' % (prefix, s) for s in ('.lock', '-config.json', '-train.log', '-symbol.json')] + \
            glob.glob(glob.escape(prefix) + '-[0-9][0-9][0-9][0-9].*'):
        refuse_symlink(path, 'training output')


def setup_logging(prefix):
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    fmt = logging.Formatter('%(asctime)s %(levelname)s %(message)s')
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for handler in (logging.StreamHandler(sys.stdout), logging.StreamHandler(open_append(prefix + '-train.log'))):
        handler.setFormatter(fmt)
        root.addHandler(handler)


def _saved_config(prefix):
    """The -config.json of the run being resumed, or {} where there is none readable."""
    try:
        with open(prefix + '-config.json') as f:
            saved = json.load(f)
    except (OSError, ValueError):
        return {}
    return saved if isinstance(saved, dict) else {}


RESUME_MUST_MATCH = (('NETWORK', '--network'), ('ANCHOR_NETWORK', '--anchors'), ('FACE_LANDMARK', '--no_landmarks'))


def _momentum_to_restore(args, epoch, dist):
    """(path, {name: momentum}) of the .states.npz of `epoch`, read and checked, or None (fresh momentum) where
    the user said --fresh_momentum; CheckpointError where it is missing, unreadable or in the old pickle format
    and they did not."""
    path = states_path(args.prefix, epoch)
    if dist:  # the servers hold the optimizer: a momentum file cannot be given to them
        if args.fresh_momentum:
            logger.warning('--fresh_momentum: the SGD momentum restarts from zero on the parameter servers')
            return None
        raise CheckpointError('--resume with a dist kvstore: the momentum lives on the parameter servers and is '
                              'not restored from a file; --fresh_momentum continues from %s-%04d.params with the '
                              'momentum restarted from zero; nothing was changed' % (args.prefix, epoch))
    if os.path.isfile(path):
        return path, read_momentum(path)
    legacy = legacy_states_path(args.prefix, epoch)
    if args.fresh_momentum:
        logger.warning('--fresh_momentum: the SGD momentum restarts from zero (%s)',
                       'the pickle %s is not read' % legacy if os.path.exists(legacy) else 'no %s' % path)
        return None
    if os.path.exists(legacy):
        raise CheckpointError('--resume: the momentum of epoch %d is in %s, the pickle format of earlier versions, '
                              'which this version never loads (unpickling a file can run code); --fresh_momentum '
                              'continues from %s-%04d.params with the momentum restarted from zero; nothing was '
                              'changed' % (epoch, legacy, args.prefix, epoch))
    raise CheckpointError('--resume: no momentum %s for epoch %d (it was not written or was removed); '
                          '--fresh_momentum continues from %s-%04d.params with the momentum restarted from zero; '
                          'nothing was changed' % (path, epoch, args.prefix, epoch))


def _checkpoint_fit(params, sym, shapes):
    """Names of `sym`'s parameters that `params` lacks or holds with another shape."""
    arg_shapes, _, aux_shapes = sym.infer_shape(**shapes)
    wanted = dict(zip(sym.list_arguments(), arg_shapes))
    wanted.update(zip(sym.list_auxiliary_states(), aux_shapes))
    return [n for n, shape in wanted.items() if n not in shapes and
            (n not in params or tuple(params[n].shape) != tuple(shape))]


def initial_params(args, cfg, sym, shapes, dist=False):
    """(arg_params, aux_params, begin_epoch, pretrained?, momentum .npz or None) from --resume, --pretrained,
    or nothing.

    A checkpoint to resume must be of the same --network, --anchors and landmark setting (its -config.json) and
    hold exactly the parameters of the training graph with their shapes (a checkpoint of another network or
    preset is refused, never half loaded), and its momentum must be readable (or --fresh_momentum given); a
    pretrained file must hold backbone tensors.
    """
    if args.resume:
        epoch = latest_epoch(args.prefix)
        if epoch is None:
            logger.info('--resume: no checkpoint %s-NNNN.params yet; starting at epoch %d', args.prefix,
                        args.begin_epoch)
        else:
            saved = _saved_config(args.prefix)
            for key, flag in RESUME_MUST_MATCH:
                if key in saved and saved[key] != cfg[key]:
                    raise CheckpointError('--resume: %s was trained with %s=%s, this run asks for %s (%s); resume '
                                          'with the flags it was started with, or train into another --prefix; '
                                          'nothing was changed' % (args.prefix, key, saved[key], cfg[key], flag))
            _, arg, aux = load_checkpoint(args.prefix, epoch)
            names = set(sym.list_arguments()) | set(sym.list_auxiliary_states())
            extra = sorted((set(arg) | set(aux)) - names)
            unfit = _checkpoint_fit(dict(arg, **aux), sym, shapes) + \
                ['%s (not in this graph)' % n for n in extra]
            if unfit:
                raise CheckpointError('--resume: %s-%04d.params does not fit the training graph of --network %s '
                                      '--anchors %s (%d parameters missing or of another shape, e.g. %s): it was '
                                      'not written by this training; nothing was changed'
                                      % (args.prefix, epoch, args.network, args.anchors, len(unfit), unfit[0]))
            momentum = _momentum_to_restore(args, epoch, dist)
            logger.info('resuming from %s-%04d.params (epoch %d done)', args.prefix, epoch, epoch)
            return arg, aux, epoch, bool(saved.get('pretrained', args.pretrained)), momentum
    if args.pretrained:
        params = '%s-%04d.params' % (args.pretrained, args.pretrained_epoch)
        if not os.path.isfile(params):
            raise CheckpointError('pretrained backbone not found: %s (put the ImageNet model there, point '
                                  '--pretrained/--pretrained_epoch at it, or pass --pretrained none to train '
                                  'from scratch)' % params)
        arg, aux = load_params(params)
        given = dict(arg, **aux)
        names = set(sym.list_arguments()) | set(sym.list_auxiliary_states())
        body = _param_shapes(get_backbone(args.network, cfg), shapes['data'])
        fits = [n for n, shape in body.items() if n in given and tuple(given[n].shape) == shape]
        if not fits:
            raise CheckpointError('pretrained params %s hold no tensor of the %s backbone (e.g. %s): not an ImageNet '
                                  '%s checkpoint; check --network/--pretrained' % (params, args.network,
                                                                                  sorted(body)[0], args.network))
        if len(fits) < len(body):
            missing = sorted(set(body) - set(fits))
            logger.warning('pretrained params %s: %d of the %d backbone tensors are missing or of another shape '
                           '(e.g. %s): those start from random', params, len(missing), len(body), missing[0])
        unfit = set(_checkpoint_fit(given, sym, shapes))  # a detector checkpoint also gives neck and heads
        arg = {k: v for k, v in arg.items() if k in names and k not in unfit}
        aux = {k: v for k, v in aux.items() if k in names and k not in unfit}
        if len(arg) + len(aux) > len(fits):  # neck and heads too: a detector checkpoint being fine-tuned
            logger.info('weights from %s (a whole detector: %d tensors, the backbone\'s %d among them)', params,
                        len(arg) + len(aux), len(fits))
        else:
            logger.info('backbone from %s: %d of its tensors used', params, len(fits))
        return arg, aux, args.begin_epoch, True, None
    logger.info('no --pretrained backbone given: training %s from scratch (random initialisation)', args.network)
    return None, None, args.begin_epoch, False, None


def _param_shapes(taps, data_shape):
    """{name: shape} of the parameters and auxiliary states of a backbone's taps."""
    group = mx.sym.Group([taps[s] for s in sorted(taps)])
    arg_shapes, _, aux_shapes = group.infer_shape(data=data_shape)
    out = dict(zip(group.list_arguments(), map(tuple, arg_shapes)))
    out.update(zip(group.list_auxiliary_states(), map(tuple, aux_shapes)))
    out.pop('data', None)
    return out


def main(argv=None):
    args = parse_args(argv)
    random.seed(args.seed)
    np.random.seed(args.seed)
    mx.random.seed(args.seed)
    try:
        ctxs, ctx_text = get_contexts(args.gpus, args.cpus)
    except DeviceError as err:
        print('error: %s' % err, file=sys.stderr, flush=True)
        return 2
    on_gpu = ctxs[0].device_type == 'gpu'
    if args.workers is None:
        args.workers = min(4, os.cpu_count() or 1) if on_gpu else 1
    kv_name = args.kvstore or ('device' if on_gpu else 'local')
    cfg = get_config(args.network, args.dataset, IMAGE_SIZE=args.image_size, pretrained=args.pretrained,
                     lr=args.lr, lr_step=args.lr_step, wd=args.wd, TRAIN__BATCH_IMAGES=args.batch_images,
                     TRAIN__FLIP=not args.no_flip, TRAIN__SHUFFLE=not args.no_shuffle, ANCHOR_NETWORK=args.anchors,
                     DCN_PORTABLE=not on_gpu, FACE_LANDMARK=not args.no_landmarks)
    kv = mx.kvstore.create(kv_name) if 'dist' in kv_name else kv_name
    if 'dist' in kv_name:
        # held until the process ends: a rank that refuses (a planted link, a lock, a bad label) must exit, and
        # freeing the kvstore would wait in its shutdown barrier for ranks that never get there
        _DIST_KVSTORES.append(kv)
    rank, workers = (kv.rank, kv.num_workers) if 'dist' in kv_name else (0, 1)
    prefix = args.prefix if rank == 0 else '%s.rank%d' % (args.prefix, rank)  # every worker keeps its own files
    if not os.path.basename(prefix):
        print('error: --prefix %s names a folder: give a file prefix such as %smnet' % (prefix, prefix), flush=True)
        return 2
    starting_fresh = not (args.resume and list_epochs(prefix))
    if args.pretrained and starting_fresh:  # before the lock and the log: a bare `python train.py` writes nothing
        params = '%s-%04d.params' % (args.pretrained, args.pretrained_epoch)
        if not os.path.isfile(params):
            print('error: --pretrained %s: %s not found (put the ImageNet backbone or the detector there, point '
                  '--pretrained/--pretrained_epoch at it, or pass --pretrained none to train from scratch)'
                  % (args.pretrained, params), flush=True)
            return 2
    try:
        check_writable_dir(os.path.dirname(os.path.abspath(prefix)), '--prefix folder')
        refuse_planted_links(prefix)
        lock = PrefixLock(prefix)  # held until the process ends
    except (CheckpointError, OSError) as err:
        print('error: %s' % err, flush=True)
        return 2
    existing = list_epochs(prefix)
    if existing and not args.resume and not args.overwrite:
        print('error: %s already has checkpoints (epochs %s): --resume continues that run, --overwrite deletes them '
              'and starts again' % (prefix, ', '.join(map(str, existing))), flush=True)
        return 2
    try:
        setup_logging(prefix)
    except OSError as err:
        print('error: %s' % err, flush=True)
        return 2
    logger.info('arguments: %s', {k: v for k, v in vars(args).items() if k != 'recipe_defaults'})
    if args.recipe_defaults:
        logger.info('recipe of --network %s for the flags not given: %s', args.network,
                    ', '.join('--%s %s' % (k, getattr(args, k) or 'none') for k in args.recipe_defaults))
    logger.info('devices: %s, kvstore %s%s; engine %s, %s compute thread(s), %d data worker(s)', ctx_text,
                kv_name, ' (worker %d of %d)' % (rank, workers) if workers > 1 else '',
                os.environ.get('MXNET_ENGINE_TYPE', 'ThreadedEnginePerDevice'),
                os.environ.get('OMP_NUM_THREADS', "MXNet's default"), args.workers)

    try:
        dataset = RetinaFaceDataset(args.image_set, args.root_path, args.dataset_path, skip_bad=args.skip_bad)
        roidb = dataset.gt_roidb()
    except AnnotationError as err:
        logger.error('error: %s', err)
        return 2
    if cfg.FACE_LANDMARK and roidb and not any((rec['landmarks'][:, :, 2] >= 0).any() for rec in roidb
                                                if len(rec['landmarks'])):
        logger.warning('no training face of %s has landmarks (every point -1): the landmark head gets no target '
                       'and its loss reads 0; --no_landmarks trains a box-only model', dataset.label_path)
    if cfg.TRAIN.FLIP:
        roidb = roidb + flip_roidb(roidb)
    if workers > 1:
        total = len(roidb)
        roidb = shard(roidb, rank, workers)
        logger.info('worker %d of %d: %d samples (%d of %d left out so that every worker has as many)', rank,
                    workers, len(roidb), total - workers * len(roidb), total)
    batch = cfg.TRAIN.BATCH_IMAGES * len(ctxs)
    if len(roidb) < batch:
        logger.error('error: %s has %d usable training samples (faces inside their images, mirrored copies '
                     'included), fewer than one batch of %d (--batch_images %d x %d devices): add images or lower '
                     '--batch_images', dataset.label_path, len(roidb), batch, cfg.TRAIN.BATCH_IMAGES, len(ctxs))
        return 2
    train_sym = get_symbol(args.network, 'train', cfg)
    test_sym = get_symbol(args.network, 'test', cfg)
    try:
        loader = CropLoader(roidb, cfg, batch, shuffle=cfg.TRAIN.SHUFFLE, workers=args.workers,
                            seed=args.seed + 7919 * rank, hold=HELD_BATCHES)
    except LoaderMemoryError as err:
        logger.error('error: %s', err)
        return 2
    try:
        shapes = dict(loader.provide_data + loader.provide_label)
        try:
            arg_params, aux_params, begin_epoch, pretrained, momentum = initial_params(
                args, cfg, train_sym, shapes, dist=workers > 1 or 'dist' in kv_name)
        except CheckpointError as err:
            logger.error('error: %s', err)
            return 2
        if begin_epoch >= args.end_epoch:
            logger.info('epoch %d already reached (--end_epoch %d): nothing to do', begin_epoch, args.end_epoch)
            return 0
        if existing and args.overwrite and not args.resume:  # only now: every input has been checked
            logger.info('--overwrite: deleted %s', ', '.join(remove_epochs(prefix)))
        if not pretrained:
            cfg.pretrained = ''  # recorded in -config.json: a later --resume must know the run began from scratch
        # the stem is frozen only where its weights came from the checkpoint (a random stem must train)
        frozen = [n for n in STEM_PARAMS[args.network] if n in (arg_params or {})] if cfg.LAYER_FIX and pretrained \
            else []
        fixed, zero_lr = freeze_plan(train_sym, frozen)  # frozen BatchNorms still follow the data (core/freeze.py)
        if cfg.LAYER_FIX and not pretrained:
            logger.info('LAYER_FIX ignored: the stem is random when training from scratch')
        run = Run(prefix=prefix, network=args.network, anchors=args.anchors, end_epoch=args.end_epoch, lr=args.lr,
                  lr_steps=args.lr_steps, wd=args.wd, frequent=args.frequent, resume=args.resume,
                  dataset_path=args.dataset_path, max_batches=args.max_batches)
        return train(run, cfg, loader, ctxs, kv, workers, train_sym, test_sym, (arg_params, aux_params), begin_epoch,
                     momentum, fixed, zero_lr)
    finally:
        loader.close()
        lock.release()


def cli(argv=None):
    """main() with the command line's exits (``python train.py`` and ``retinaface-train`` reach it through
    ``rcnn.tools.train_command``)."""
    argv = sys.argv[1:] if argv is None else argv
    # (the CPU defaults are chosen by train_command before this module loads MXNet; a dist kvstore's server or
    # scheduler runs its loop inside that import and exits there)
    try:
        status = main(argv)
    except MXNetMissingError as err:
        print('error: %s' % err, file=sys.stderr, flush=True)
        status = 2
    except KeyboardInterrupt:
        print('interrupted', flush=True)
        status = 130
    except Exception:  # noqa: BLE001 - reported, then the same hard exit as every failure
        traceback.print_exc()
        status = 1
    if status:
        # A failed run ends here, with its code: after an aborted step MXNet's atexit engine shutdown
        # (WaitForAll) can wait for ever. The data workers are already stopped and the checkpoints on disk
        # are complete (atomic writes), so nothing is lost by skipping it.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(0)


if __name__ == '__main__':
    cli()
