"""CPU inference runs MXNet's operators on the calling thread (``MXNET_ENGINE_TYPE=NaiveEngine``).

Why: with MXNet's default threaded engine, every operator runs on an engine worker thread whose OpenMP team
goes back to sleep between operators, so batch-of-one detection gained nothing from a second core (measured
on 2 AVX2 cores, mnet.25 fp32 at VGA: 28-30 ms on 1 thread, 24-36 ms on 2). On the calling thread one OpenMP
team serves every operator of the forward pass and the second thread pays off (16-17 ms); README
"Deployment speed" has the side-by-side numbers. Results are bitwise the same; only scheduling
changes. Chosen only where it cannot hurt: the CPU build of MXNet (the CUDA build keeps its asynchronous
engine for GPU streams), before MXNet is imported, and never over a value the user set.
"""
import os
import sys

from rcnn.cuda_wheels import cuda_mxnet

ENGINE = 'NaiveEngine'


def prefer_calling_thread_engine():
    """Set MXNET_ENGINE_TYPE=NaiveEngine for the CPU build unless set already; returns the engine in effect
    (None when MXNet was already imported, which fixes its engine)."""
    if 'mxnet' in sys.modules:
        return os.environ.get('MXNET_ENGINE_TYPE')
    if cuda_mxnet() is None:
        os.environ.setdefault('MXNET_ENGINE_TYPE', ENGINE)
    return os.environ.get('MXNET_ENGINE_TYPE')
