"""The two engines behind ``RetinaFace``: an MXNet checkpoint, or its ONNX export on ONNX Runtime.

Both take the detector's normalised (B, 3, H, W) float32 input and return the graph's outputs as numpy arrays
in graph order, with the classification heads as face probabilities; everything else (anchors, decoding, NMS,
voting, flip, scales) is the detector's own numpy code, shared by both. ``load_model`` picks the engine by the
path: a ``.onnx`` file runs on ONNX Runtime and never imports MXNet.
"""
import collections
import ctypes
import json
import os

import numpy as np

from rcnn.compat import MXNetMissingError, mx
from rcnn.core.checkpoint import CheckpointError, check_params_fit, load_checkpoint, non_finite
from rcnn.core.device import check_gpus
from rcnn.cpu_engine import prefer_calling_thread_engine
from rcnn.processing.decode import two_class_softmax
from rcnn.names import PRESET_ATTR

__all__ = ['is_onnx', 'load_model', 'MXNetModel', 'OnnxModel', 'PRESET_ATTR', 'PRESET_METADATA', 'trained_preset']

PRESET_METADATA = 'retinaface.anchor_preset'  # the same, in an ONNX export's metadata
MAX_BOUND_SHAPES = 8  # executors kept bound at once (one per input shape)
# ... and at most this many input pixels (batch x H x W) over all of them: memory grows with the pixels bound
# (about 140 bytes per pixel for mnet.25), so five scales of a 5334x2767 photo no longer keep ~6 GB alive.
# The newest executor is always kept; release() frees them all.
MAX_BOUND_PIXELS = 16_000_000
PROBE = (1, 3, 640, 640)  # input shape a model is checked on when it loads


def is_onnx(prefix):
    """Whether a model path names an ONNX export (it ends in .onnx) rather than a checkpoint prefix."""
    return str(prefix).lower().endswith('.onnx')


def load_model(prefix, epoch, ctx_id):
    """The engine for `prefix`: OnnxModel for an .onnx file, else MXNetModel(prefix, epoch)."""
    if is_onnx(prefix):
        return OnnxModel(prefix, ctx_id)
    try:
        return MXNetModel(prefix, epoch, ctx_id)
    except MXNetMissingError as err:
        raise MXNetMissingError('%s; or run its ONNX export without MXNet (python -m rcnn.tools.export_onnx where '
                                'MXNet is installed, then RetinaFace(\'model.onnx\') / --prefix model.onnx)'
                                % err) from None


def trained_preset(sym):
    """The anchor preset a graph records (train.py writes it into the test graph), or None (published models)."""
    presets = {attrs[PRESET_ATTR] for attrs in sym.attr_dict().values() if PRESET_ATTR in attrs}
    return presets.pop() if len(presets) == 1 else None


def writable_host_view(array):
    """A numpy view of a float32 CPU NDArray's memory, to write its next value in place (no copy).

    It first waits until the engine has no pending read or write of the array (the previous forward is
    done), so filling the view cannot race with a computation; the view is valid until the array is next
    used by the engine.
    """
    if array.context.device_type != 'cpu' or array.dtype != np.float32:
        raise TypeError('writable_host_view needs a float32 CPU array, got %s on %s' % (array.dtype, array.context))
    mx.base.check_call(mx.base._LIB.MXNDArrayWaitToWrite(array.handle))
    ptr = ctypes.c_void_p()
    mx.base.check_call(mx.base._LIB.MXNDArrayGetData(array.handle, ctypes.byref(ptr)))
    return np.ctypeslib.as_array((ctypes.c_float * array.size).from_address(ptr.value)).reshape(array.shape)


def cls_softmax_on_host(sym):
    """(graph, output indices): the graph with each classification head's softmax cut off where it is the
    test graphs' ``Reshape(0, 2, -1, 0) -> SoftmaxActivation(mode='channel') -> Reshape`` chain, so that
    output gives the (B, 2A, H, W) scores ``two_class_softmax`` turns into the same probabilities. Outputs
    keep their order; other outputs and chains of another shape are left as they are.

    Why: on the CPU, MXNet's channel softmax takes several times longer than the same arithmetic in numpy.
    """
    graph = json.loads(sym.tojson())
    nodes = graph['nodes']
    internals = sym.get_internals()
    available = set(internals.list_outputs())

    def op(node_id, name, **attrs):
        node = nodes[node_id]
        have = node.get('attrs', {})
        if node['op'] != name or any(have.get(k, '').replace(' ', '') != v for k, v in attrs.items()):
            return None
        return node['inputs'][0]

    outputs, moved = [], []
    for i, (node_id, _, _) in enumerate(graph['heads']):
        source = None
        soft = op(node_id, 'Reshape')
        inner = soft and op(soft[0], 'SoftmaxActivation', mode='channel')
        src = inner and op(inner[0], 'Reshape', shape='(0,2,-1,0)')
        if src is not None:
            name = nodes[src[0]]['name']
            for candidate in (name + '_output', '%s_output%d' % (name, src[1])):
                if candidate in available:
                    source = internals[candidate]
                    break
        if source is None:
            outputs.append(sym[i])
        else:
            outputs.append(source)
            moved.append(i)
    return (mx.sym.Group(outputs) if moved else sym), moved


class MXNetModel:
    """A checkpoint (``prefix-symbol.json`` + ``prefix-%04d.params``) bound on one device, one executor per
    input shape (LRU)."""

    kind = 'mxnet'

    def __init__(self, prefix, epoch, ctx_id):
        if ctx_id >= 0:
            check_gpus([ctx_id], 'ctx_id=%d (--gpu %d)' % (ctx_id, ctx_id))
        else:
            prefer_calling_thread_engine()  # only before MXNet is first imported, and never over the user's choice
        self.ctx = mx.gpu(ctx_id) if ctx_id >= 0 else mx.cpu()
        self.source = '%s-symbol.json' % prefix
        self.sym, args, auxs = load_checkpoint(prefix, epoch)
        self.params_path = '%s-%04d.params' % (prefix, epoch)
        self.output_names = self.sym.list_outputs()
        self.preset = trained_preset(self.sym)
        self.errors = (mx.base.MXNetError,)  # what a forward pass may raise besides ValueError
        try:
            self.probe_shapes = [tuple(s) for s in check_params_fit(self.sym, args, auxs, self.params_path, PROBE)]
        except mx.base.MXNetError as err:
            raise CheckpointError('symbol %s cannot run on a %s input: %s'
                                  % (self.source, PROBE, str(err).strip().splitlines()[-1])) from None
        bad = non_finite(args, auxs)
        if bad:
            raise CheckpointError('params file %s holds NaN/inf in %d tensors (%s): the training that wrote it '
                                  'diverged; use an earlier epoch' % (self.params_path, len(bad), ', '.join(bad[:4])))
        # on the CPU the face probabilities are computed from the scores in numpy (cls_softmax_on_host)
        self._bind_sym, self._host_softmax = (cls_softmax_on_host(self.sym) if self.ctx.device_type == 'cpu'
                                              else (self.sym, []))
        self._args = {k: v.as_in_context(self.ctx) for k, v in args.items()}
        self._auxs = {k: v.as_in_context(self.ctx) for k, v in auxs.items()}
        self._executors = collections.OrderedDict()

    def _executor(self, shape):
        """(executor, host input buffer) bound for this input shape, reused across calls (LRU)."""
        entry = self._executors.get(shape)
        if entry is not None:
            self._executors.move_to_end(shape)
            return entry
        args = {k: v for k, v in self._args.items() if k in self._bind_sym.list_arguments()}
        args['data'] = mx.nd.zeros(shape, ctx=self.ctx)
        # on the CPU the input is converted straight into the bound array (no copy); on a GPU through a
        # reused host buffer (no page faults per call)
        entry = (self._bind_sym.bind(self.ctx, args, grad_req='null', aux_states=self._auxs),
                 None if self.ctx.device_type == 'cpu' else np.empty(shape, dtype=np.float32))
        self._executors[shape] = entry
        while len(self._executors) > 1 and (len(self._executors) > MAX_BOUND_SHAPES or sum(
                np.prod(k[:1] + k[2:]) for k in self._executors) > MAX_BOUND_PIXELS):
            self._executors.popitem(last=False)
        return entry

    def run(self, shape, fill):
        """Outputs for the input that ``fill(out)`` writes into a float32 array of `shape`."""
        exe, buf = self._executor(tuple(shape))
        if buf is None:
            fill(writable_host_view(exe.arg_dict['data']))
        else:
            fill(buf)
            exe.arg_dict['data'][:] = buf
        exe.forward(is_train=False)
        outputs = [o.asnumpy() for o in exe.outputs]
        for i in self._host_softmax:
            outputs[i] = two_class_softmax(outputs[i])
        return outputs

    def release(self):
        self._executors.clear()


class OnnxModel:
    """An ONNX export (``rcnn.tools.export_onnx``) on ONNX Runtime: no MXNet needed."""

    kind = 'onnx'
    sym = None

    def __init__(self, path, ctx_id):
        try:
            import onnxruntime as ort
        except ImportError:
            raise ImportError('an .onnx model needs onnxruntime: pip install onnxruntime (or pip install '
                              '".[onnx]" in the checkout)') from None
        if not os.path.isfile(path):
            raise CheckpointError('ONNX model not found: %s (write one with python -m rcnn.tools.export_onnx)'
                                  % path)
        providers = ['CPUExecutionProvider']
        if ctx_id >= 0:
            if 'CUDAExecutionProvider' not in ort.get_available_providers():
                raise ValueError('ctx_id=%d (--gpu %d) asks for a GPU, but this onnxruntime has no CUDA provider '
                                 '(install onnxruntime-gpu, or use the CPU: -1)' % (ctx_id, ctx_id))
            providers = [('CUDAExecutionProvider', {'device_id': ctx_id})] + providers
        self.source = self.params_path = path
        try:
            self.session = ort.InferenceSession(path, providers=providers)
        except Exception as err:  # onnxruntime raises its own exception types for unreadable or invalid files
            raise CheckpointError('cannot load ONNX model %s: %s' % (path, str(err).strip().splitlines()[-1])) \
                from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise CheckpointError('%s: expected one (batch, 3, height, width) input, got %s'
                                  % (path, ', '.join('%s %s' % (i.name, i.shape) for i in inputs)))
        self.input_name = inputs[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.preset = self.session.get_modelmeta().custom_metadata_map.get(PRESET_METADATA)
        self.errors = ()
        try:
            probe = {self.input_name: np.zeros(PROBE, np.float32)}
            self.probe_shapes = [o.shape for o in self.session.run(None, probe)]
        except Exception as err:
            raise CheckpointError('%s cannot run on a %s input: %s'
                                  % (path, PROBE, str(err).strip().splitlines()[-1])) from None

    def run(self, shape, fill):
        tensor = np.empty(shape, dtype=np.float32)
        fill(tensor)
        return self.session.run(None, {self.input_name: tensor})

    def release(self):
        pass
