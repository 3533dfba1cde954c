"""CPU inference, and training on one CPU context, run MXNet's operators on the calling thread
(``MXNET_ENGINE_TYPE=NaiveEngine``).

Why: with MXNet's default threaded engine every operator runs on an engine worker thread whose OpenMP team goes
back to sleep between operators, so batch-of-one detection gains little from a second core; on the calling thread
one OpenMP team serves every operator of the forward pass and the second core pays off. Results are bitwise the
same; only scheduling changes. Training on one CPU context gains the same way; several contexts keep the threaded
engine with one engine worker each, so that they run concurrently, and a distributed job keeps MXNet's settings
(its kvstore server works on engine threads). Training also sets the compute threads: MXNet's own default is half
the logical CPUs. The measurements: docs/deployment.md (detection) and docs/training.md ("Choosing the CPU
defaults").

Chosen only where it cannot hurt: the CPU build of MXNet (the CUDA build keeps its asynchronous engine for GPU
streams), before MXNet is imported, never over a value the user set, and only by an explicit call: loading an
MXNet model on the CPU (``rcnn.core.inference``) and the training command (``rcnn.tools.train_command``).
"""
import argparse
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


def local_cpu_contexts(argv, environ=None):
    """How many CPU contexts train.py's arguments train on with a local kvstore (--cpus, at least 1); 0 where
    it trains on GPUs (--gpus or a visible GPU), in a distributed job, or where --cpus does not parse
    (train.py's own parser reports it)."""
    environ = os.environ if environ is None else environ
    pre = argparse.ArgumentParser(add_help=False)
    for flag in ('--cpus', '--gpus', '--kvstore'):
        pre.add_argument(flag, default='')
    known, _ = pre.parse_known_args(argv)
    try:
        cpus = int(known.cpus or 0)
    except ValueError:
        return 0
    visible = environ.get('CUDA_VISIBLE_DEVICES', '').strip()
    gpus = known.gpus.strip()
    if ((gpus and gpus != '-1') or (visible and not visible.startswith('-1') and cuda_mxnet() is not None)
            or 'dist' in known.kvstore or 'DMLC_ROLE' in environ):
        return 0
    return max(1, cpus)


def physical_cores():
    """Cores this process may run on: CPUs in its affinity mask, hyperthread siblings counted once, capped by
    a cgroup CPU quota (a container's --cpus)."""
    usable = sorted(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else range(os.cpu_count() or 1)
    cores = set()
    for cpu in usable:
        try:
            with open('/sys/devices/system/cpu/cpu%d/topology/thread_siblings_list' % cpu) as f:
                cores.add(f.read().strip())
        except OSError:
            cores.add(str(cpu))
    count = max(1, len(cores))
    try:
        with open('/sys/fs/cgroup/cpu.max') as f:
            quota, period = f.read().split()[:2]
        if quota != 'max':
            count = min(count, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return count


def prefer_training_defaults(argv):
    """train.py's CPU defaults, before MXNet loads and never over a value the user set: every core computes
    (OMP_NUM_THREADS = cores / contexts; without it MXNet's x86 build takes half the logical CPUs, one of two
    cores here); one context runs on the calling thread, several on one engine worker thread each. Returns
    (engine, compute threads per context), or None where train.py does not train on local CPU contexts."""
    contexts = local_cpu_contexts(argv)
    if not contexts or 'mxnet' in sys.modules:
        return None
    if 'MXNET_OMP_MAX_THREADS' not in os.environ:
        os.environ.setdefault('OMP_NUM_THREADS', str(max(1, physical_cores() // contexts)))
    if contexts == 1:
        engine = prefer_calling_thread_engine()
    else:  # one engine worker thread per context, so that the contexts compute at the same time
        os.environ.setdefault('MXNET_CPU_WORKER_NTHREADS', str(contexts))
        engine = os.environ.get('MXNET_ENGINE_TYPE')
    return engine, os.environ.get('OMP_NUM_THREADS')
