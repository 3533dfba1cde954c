"""CropLoader: an MXNet DataIter of random 640x640 (IMAGE_SIZE) crops with anchor targets.

Samples are produced by worker processes (``workers`` > 0) so that the network is not starved; each
batch's random stream is seeded from (seed, epoch, batch), so results do not depend on the number of
workers or their timing.
"""
import collections
import logging
import multiprocessing as mp

import cv2
import mxnet as mx
import numpy as np

from rcnn.io.image import get_crop_image
from rcnn.io.rpn import AnchorAssigner

__all__ = ['CropLoader', 'make_batch', 'DataWorkerError']
logger = logging.getLogger(__name__)
_STATE = {}


class DataWorkerError(RuntimeError):
    """The data worker processes stopped delivering batches."""


WORKER_TIMEOUT = 600  # seconds without a batch before a dead data worker is reported (a lost task never returns)


def _init_worker(roidb, cfg):
    cv2.setNumThreads(1)
    _STATE['roidb'] = roidb
    _STATE['cfg'] = cfg
    _STATE['assigner'] = AnchorAssigner(cfg.RPN_ANCHOR_CFG, cfg.RPN_FEAT_STRIDE, cfg.IMAGE_SIZE,
                                        cfg.TRAIN.RPN_POSITIVE_OVERLAP, cfg.TRAIN.RPN_NEGATIVE_OVERLAP,
                                        cfg.TRAIN.BBOX_STDS, cfg.TRAIN.LANDMARK_STD, cfg.FACE_LANDMARK)


def make_batch(job):
    """(indices, seed) -> (data (B, 3, S, S), {label name: (B, ...)}, faces kept) in the current process."""
    indices, seed = job
    rng = np.random.RandomState(seed)
    roidb, cfg, assigner = _STATE['roidb'], _STATE['cfg'], _STATE['assigner']
    datas, labels, faces = [], [], 0
    for i in indices:
        tensor, boxes, landmarks = get_crop_image(roidb[i], cfg, rng)
        datas.append(tensor)
        labels.append(assigner.assign(boxes, landmarks))
        faces += len(boxes)
    stacked = {k: np.stack([lab[k] for lab in labels]) for k in labels[0]}
    return np.stack(datas), stacked, faces


class CropLoader(mx.io.DataIter):
    """Iterates over a roidb in shuffled batches of `batch_size` crops (last partial batch dropped).

    :param roidb: records of ``RetinaFaceDataset.gt_roidb`` (plus flipped twins)
    :param cfg: training config (IMAGE_SIZE, crop/jitter/anchor settings)
    :param workers: worker processes producing batches (0 = in this process)
    :param prefetch: batches requested ahead per worker
    """

    def __init__(self, roidb, cfg, batch_size, shuffle=True, workers=2, seed=0, prefetch=2):
        self._pool = None  # first: close() and __del__ must work whatever __init__ raises
        super().__init__(batch_size)
        if len(roidb) < batch_size:
            raise ValueError('the training set has %d images (with flips), fewer than one batch of %d'
                             % (len(roidb), batch_size))
        self.roidb, self.cfg = roidb, cfg
        self.shuffle, self.seed, self.workers = shuffle, seed, workers
        self.prefetch = max(1, prefetch)
        self.epoch = 0
        _init_worker(roidb, cfg)
        self.assigner = _STATE['assigner']
        size = cfg.IMAGE_SIZE
        self.provide_data = [mx.io.DataDesc('data', (batch_size, 3, size, size))]
        self.provide_label = [mx.io.DataDesc(n, s) for n, s in self.assigner.label_shapes(batch_size)]
        self.data_name, self.label_name = ['data'], [d.name for d in self.provide_label]
        self._pool = None
        if workers > 0:
            self._pool = mp.get_context('fork').Pool(workers, initializer=_init_worker, initargs=(roidb, cfg))
        self.faces_seen = 0
        self.max_batches = 0  # > 0: cap on batches per epoch (quick runs, tests)
        self.reset_epoch(0)

    @property
    def batches_per_epoch(self):
        n = len(self.roidb) // self.batch_size
        return min(n, self.max_batches) if self.max_batches else n

    def reset_epoch(self, epoch):
        """Start `epoch` (the order and the random streams depend on (seed, epoch) only)."""
        self.epoch = epoch
        order = np.arange(len(self.roidb))
        if self.shuffle:
            np.random.RandomState((self.seed, epoch)).shuffle(order)
        n = self.batches_per_epoch
        self._jobs = [(order[b * self.batch_size:(b + 1) * self.batch_size].tolist(),
                       (self.seed * 1000003 + epoch * 10007 + b) % (2 ** 31)) for b in range(n)]
        self._pending = collections.deque()  # at most workers * prefetch batches in flight (bounded memory)
        self._submitted = 0
        self._cursor = 0

    def _fill(self):
        if self._pool is None:
            return
        while self._submitted < len(self._jobs) and len(self._pending) < self.workers * self.prefetch:
            self._pending.append(self._pool.apply_async(make_batch, (self._jobs[self._submitted],)))
            self._submitted += 1

    def reset(self):
        self.reset_epoch(self.epoch + 1 if self._cursor else self.epoch)

    def next(self):
        if self._cursor >= len(self._jobs):
            raise StopIteration
        if self._pool is None:
            data, labels, faces = make_batch(self._jobs[self._cursor])
        else:
            self._fill()
            try:
                data, labels, faces = self._pending.popleft().get(timeout=WORKER_TIMEOUT)
            except mp.TimeoutError:
                raise DataWorkerError('no batch from the data workers in %d s: a worker process died (out of memory?) '
                                   'or hangs; --workers 0 loads in this process' % WORKER_TIMEOUT) from None
            self._fill()
        self._cursor += 1
        self.faces_seen += faces
        return mx.io.DataBatch(data=[mx.nd.array(data)], label=[mx.nd.array(labels[n]) for n in self.label_name],
                               pad=0, provide_data=self.provide_data, provide_label=self.provide_label)

    def close(self):
        if self._pool is not None:
            self._pool.terminate()
            self._pool = None

    def __del__(self):
        self.close()
