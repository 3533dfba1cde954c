"""RetinaFace for MXNet: config, symbols, data, training and evaluation.

Importing ``rcnn`` first (before ``mxnet``) lets the CUDA build of MXNet find the CUDA 11 libraries of the
``nvidia-*-cu11`` wheels (requirements-gpu.txt); see rcnn/cuda_wheels.py.
"""
from rcnn.cuda_wheels import preload as _preload_cuda_wheels

_preload_cuda_wheels()
