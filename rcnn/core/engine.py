"""The training engine: the loop over ``CropLoader``'s batches and what it does after each step and each epoch.

``train(run, ...)`` binds the training graph on the contexts, sets up SGD with the recipe's schedule, restores
the momentum of a resumed run, and runs ``fit``: forward/backward, update, metrics and Speedometer lines per
batch; the parameters checked and the checkpoint written (momentum first, params last, atomically) per epoch.
``tools/train.py`` is the command line around it (arguments, config, data, initial weights).

Batch ownership is explicit: the loop holds at most two batches (the one computing and the next one being
prepared) and hands each back with ``loader.release(batch)`` once its last reader, the metric update, is issued;
the loader refills a slot only after MXNet has finished with it.
"""
import dataclasses
import json
import logging
import math
import os
import shlex
import time
import warnings

from rcnn.compat import mx
from rcnn.core.checkpoint import load_momentum, non_finite, save_checkpoint, save_momentum, states_path
from rcnn.core.loader import DataWorkerError
from rcnn.core.metric import get_metrics
from rcnn.core.schedule import RetinaFaceScheduler
from rcnn.fileio import atomic_open
from rcnn.imageio import AnnotationError
from rcnn.interrupt import DeferredInterrupt
from rcnn.names import label_names

__all__ = ['TrainingDiverged', 'Run', 'fit', 'train', 'HELD_BATCHES']
logger = logging.getLogger('train')
HELD_BATCHES = 2  # the loop's batches at once: the one computing and the next one


class TrainingDiverged(RuntimeError):
    pass


@dataclasses.dataclass
class Run:
    """What one training run is asked to do (the command line's choices)."""
    prefix: str
    network: str
    anchors: str
    end_epoch: int
    lr: float
    lr_steps: list
    wd: float
    frequent: int
    resume: bool
    dataset_path: str
    max_batches: int = 0


def fit(mod, loader, metric, begin_epoch, end_epoch, batch_end, epoch_end, interrupt=None):
    """The training loop (Module.fit's, without its re-initialisation): forward/backward, update, metric,
    callbacks; the next batch is requested while the current one computes, and each batch is released once
    its last reader is issued. `interrupt` (a DeferredInterrupt) is checked after every step."""
    check = interrupt.check if interrupt is not None else (lambda: None)
    for epoch in range(begin_epoch, end_epoch):
        tic = time.time()
        metric.reset()
        loader.reset_epoch(epoch)
        nbatch = 0
        batch = next(loader, None)
        while batch is not None:
            mod.forward_backward(batch)
            mod.update()
            following = next(loader, None)  # the data workers prepare it while the engine computes
            mod.update_metric(metric, batch.label)
            loader.release(batch)  # its slot is refilled only once MXNet has finished reading it
            batch_end(mx.model.BatchEndParam(epoch=epoch, nbatch=nbatch, eval_metric=metric, locals=None))
            nbatch += 1
            batch = following
            check()
        for name, value in metric.get_name_value():
            logger.info('Epoch[%d] Train-%s=%f', epoch, name, value)
        logger.info('Epoch[%d] Time cost=%.3f', epoch, time.time() - tic)
        epoch_end(epoch)
        check()


def _last(prefix, epoch, what='last complete checkpoint'):
    return '%s: %s-%04d.params' % (what, prefix, epoch) if epoch else 'no checkpoint was written'


def train(run, cfg, loader, contexts, kvstore, workers, train_sym, test_sym, params, begin_epoch, momentum=None,
          fixed=(), zero_lr=()):
    """Train from `begin_epoch` to run.end_epoch; returns the exit status (0 done, 2 a data or disk problem,
    3 diverged, 130 interrupted), each failure logged with the last complete checkpoint.

    :param params: (arg_params, aux_params) to start from, or (None, None) for the initialiser's
    :param momentum: (path, {name: array}) of a resumed run's SGD momentum, or None
    :param fixed: parameters without gradient (the frozen stem's convs); zero_lr: trained with lr and wd 0
    """
    if run.max_batches:
        loader.max_batches = run.max_batches
    loader.reset_epoch(begin_epoch)
    iters = loader.batches_per_epoch
    with atomic_open(run.prefix + '-config.json', what='run config') as f:
        json.dump(cfg, f, indent=1, default=str)
    logger.info('%d samples, %d per batch, %d batches per epoch, epochs %d..%d', len(loader.roidb),
                loader.batch_size, iters, begin_epoch + 1, run.end_epoch)

    mod = mx.mod.Module(train_sym, data_names=['data'], label_names=label_names(cfg.RPN_FEAT_STRIDE, cfg.FACE_LANDMARK),
                        context=contexts, fixed_param_names=list(fixed))
    scheduler = RetinaFaceScheduler(run.lr, run.lr_steps, iters)
    optimizer = mx.optimizer.SGD(learning_rate=run.lr, momentum=cfg.momentum, wd=run.wd,
                                 rescale_grad=1.0 / (len(contexts) * workers), lr_scheduler=scheduler,
                                 begin_num_update=begin_epoch * iters)
    optimizer.set_lr_mult({n: 0.0 for n in zero_lr})
    optimizer.set_wd_mult({n: 0.0 for n in zero_lr})
    # The losses normalise themselves (valid anchors, recipe grad scales): rescale_grad only averages devices.
    warnings.filterwarnings('ignore', message='Optimizer created manually outside Module')
    mod.bind(data_shapes=loader.provide_data, label_shapes=loader.provide_label, for_training=True)
    mod.init_params(mx.init.Xavier(), arg_params=params[0], aux_params=params[1], allow_missing=True)
    mod.init_optimizer(kvstore=kvstore, optimizer=optimizer)
    if momentum:
        count = load_momentum(mod, momentum[1], momentum[0])  # names and shapes fit: the params did
        logger.info('optimizer state (momentum of %d parameters) restored from %s', count, momentum[0])
    metric = get_metrics(train_sym.list_outputs(), cfg.RPN_FEAT_STRIDE, cfg.FACE_LANDMARK)
    speedometer = mx.callback.Speedometer(loader.batch_size, run.frequent, auto_reset=False)
    last_saved = [begin_epoch if run.resume and begin_epoch else None]

    def batch_end(param):
        speedometer(param)
        # running loss sums (not averages: a stride without positives legitimately averages to NaN)
        bad = [m.name for m in param.eval_metric.metrics if not math.isfinite(float(m.sum_metric))]
        if bad:
            raise TrainingDiverged('loss became non-finite (%s) at epoch %d batch %d'
                                   % (', '.join(bad), param.epoch + 1, param.nbatch))

    def epoch_end(epoch):
        # MXNet's CPU BatchNorm writes its moving statistics in the backward pass, which does not declare them
        # as outputs to the engine: without this wait a threaded engine (several contexts) can copy them out
        # before the last steps' updates land (measured: still the initial 0/1 after 3 steps)
        mx.nd.waitall()
        arg, aux = mod.get_params()
        bad = non_finite(arg, aux)
        if bad:  # never written: the last checkpoint on disk stays the last good one
            raise TrainingDiverged('parameters became non-finite by the end of epoch %d (%d tensors, e.g. %s)'
                                   % (epoch + 1, len(bad), ', '.join(bad[:3])))
        test_args = {k: v for k, v in arg.items() if k in test_sym.list_arguments()}
        # the momentum first, the params last: an epoch counts as complete once its params file exists
        states = save_momentum(mod, states_path(run.prefix, epoch + 1))  # None where the servers hold it
        try:
            _, params_path = save_checkpoint(run.prefix, epoch + 1, test_sym, test_args, aux)
        except BaseException:
            if states and os.path.exists(states):
                os.remove(states)
            raise
        last_saved[0] = epoch + 1
        logger.info('saved %s (epoch %d, lr %.6g)', params_path, epoch + 1,
                    scheduler.lr_at_iter((epoch + 1) * iters - 1))  # the rate its last batch trained with

    start = time.time()
    try:
        with DeferredInterrupt('interrupt: stopping after this step (Ctrl-C again to stop at once)',
                               exit_at_once=True) as interrupt:
            fit(mod, loader, metric, begin_epoch, run.end_epoch, batch_end, epoch_end, interrupt)
    except (AnnotationError, DataWorkerError) as err:  # an image that broke after caching; a dead worker
        logger.error('error: %s; %s (--resume continues from it%s)', err, _last(run.prefix, last_saved[0]),
                     ' once the image is fixed' if isinstance(err, AnnotationError) else '')
        return 2
    except TrainingDiverged as err:
        logger.error('training stopped: %s; %s. Try a lower --lr.', err,
                     _last(run.prefix, last_saved[0], 'last good checkpoint'))
        return 3
    except OSError as err:  # a checkpoint that could not be written: full disk, a planted symlink, permissions
        logger.error('error: %s; %s', err.strerror and '%s: %s' % (err.filename or run.prefix, err.strerror) or err,
                     _last(run.prefix, last_saved[0]))
        return 2
    except KeyboardInterrupt:
        logger.error('interrupted; %s', _last(run.prefix, last_saved[0]) + (
            ' (--resume continues from it)' if last_saved[0] else ''))
        return 130
    logger.info('training done in %.1f min; final checkpoint %s-%04d.params', (time.time() - start) / 60,
                run.prefix, run.end_epoch)
    gt = 'data/widerface/ground_truth'
    logger.info('evaluate it (single scale, about a minute per 300 images on 2 cores) with: python test.py '
                '--network %s --prefix %s --epoch %d --dataset_path %s --mode 0 --output out/%s%s', run.anchors,
                shlex.quote(run.prefix), run.end_epoch, shlex.quote(run.dataset_path),
                shlex.quote(os.path.basename(run.prefix)),
                ' --gt %s' % gt if os.path.isdir(gt) else ' (add --gt <folder of wider_*_val.mat> for the official AP)')
    return 0
