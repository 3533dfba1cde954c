"""Learning-rate schedule of the recipe as an MXNet LR scheduler (a pure function of the iteration).

No MXNet import here: with ``--kvstore dist_sync`` the parameter server unpickles the optimizer, scheduler
included, while ``import mxnet`` is still running (the server loop starts inside it), before
``mx.lr_scheduler`` exists. A subclass of ``mx.lr_scheduler.LRScheduler`` failed to unpickle there, the server
was left without an optimizer and stored the summed gradients as the weights. MXNet needs of a scheduler only
a ``base_lr`` attribute and a call with the update count.

lr_step epochs become iteration boundaries (epoch x iterations per epoch). Factors per boundary:
- 8 boundaries (resnet '1,2,3,4,5,55,68,80'): five warm-up steps x WARMUP_STEP_FACTOR, then x 0.1 three times;
- 5 boundaries: x 0.5, 0.5, 0.4, 0.1, 0.1;
- otherwise x 0.1 at each.
"""
__all__ = ['WARMUP_STEP_FACTOR', 'step_factors', 'RetinaFaceScheduler', 'parse_lr_steps']
WARMUP_STEP_FACTOR = 10 ** 0.2  # five steps multiply the LR by 10 (the original wrote 1.5849)
FIVE_STEP_FACTORS = (0.5, 0.5, 0.4, 0.1, 0.1)
DECAY = 0.1


def parse_lr_steps(text):
    """'55,68,80' -> [55, 68, 80] (sorted, unique); ValueError with the flag text otherwise."""
    try:
        steps = sorted({int(s) for s in str(text).split(',') if s.strip()})
    except ValueError:
        raise ValueError('--lr_step must be comma-separated epochs, e.g. 55,68,80; got %r' % text) from None
    if any(s <= 0 for s in steps):
        raise ValueError('--lr_step epochs must be positive, got %r' % text)
    return steps


def step_factors(num_steps):
    if num_steps == 8:
        return (WARMUP_STEP_FACTOR,) * 5 + (DECAY,) * 3
    if num_steps == 5:
        return FIVE_STEP_FACTORS
    return (DECAY,) * num_steps


class RetinaFaceScheduler:
    """lr(it) = base_lr x product of the factors of all boundaries <= it, `it` the 0-based index of the batch
    (boundaries in iterations): the batch that opens epoch e of a step e is the first with the new rate, as in
    the original (its batch callback changed the rate when the batch counter reached e x iterations)."""

    def __init__(self, base_lr, lr_steps, iters_per_epoch):
        self.base_lr = base_lr
        self.boundaries = [int(e * iters_per_epoch) for e in lr_steps]
        self.factors = step_factors(len(lr_steps))

    def lr_at_iter(self, it):
        lr = self.base_lr
        for boundary, factor in zip(self.boundaries, self.factors):
            if it >= boundary:
                lr *= factor
        return lr

    def __call__(self, num_update):
        """MXNet's call: `num_update` counts the updates including the one being made (1 on the first batch)."""
        return self.lr_at_iter(num_update - 1)
