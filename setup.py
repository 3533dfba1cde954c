"""The package, and the Cython kernels in rcnn/cython.

    pip install .              # the package from a clone (kernels built by the install), with the console commands
    pip install ".[onnx]"      # + ONNX Runtime: the detector, the CLI and the evaluation without MXNet
    pip install ".[train]"     # + what training and the PR plots need (MXNet itself: README "Install")
    python setup.py build_ext --inplace   # the kernels in the checkout (what ``make`` runs)

bbox, anchors and cpu_nms always; gpu_nms (+ nms_kernel.cu) only when CUDA is found through
$CUDAHOME / $CUDA_HOME or an ``nvcc`` on PATH. Set RETINAFACE_NO_CUDA=1 to skip it on purpose.
"""
import os
import re
import shutil
import subprocess
import sys

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

# Architectures we want in the fat binary; intersected with what the installed nvcc can target
# (CUDA 12 still builds sm_70, CUDA 13 starts at sm_75).
WANTED_ARCHS = (70, 75, 80, 86, 89, 90)
NUMPY_MACROS = [('NPY_NO_DEPRECATED_API', 'NPY_1_7_API_VERSION')]


def find_cuda():
    """Return {'home', 'nvcc', 'include', 'lib'} or None when no CUDA toolkit is found."""
    if os.environ.get('RETINAFACE_NO_CUDA'):
        return None
    home = os.environ.get('CUDAHOME') or os.environ.get('CUDA_HOME')
    nvcc = os.path.join(home, 'bin', 'nvcc') if home else shutil.which('nvcc')
    if not nvcc or not os.path.exists(nvcc):
        return None
    if not home:  # nvcc may be a wrapper script outside the toolkit: try its parent, then the usual place
        candidates = [os.path.dirname(os.path.dirname(os.path.realpath(nvcc))), '/usr/local/cuda']
        home = next((c for c in candidates if os.path.exists(os.path.join(c, 'include', 'cuda_runtime.h'))),
                    candidates[0])
    lib = next((os.path.join(home, d) for d in ('lib64', 'lib', 'targets/x86_64-linux/lib')
                if os.path.exists(os.path.join(home, d, 'libcudart_static.a'))), None)
    if lib is None or not os.path.exists(os.path.join(home, 'include', 'cuda_runtime.h')):
        return None
    return {'home': home, 'nvcc': nvcc, 'include': os.path.join(home, 'include'), 'lib': lib}


def gencode_flags(nvcc):
    try:
        out = subprocess.run([nvcc, '--list-gpu-arch'], capture_output=True, text=True, check=True).stdout
        available = {int(m) for m in re.findall(r'compute_(\d+)', out)}
    except (OSError, subprocess.CalledProcessError):
        available = set(WANTED_ARCHS)
    archs = [a for a in WANTED_ARCHS if a in available] or sorted(available)[:1]
    flags = ['-gencode=arch=compute_%d,code=sm_%d' % (a, a) for a in archs]
    flags.append('-gencode=arch=compute_%d,code=compute_%d' % (archs[-1], archs[-1]))  # PTX for newer cards
    return flags, archs


class BuildExt(build_ext):
    """Compiles .cu sources with nvcc, everything else with the normal compiler."""

    def build_extensions(self):
        self.compiler.src_extensions.append('.cu')
        default_compile = self.compiler._compile

        def _compile(obj, src, ext, cc_args, extra_postargs, pp_opts):
            if os.path.splitext(src)[1] == '.cu':
                cmd = [CUDA['nvcc'], '-c', src, '-o', obj, '-O3', '--fmad=false', '-Xcompiler', '-fPIC',
                       '-I' + CUDA['include'], '-Ircnn/cython'] + GENCODE
                self.spawn(cmd)
            else:
                default_compile(obj, src, ext, cc_args, extra_postargs, pp_opts)

        self.compiler._compile = _compile
        super().build_extensions()


def extension(name, sources, **kw):
    return Extension('rcnn.cython.' + name, sources, include_dirs=[np.get_include(), 'rcnn/cython'],
                     define_macros=NUMPY_MACROS, extra_compile_args=['-O3'], **kw)


extensions = [
    extension('bbox', ['rcnn/cython/bbox.pyx']),
    extension('anchors', ['rcnn/cython/anchors.pyx']),
    extension('cpu_nms', ['rcnn/cython/cpu_nms.pyx']),
]
CUDA = find_cuda()
if CUDA:
    GENCODE, ARCHS = gencode_flags(CUDA['nvcc'])
    print('setup.py: building gpu_nms with %s for sm_%s' % (CUDA['nvcc'], ', sm_'.join(map(str, ARCHS))))
    extensions.append(extension('gpu_nms', ['rcnn/cython/nms_kernel.cu', 'rcnn/cython/gpu_nms.pyx'],
                                language='c++', library_dirs=[CUDA['lib']],
                                libraries=['cudart_static', 'rt', 'dl', 'pthread']))
else:
    print('setup.py: no CUDA toolkit found (CUDAHOME/CUDA_HOME or nvcc on PATH): '
          'skipping gpu_nms; NMS runs on the CPU.', file=sys.stderr)

COMMANDS = [
    'retinaface = rcnn.tools.detect:main',            # python retinaface.py
    'retinaface-test = rcnn.tools.evaluate:main',     # python test.py
    'retinaface-train = rcnn.tools:train_command',        # python train.py
    'retinaface-export-onnx = rcnn.tools.export_onnx:main',
    'retinaface-quantize = rcnn.tools.quantize:main',
    'retinaface-eval = rcnn.dataset.widerface_eval:main',
    'retinaface-convert-wider = rcnn.dataset.convert_wider:main',
    'retinaface-check-data = rcnn.dataset.check:main',
]

setup(
    name='retinaface-mxnet',
    version='1.1.0',
    description='RetinaFace single-stage face detector (boxes + 5 landmarks) for MXNet, and on ONNX Runtime',
    python_requires='>=3.10',
    packages=find_packages(include=['rcnn', 'rcnn.*']),
    py_modules=['retinaface'],
    package_data={'rcnn.cython': ['*.pyx', '*.pxd', '*.cu', '*.hpp', '*.h']},
    install_requires=['numpy>=1.23', 'opencv-python-headless>=4.8', 'scipy>=1.10', 'tqdm>=4.60', 'easydict>=1.10'],
    extras_require={
        'onnx': ['onnxruntime>=1.17'],
        # MXNet is not listed: its metadata asks numpy < 2; install it with --no-deps (README "Install")
        'train': ['matplotlib>=3.7', 'requests', 'graphviz<0.9', 'setuptools'],
        'export': ['onnx>=1.14,<1.19'],
        'test': ['pytest>=7'],
    },
    entry_points={'console_scripts': COMMANDS},
    ext_modules=cythonize(extensions, compiler_directives={'language_level': 3}, quiet=True),
    cmdclass={'build_ext': BuildExt},
    zip_safe=False,
)
