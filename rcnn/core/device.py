"""Device selection with one clear message when a GPU is asked of a CPU build (or of a machine without it)."""
from rcnn.compat import mx

__all__ = ['DeviceError', 'check_gpus']


class DeviceError(ValueError):
    """A GPU id this MXNet cannot use."""


def check_gpus(ids, what):
    """Raise DeviceError unless every GPU id in `ids` exists for this MXNet.

    :param what: the flag or argument that asked for them, e.g. '--gpus 0,1' or 'ctx_id=0'
    """
    ids = list(ids)
    if not ids:
        return
    try:
        available = mx.context.num_gpus()
    except mx.base.MXNetError as err:  # a CUDA build whose driver cannot be used
        available, reason = 0, ': %s' % str(err).strip().splitlines()[0]
    else:
        reason = ''
    if max(ids) >= available or min(ids) < 0:
        if available:
            hint = ''
        elif mx.runtime.Features().is_enabled('CUDA'):
            hint = (' (a CUDA build of MXNet, but no usable GPU on this machine%s: check the NVIDIA driver with '
                    'nvidia-smi and CUDA_VISIBLE_DEVICES, or use the CPU: -1)' % reason)
        else:
            hint = (' (this is a CPU build of MXNet: install the CUDA build, see the README\'s GPU section, or use '
                    'the CPU: -1)')
        raise DeviceError('%s asks for GPU %d but this MXNet sees %d GPU(s)%s' % (what, max(ids), available, hint))
