"""Learning-rate schedule of the recipe as an MXNet LR scheduler (a pure function of the iteration).

lr_step epochs become iteration boundaries (epoch x iterations per epoch). Factors per boundary:
- 8 boundaries (resnet '1,2,3,4,5,55,68,80'): five warm-up steps x WARMUP_STEP_FACTOR, then x 0.1 three times;
- 5 boundaries: x 0.5, 0.5, 0.4, 0.1, 0.1;
- otherwise x 0.1 at each.
"""
import mxnet as mx

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


class RetinaFaceScheduler(mx.lr_scheduler.LRScheduler):
    """lr(it) = base_lr x product of the factors of all boundaries <= it (boundaries in iterations)."""

    def __init__(self, base_lr, lr_steps, iters_per_epoch):
        super().__init__(base_lr)
        self.boundaries = [int(e * iters_per_epoch) for e in lr_steps]
        self.factors = step_factors(len(lr_steps))

    def lr_at_iter(self, it):
        lr = self.base_lr
        for boundary, factor in zip(self.boundaries, self.factors):
            if it >= boundary:
                lr *= factor
        return lr

    def __call__(self, num_update):
        return self.lr_at_iter(num_update)
