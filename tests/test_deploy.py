"""Deployment plumbing: the CPU inference engine choice and the CUDA-wheel loader (GPU install)."""
import json
import os
import subprocess
import sys

import numpy as np

from conftest import ROOT, shared_path

DETECT = """
import json, os, sys
sys.path.insert(0, %r)
import cv2, retinaface
det = retinaface.RetinaFace(%r, 0, ctx_id=-1)
img = cv2.imread(%r)
runs = [det.detect(im, 0.5) for im in (img, img[:, ::-1], img)]  # one bound input, refilled in place
print(json.dumps({'engine': os.environ.get('MXNET_ENGINE_TYPE'), 'faces': [f.tolist() for f, _ in runs],
                  'points': [p.tolist() for _, p in runs]}))
"""


def detect_in_subprocess(prefix, image, **env):
    out = subprocess.run([sys.executable, '-c', DETECT % (ROOT, prefix, image)], capture_output=True, text=True,
                         env=dict(os.environ, OMP_NUM_THREADS='2', **env), check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_cpu_inference_runs_on_the_calling_thread_with_identical_results(mnet25_prefix):
    """`import retinaface` selects NaiveEngine for the CPU build (unless the user chose an engine), and the
    detections are bitwise those of MXNet's default threaded engine, call after call (the input is written
    into the bound array in place: a later image never sees the previous one's data)."""
    image = shared_path('images', 't4.jpg')
    default = detect_in_subprocess(mnet25_prefix, image)
    threaded = detect_in_subprocess(mnet25_prefix, image, MXNET_ENGINE_TYPE='ThreadedEnginePerDevice')
    assert default['engine'] == 'NaiveEngine'
    assert threaded['engine'] == 'ThreadedEnginePerDevice'  # the user's choice is kept
    for run in (default, threaded):
        assert len(run['faces'][0]) > 10
        assert run['faces'][2] == run['faces'][0] and run['points'][2] == run['points'][0]
        assert run['faces'][1] != run['faces'][0]  # the mirrored image was really computed
    for i in range(3):
        assert np.array_equal(np.array(default['faces'][i]), np.array(threaded['faces'][i]))
        assert np.array_equal(np.array(default['points'][i]), np.array(threaded['points'][i]))


def test_engine_is_left_alone_once_mxnet_is_imported():
    code = ('import os, sys; sys.path.insert(0, %r); from rcnn.compat import import_mxnet; import_mxnet(); from rcnn.cpu_engine import '
            'prefer_calling_thread_engine as p; print(p())' % ROOT)
    env = {k: v for k, v in os.environ.items() if k != 'MXNET_ENGINE_TYPE'}
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == 'None'


def test_cuda_wheel_loader_finds_wheel_libraries_on_sys_path(tmp_path, monkeypatch):
    """The loader looks for <entry>/nvidia/<package>/lib/<soname> on sys.path, as pip installs the
    nvidia-*-cu11 wheels; with the CPU build installed it loads nothing."""
    from rcnn import cuda_wheels
    for package, lib in cuda_wheels.LIBRARIES[:3]:
        folder = tmp_path / 'nvidia' / package / 'lib'
        folder.mkdir(parents=True, exist_ok=True)
        (folder / lib).write_bytes(b'\x7fELF')
    monkeypatch.setattr(sys, 'path', [str(tmp_path)] + sys.path)
    assert cuda_wheels.wheel_library('cuda_runtime', 'libcudart.so.11.0') == str(
        tmp_path / 'nvidia' / 'cuda_runtime' / 'lib' / 'libcudart.so.11.0')
    assert cuda_wheels.wheel_library('cudnn', 'libcudnn.so.8') is None
    assert cuda_wheels.library_dirs() == sorted({str(tmp_path / 'nvidia' / p / 'lib')
                                                 for p, _ in cuda_wheels.LIBRARIES[:3]})
    assert cuda_wheels.cuda_mxnet() is None  # this environment has the CPU wheel
    assert cuda_wheels.preload() == []


def test_requirements_gpu_pins_every_library_the_loader_loads():
    with open(os.path.join(ROOT, 'requirements-gpu.txt')) as f:
        pins = [line.split('#')[0].strip() for line in f if line.strip() and not line.startswith('#')]
    from rcnn import cuda_wheels
    packages = {'cuda_runtime': 'nvidia-cuda-runtime-cu11', 'cublas': 'nvidia-cublas-cu11',
                'cufft': 'nvidia-cufft-cu11', 'curand': 'nvidia-curand-cu11', 'cusolver': 'nvidia-cusolver-cu11',
                'cuda_nvrtc': 'nvidia-cuda-nvrtc-cu11', 'nvtx': 'nvidia-nvtx-cu11', 'nccl': 'nvidia-nccl-cu11',
                'cudnn': 'nvidia-cudnn-cu11', 'cusparse': 'nvidia-cusparse-cu11'}
    names = {p.split('==')[0] for p in pins}
    assert '-r requirements-base.txt' in pins
    # MXNet itself goes in with --no-deps (its metadata asks numpy < 2), by the command the file's header gives
    header = open(os.path.join(ROOT, 'requirements-gpu.txt')).read()
    assert 'pip install --no-deps mxnet-cu112==1.9.1' in header
    assert 'pip install --no-deps mxnet-cu117==1.9.1' in open(os.path.join(ROOT, 'requirements-gpu-cu117.txt')).read()
    assert {packages[p] for p, _ in cuda_wheels.LIBRARIES} <= names
    assert all('==' in p for p in pins if not p.startswith('-r'))
    assert any(p.startswith('nvidia-cudnn-cu11==8.') for p in pins)  # mxnet-cu112 links libcudnn.so.8
