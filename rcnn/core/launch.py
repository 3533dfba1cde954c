"""MXNet's distributed launcher (``mxnet/tools/launch.py`` + dmlc_tracker), usable on Python >= 3.9.

    python -m rcnn.core.launch -n 2 -s 1 --launcher ssh -H hosts python train.py --kvstore dist_sync ...
    python -m rcnn.core.launch -n 2 -s 1 --launcher local python train.py --kvstore dist_sync ...

The dmlc_tracker shipped with mxnet 1.9.1 calls ``Thread.isAlive``, removed in Python 3.9, so the
stock ``launch.py`` dies on Python 3.11 before any job starts. This restores that alias and then runs
the stock launcher unchanged, with all its options.
"""
import importlib.util
import os
import runpy
import sys
import threading


def main():
    if not hasattr(threading.Thread, 'isAlive'):
        threading.Thread.isAlive = threading.Thread.is_alive
    spec = importlib.util.find_spec('mxnet')
    if spec is None or not spec.origin:
        sys.exit('error: mxnet is not installed in this Python (%s)' % sys.executable)
    launcher = os.path.join(os.path.dirname(spec.origin), 'tools', 'launch.py')
    if not os.path.isfile(launcher):
        sys.exit('error: this mxnet has no tools/launch.py (%s)' % launcher)
    sys.argv[0] = launcher
    runpy.run_path(launcher, run_name='__main__')


if __name__ == '__main__':
    main()
