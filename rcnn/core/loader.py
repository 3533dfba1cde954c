"""CropLoader: an MXNet DataIter of random 640x640 (IMAGE_SIZE) crops with anchor targets.

Samples are produced by worker processes (``workers`` > 0) so that the network is not starved; each
batch's random stream is seeded from (seed, epoch, batch), so results do not depend on the number of
workers or their timing.

Batches are handed over in shared memory: the loader maps a ring of batch slots (data and every label
array, float32) before the workers are forked; a worker writes its batch straight into a slot and returns
only a face count, and the main process wraps each slot once as zero-copy NDArrays. Nothing is pickled
and nothing is copied in the main process. A slot is refilled only after MXNet has finished reading it
and the consumer has handed the batch back: ``release(batch)`` (the training engine releases each batch once its
last reader is issued). A consumer that never releases holds at most ``hold`` batches: asking for one more hands
back its oldest.
"""
import collections
import ctypes
import logging
import mmap
import multiprocessing as mp
import multiprocessing.connection
import os
import signal

import cv2
from rcnn.compat import mx
import numpy as np

from rcnn.io.image import get_crop_image
from rcnn.imageio import AnnotationError
from rcnn.io.rpn import AnchorAssigner

__all__ = ['CropLoader', 'batch_seed', 'make_batch', 'DataWorkerError', 'LoaderMemoryError', 'BatchSlot']
logger = logging.getLogger(__name__)
MADV_POPULATE_WRITE = 23  # linux/mman.h


class DataWorkerError(RuntimeError):
    """The data worker processes stopped delivering batches."""


WORKER_TIMEOUT = 600  # seconds without a batch from a live worker before it is reported as hung
PR_SET_PDEATHSIG = 1


def batch_seed(seed, epoch, batch):
    """The seed of one batch's random stream: a hash of (seed, epoch, batch), so no two batches of a run share
    one (the former seed x 1000003 + epoch x 10007 + batch repeated once an epoch had 10,007 batches)."""
    return int(np.random.SeedSequence([seed, epoch, batch]).generate_state(1)[0] % (2 ** 31))


class LoaderMemoryError(ValueError):
    """The batch slots would not fit in memory."""


def _available_memory():
    """MemAvailable of /proc/meminfo in bytes, or None where it cannot be read."""
    try:
        with open('/proc/meminfo') as f:
            for line in f:
                if line.startswith('MemAvailable:'):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


class BatchSlot:
    """One batch worth of float32 arrays in one shared anonymous mapping (inherited by forked workers).

    ``arrays`` are writable numpy views (what a worker fills); ``nds`` zero-copy NDArrays over the same memory,
    made once in the main process (``ndarrays``).
    """

    def __init__(self, shapes):
        self.shapes = list(shapes)  # [(name, shape)], data first
        sizes = [int(np.prod(shape)) * 4 for _, shape in self.shapes]
        self._map = mmap.mmap(-1, max(1, sum(sizes)))
        self._offsets = list(np.cumsum([0] + sizes[:-1]))
        self.arrays = {name: self._view(shape, offset) for (name, shape), offset in zip(self.shapes, self._offsets)}
        self.nds = None
        self.prefault()

    def prefault(self):
        """Map every page of the slot into this process now (MADV_POPULATE_WRITE, Linux >= 5.14): the first
        batches are then not slowed by ~14k page faults each. It changes no data; where unsupported, a no-op."""
        try:
            self._map.madvise(MADV_POPULATE_WRITE)
        except (OSError, ValueError, AttributeError):
            pass

    def _view(self, shape, offset):
        return np.frombuffer(self._map, dtype=np.float32, count=int(np.prod(shape)), offset=int(offset)).reshape(shape)

    def ndarrays(self):
        """{name: NDArray} aliasing the slot (made on first use from views of their own: from_numpy makes the
        views it wraps read-only, while `arrays` stay writable)."""
        if self.nds is None:
            self.nds = {name: mx.nd.from_numpy(self._view(shape, offset), zero_copy=True)
                        for (name, shape), offset in zip(self.shapes, self._offsets)}
        return self.nds

    def wait_idle(self):
        """Block until the engine has no pending read or write of the slot's NDArrays (safe to overwrite)."""
        for nd in (self.nds or {}).values():
            mx.base.check_call(mx.base._LIB.MXNDArrayWaitToWrite(nd.handle))


def make_assigner(cfg):
    return AnchorAssigner(cfg.RPN_ANCHOR_CFG, cfg.RPN_FEAT_STRIDE, cfg.IMAGE_SIZE, cfg.TRAIN.RPN_POSITIVE_OVERLAP,
                          cfg.TRAIN.RPN_NEGATIVE_OVERLAP, cfg.TRAIN.BBOX_STDS, cfg.TRAIN.LANDMARK_STD,
                          cfg.FACE_LANDMARK)


def _loader_state(roidb, cfg, slots, assigner=None):
    return {'roidb': roidb, 'cfg': cfg, 'slots': slots, 'assigner': assigner or make_assigner(cfg)}


def _worker_main(conn, roidb, cfg, slots, parent):
    """A data worker: batches for the jobs that arrive on `conn`, in order, until None (or the trainer dies:
    PR_SET_PDEATHSIG, so that no orphan keeps the inherited files, the prefix lock among them, open). SIGINT is
    the trainer's to handle: a Ctrl-C at the terminal reaches the whole process group."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the trainer died before the line above
        os._exit(0)
    cv2.setNumThreads(1)
    for slot in slots:  # this process's page tables do not map the slots yet
        slot.prefault()
    state = _loader_state(roidb, cfg, slots)
    while True:
        try:
            job = conn.recv()
        except EOFError:
            break
        if job is None:
            break
        try:
            conn.send(('ok', make_batch(job, state)))
        except Exception as err:  # noqa: BLE001 - reported by the trainer, with its kind
            conn.send(('error', type(err).__name__, str(err)))
    os._exit(0)


class _Worker:
    """One forked data worker process and the pipe it takes jobs from and answers on."""

    def __init__(self, index, roidb, cfg, slots):
        self.index = index
        self.conn, child = mp.Pipe()
        self.proc = mp.get_context('fork').Process(target=_worker_main, name='data worker %d' % index, daemon=True,
                                                   args=(child, roidb, cfg, slots, os.getpid()))
        self.proc.start()
        child.close()

    def describe_death(self):
        code = self.proc.exitcode
        how = ('was killed by %s' % signal.Signals(-code).name if code is not None and code < 0 else
               'exited (status %s)' % code)
        hint = ' (the kernel kills the largest process when memory runs out: fewer --workers or a smaller ' \
               '--image_size need less)' if code == -signal.SIGKILL else ''
        return 'data worker %d (pid %d) %s%s' % (self.index, self.proc.pid, how, hint)

    def submit(self, job):
        try:
            self.conn.send(job)
        except OSError:  # the worker is gone: its end of the pipe closed
            self.proc.join(1)
            raise DataWorkerError(self.describe_death()) from None

    def result(self, timeout):
        """The answer to this worker's oldest job; DataWorkerError at once when the process is gone."""
        ready = mp.connection.wait([self.conn, self.proc.sentinel], timeout)
        if self.conn in ready:
            try:
                return self.conn.recv()
            except (EOFError, OSError):
                pass
        elif not ready:
            raise DataWorkerError('data worker %d (pid %d) sent no batch in %d s: it hangs; --workers 0 loads in '
                                  'this process' % (self.index, self.proc.pid, timeout))
        self.proc.join(1)
        raise DataWorkerError(self.describe_death())

    def stop(self):
        try:
            self.conn.send(None)
        except (OSError, ValueError):
            pass
        self.proc.join(2)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(2)
        self.conn.close()


def make_batch(job, state):
    """(indices, seed, slot) -> faces kept; the batch is written into slot `slot` of `state` (the loader's,
    in this process or in a data worker)."""
    indices, seed, slot = job
    rng = np.random.RandomState(seed)
    roidb, cfg, assigner = state['roidb'], state['cfg'], state['assigner']
    arrays = state['slots'][slot].arrays
    faces = 0
    for b, i in enumerate(indices):
        _, boxes, landmarks = get_crop_image(roidb[i], cfg, rng, out=arrays['data'][b])
        assigner.assign_into(arrays, b, boxes, landmarks)
        faces += len(boxes)
    return faces


def _worker_error(kind, message):
    """The exception a worker reported, raised again here: a bad image stays an AnnotationError."""
    return AnnotationError(message) if kind == 'AnnotationError' else DataWorkerError(
        'a data worker failed: %s: %s' % (kind, message))


class CropLoader(mx.io.DataIter):
    """Iterates over a roidb in shuffled batches of `batch_size` crops (last partial batch dropped).

    :param roidb: records of ``RetinaFaceDataset.gt_roidb`` (plus flipped twins)
    :param cfg: training config (IMAGE_SIZE, crop/jitter/anchor settings)
    :param workers: worker processes producing batches (0 = in this process)
    :param prefetch: batches requested ahead per worker

    A returned batch's arrays stay valid until two more batches have been taken.
    """

    def __init__(self, roidb, cfg, batch_size, shuffle=True, workers=2, seed=0, prefetch=2, hold=2):
        self._pool = None  # [_Worker] or None; first: close() and __del__ must work whatever __init__ raises
        super().__init__(batch_size)
        self.hold = max(1, hold)  # batches the consumer may hold at once (the engine: computing + next)
        if len(roidb) < batch_size:
            raise ValueError('the training set has %d images (with flips), fewer than one batch of %d'
                             % (len(roidb), batch_size))
        self.roidb, self.cfg = roidb, cfg
        self.shuffle, self.seed, self.workers = shuffle, seed, workers
        self.prefetch = max(1, prefetch)
        self.epoch = 0
        size = cfg.IMAGE_SIZE
        assigner = make_assigner(cfg)
        self.provide_data = [mx.io.DataDesc('data', (batch_size, 3, size, size))]
        self.provide_label = [mx.io.DataDesc(n, s) for n, s in assigner.label_shapes(batch_size)]
        self.data_name, self.label_name = ['data'], [d.name for d in self.provide_label]
        shapes = [(d.name, d.shape) for d in self.provide_data + self.provide_label]
        in_flight = workers * self.prefetch if workers > 0 else 1
        need = (in_flight + self.hold) * sum(int(np.prod(s)) * 4 for _, s in shapes)
        available = _available_memory()
        if available is not None and need > available // 2:
            raise LoaderMemoryError(
                'the batch slots need %.1f GB of shared memory (%d slots of %d crops of %dx%d with their anchor '
                'targets) and %.1f GB are available: use fewer --workers (now %d), a smaller --batch_images or '
                '--image_size' % (need / 1e9, in_flight + self.hold, batch_size, size, size,
                                  available / 1e9, workers))
        self._slots = [BatchSlot(shapes) for _ in range(in_flight + self.hold)]
        self._state = _loader_state(roidb, cfg, self._slots, assigner)
        if workers > 0:  # forked after the slots are mapped: the workers write into the same memory
            threads = cv2.getNumThreads()
            cv2.setNumThreads(1)  # OpenCV's thread pool stopped before the fork: a forked copy of it deadlocks
            self._pool = []
            try:
                for index in range(workers):
                    self._pool.append(_Worker(index, roidb, cfg, self._slots))
            finally:
                cv2.setNumThreads(threads)
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
        self._jobs = [(order[b * self.batch_size:(b + 1) * self.batch_size].tolist(), batch_seed(self.seed, epoch, b))
                      for b in range(n)]
        if self._pool is not None and getattr(self, '_pending', None):
            for _, worker in self._pending:  # batches of the abandoned epoch: let them land before reuse
                worker.result(WORKER_TIMEOUT)
        self._pending = collections.deque()  # (slot, worker): at most workers * prefetch in flight
        self._free = collections.deque(range(len(self._slots)))
        self._held = collections.deque()  # slots handed out, still usable by the consumer
        self._submitted = 0
        self._cursor = 0

    def _take_slot(self):
        slot = self._free.popleft()
        self._slots[slot].wait_idle()  # MXNet has finished copying this slot's previous batch
        return slot

    def _fill(self):
        while self._submitted < len(self._jobs) and len(self._pending) < self.workers * self.prefetch and self._free:
            slot = self._take_slot()
            indices, seed = self._jobs[self._submitted]
            worker = self._pool[self._submitted % len(self._pool)]  # each answers its jobs in order
            worker.submit((indices, seed, slot))
            self._pending.append((slot, worker))
            self._submitted += 1

    def reset(self):
        self.reset_epoch(self.epoch + 1 if self._cursor else self.epoch)

    def next(self):
        if self._cursor >= len(self._jobs):
            raise StopIteration
        while len(self._held) >= self.hold:  # the consumer is done with the oldest batch it holds
            self._free.append(self._held.popleft())
        if self._pool is None:
            slot = self._take_slot()
            indices, seed = self._jobs[self._cursor]
            make_batch((indices, seed, slot), self._state)
        else:
            self._fill()
            slot, worker = self._pending.popleft()
            answer = worker.result(WORKER_TIMEOUT)
            if answer[0] != 'ok':
                raise _worker_error(answer[1], answer[2])
        self._held.append(slot)
        if self._pool is not None:
            self._fill()
        self._cursor += 1
        nds = self._slots[slot].ndarrays()
        batch = mx.io.DataBatch(data=[nds['data']], label=[nds[n] for n in self.label_name], pad=0,
                                provide_data=self.provide_data, provide_label=self.provide_label)
        batch.slot = slot
        return batch

    def release(self, batch):
        """The consumer is done with `batch`: its slot may be refilled (once MXNet has finished reading it)."""
        slot = getattr(batch, 'slot', None)
        if slot in self._held:
            self._held.remove(slot)
            self._free.append(slot)

    def close(self):
        if self._pool is not None:
            pool, self._pool = self._pool, None
            for worker in pool:
                worker.stop()

    def __del__(self):
        self.close()
