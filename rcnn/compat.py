"""MXNet 1.9.1 on today's numpy, and MXNet imported only when it is used.

MXNet 1.9.1 (the last release) reads numpy names that numpy has since removed. Before MXNet is imported,
``restore_numpy_names`` puts back exactly the names this numpy lacks, each as its own object, and nothing else;
no other module of this code depends on the numpy version. The names, with the MXNet file that reads each
(found by scanning every ``.py`` file of mxnet 1.9.1 against numpy 1.26, 2.0-2.5):

========================  ==========================  =====================================================
name                      removed in numpy            read by (site-packages/mxnet/...)
========================  ==========================  =====================================================
bool                      1.24 (back in 2.0)          numpy/utils.py, symbol/numpy/_symbol.py,
                                                      ndarray/numpy/_op.py, numpy/multiarray.py
PZERO NZERO PINF NINF     2.0                         numpy/utils.py (module constants, read at import)
NAN NaN
Inf                       2.0                         gluon/contrib/estimator/event_handler.py (a default)
alltrue msort             2.0                         numpy/fallback.py (re-exported at import)
mirr npv pmt ppmt pv rate 2.0 (stubs since 1.20)      numpy/fallback.py (re-exported at import)
in1d trapz                2.4                         numpy/fallback.py (re-exported at import)
product sometrue round_   2.0                         numpy_dispatch_protocol.py: looked up by name and used
                                                      as the key of MXNet's ``__array_function__`` table
========================  ==========================  =====================================================

The last three must be distinct function objects: an alias (``np.product = np.prod``) would be the same key as
``np.prod`` and replace MXNet's entry for it. The financial functions left numpy in 1.20 (numpy-financial) and
are restored as functions that raise, as numpy 1.20-1.26 kept them.

MXNet talks to numpy through ctypes (not numpy's C API), so numpy 2's ABI does not reach it.

``from rcnn.compat import mx`` gives a stand-in for the ``mxnet`` module that imports MXNet at its first use
(``mx.nd.array``, ``mx.cpu()``): code that does not touch MXNet -- the ONNX Runtime detector, the evaluation --
runs where MXNet is not installed, and the names above are always restored first. The import also loads the
CUDA wheels' libraries for ``mxnet-cu1xx`` (rcnn/cuda_wheels.py).
"""
import contextlib
import functools
import importlib
import importlib.util
import os
import re
import sys
import tempfile
import warnings

import numpy as np

__all__ = ['mx', 'import_mxnet', 'restore_numpy_names', 'mxnet_imported', 'engine_errors', 'MXNetMissingError',
           'RESTORED_NAMES']

INSTALL_HINT = 'pip install --no-deps mxnet==1.9.1 (CPU; README "Install" for the GPU builds)'


# Read by MXNet when it loads or at its first forward pass; set only where the user has not, and only when this
# module imports MXNet:
MXNET_DEFAULTS = {
    'MXNET_SUBGRAPH_VERBOSE': '0',  # no log line per bound input shape
    # oneDNN primitives kept per operator (one per input shape met), unbounded by default: images of many sizes
    # grew the process by ~200 MB per 1,000 sizes (bench/bench_memory.py)
    'MXNET_MKLDNN_CACHE_NUM': '64',
}


class MXNetMissingError(ImportError):
    """MXNet is not installed, and something that needs it was asked for."""


def _financial_stub(name):
    def stub(*args, **kwargs):
        raise RuntimeError('numpy.%s was removed from numpy in 1.20 (now in numpy-financial)' % name)
    stub.__name__ = stub.__qualname__ = name
    return stub


def _distinct(name, target):
    """A new function object behaving as `target` (an alias would share `target`'s identity)."""
    @functools.wraps(target)
    def function(*args, **kwargs):
        return target(*args, **kwargs)
    function.__name__ = function.__qualname__ = name
    return function


def _msort(a):
    return np.sort(a, axis=0)


def _in1d(ar1, ar2, assume_unique=False, invert=False):
    return np.isin(np.ravel(ar1), ar2, assume_unique=assume_unique, invert=invert)


# name -> what to restore it as (built only when this numpy lacks the name)
RESTORED_NAMES = {
    'bool': lambda: bool,
    'PZERO': lambda: 0.0,
    'NZERO': lambda: -0.0,
    'PINF': lambda: float('inf'),
    'NINF': lambda: float('-inf'),
    'NAN': lambda: float('nan'),
    'NaN': lambda: float('nan'),
    'Inf': lambda: float('inf'),
    'alltrue': lambda: _distinct('alltrue', np.all),
    'sometrue': lambda: _distinct('sometrue', np.any),
    'product': lambda: _distinct('product', np.prod),
    'round_': lambda: _distinct('round_', np.round),
    'msort': lambda: _msort,
    'in1d': lambda: _in1d,
    'trapz': lambda: _distinct('trapz', getattr(np, 'trapezoid', None) or np.trapz),
    'mirr': lambda: _financial_stub('mirr'),
    'npv': lambda: _financial_stub('npv'),
    'pmt': lambda: _financial_stub('pmt'),
    'ppmt': lambda: _financial_stub('ppmt'),
    'pv': lambda: _financial_stub('pv'),
    'rate': lambda: _financial_stub('rate'),
}


def _has(name):
    try:
        with warnings.catch_warnings():  # numpy 1.20-1.23 warn on np.bool (deprecated alias), then return it
            warnings.simplefilter('ignore')
            getattr(np, name)
        return True
    except AttributeError:
        return False


def restore_numpy_names():
    """Set the names of RESTORED_NAMES that this numpy lacks; returns the names set (empty on numpy 1.23)."""
    missing = [name for name in RESTORED_NAMES if not _has(name)]
    for name in missing:
        setattr(np, name, RESTORED_NAMES[name]())
    return missing


# MXNet's native log lines that say nothing to a user: dropped from what MXNet writes while it loads and while a
# graph file is read (everything else it writes there is passed on)
NATIVE_CHATTER = re.compile(r'MXNet start using engine|Loading symbol saved by previous version|'
                            r'Symbol successfully upgraded')


@contextlib.contextmanager
def quiet_native_log():
    """Hold what native code writes to stderr (fd 2) during the block; pass it on without NATIVE_CHATTER
    (all of it where RETINAFACE_MXNET_LOG=1)."""
    if os.environ.get('RETINAFACE_MXNET_LOG') == '1':
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable fd 2
        yield
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            kept = [ln for ln in held.read().decode(errors='replace').splitlines(True) if not NATIVE_CHATTER.search(ln)]
            if kept:
                sys.stderr.write(''.join(kept))
                sys.stderr.flush()


def mxnet_imported():
    return 'mxnet' in sys.modules


def import_mxnet():
    """The mxnet module, imported (once) after the numpy names and the CUDA wheels' libraries are in place.

    :raises MXNetMissingError: MXNet is not installed (the message says what to install)
    """
    module = sys.modules.get('mxnet')
    if module is not None and getattr(module, '__version__', None):
        return module
    if importlib.util.find_spec('mxnet') is None:
        raise MXNetMissingError('MXNet is not installed in %s: %s' % (sys.prefix, INSTALL_HINT))
    restore_numpy_names()
    for name, value in MXNET_DEFAULTS.items():
        os.environ.setdefault(name, value)
    from rcnn.cuda_wheels import preload
    preload()
    with quiet_native_log():
        module = importlib.import_module('mxnet')
        module.nd.waitall()  # starts the engine now, inside the quiet block (else it announces itself at exit)
    return module


def engine_errors():
    """The exception types a detector's forward pass raises for a bad input: ValueError, and MXNet's
    MXNetError where MXNet is loaded (an ONNX model never loads it)."""
    return (ValueError, mx.base.MXNetError) if mxnet_imported() else (ValueError,)


class _LazyMXNet:
    """Stands for the mxnet module; imports it at the first attribute read."""

    def __getattr__(self, name):
        return getattr(import_mxnet(), name)

    def __repr__(self):
        return '<mxnet, imported at first use (rcnn.compat)%s>' % (': imported' if mxnet_imported() else '')


mx = _LazyMXNet()
