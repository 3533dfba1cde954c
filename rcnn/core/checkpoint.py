"""Checkpoints in MXNet's format (``prefix-symbol.json`` + ``prefix-%04d.params``): checked loading
with errors that name the file, and atomic saving (write to a temporary file, then rename)."""
import fcntl
import glob
import os
import re
import zipfile

from rcnn.compat import mx, quiet_native_log
import numpy as np

from rcnn.fileio import atomic_path, open_lock, write_error

__all__ = ['CheckpointError', 'checkpoint_paths', 'list_epochs', 'load_checkpoint', 'load_params',
           'check_params_fit', 'non_finite', 'save_checkpoint', 'latest_epoch', 'remove_epochs', 'PrefixLock',
           'states_path', 'legacy_states_path', 'save_momentum', 'read_momentum', 'load_momentum', 'momentum_of']
MOMENTUM_FORMAT = 'retinaface-sgd-momentum-1'  # the schema of <prefix>-NNNN.states.npz


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable or does not fit the graph."""


def checkpoint_paths(prefix, epoch):
    return '%s-symbol.json' % prefix, '%s-%04d.params' % (prefix, epoch)


def states_path(prefix, epoch):
    """The optimizer state (SGD momentum) saved beside ``prefix-%04d.params``: an .npz of named arrays."""
    return '%s-%04d.states.npz' % (prefix, epoch)


def legacy_states_path(prefix, epoch):
    """Where earlier versions wrote the momentum as MXNet's pickle (never loaded: unpickling runs code)."""
    return '%s-%04d.states' % (prefix, epoch)


def _updater_and_keys(mod):
    """(updater, {param name: [state keys]}) of a bound Module with its optimizer: the updater runs in the
    kvstore (keys are names) or in the Module (keys are param index x devices + device)."""
    names = mod._exec_group.param_names
    if mod._update_on_kvstore:
        updater = getattr(mod._kvstore, '_updater', None)
        return updater, {n: [n] for n in names}
    devices = len(mod._context)
    return mod._updater, {n: [i * devices + k for k in range(devices)] for i, n in enumerate(names)}


def momentum_of(mod):
    """{param name: SGD momentum (numpy)} of the parameters updated so far; None where the states live on
    dist kvstore servers (not readable from a worker)."""
    updater, keys = _updater_and_keys(mod)
    if updater is None:
        return None
    out = {}
    for name, ks in keys.items():
        state = next((updater.states[k] for k in ks if k in updater.states), None)
        if state is not None:  # SGD with momentum: one NDArray per parameter
            out[name] = state.asnumpy()
    return out


def save_momentum(mod, path):
    """The SGD momentum of every parameter by name, atomically, as a data-only .npz (no pickle); None where
    the optimizer runs on dist kvstore servers."""
    momentum = momentum_of(mod)
    if momentum is None:
        return None
    arrays = {'momentum:' + k: v for k, v in momentum.items()}
    arrays['format'] = np.array(MOMENTUM_FORMAT)
    with atomic_path(path, 'optimizer state') as tmp:
        with open(tmp, 'wb') as f:
            np.savez(f, **arrays)
    return path


def read_momentum(path):
    """{param name: momentum} from a .npz written by save_momentum (read without pickle); CheckpointError
    naming the file when it is not that schema."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise CheckpointError('cannot read optimizer state %s (truncated, or not an .npz of plain arrays): %s'
                              % (path, err)) from None
    if str(arrays.pop('format', '')) != MOMENTUM_FORMAT:
        raise CheckpointError('optimizer state %s is not a %s file' % (path, MOMENTUM_FORMAT))
    bad = [k for k in arrays if not k.startswith('momentum:')]
    if bad:
        raise CheckpointError('optimizer state %s: entry %r is not momentum:<parameter>' % (path, bad[0]))
    return {k[len('momentum:'):]: v for k, v in arrays.items()}


def load_momentum(mod, momentum, path):
    """Set the SGD momentum of `mod` from read_momentum's dict (on any number of devices: the states are by
    parameter name); CheckpointError naming `path` where a name or shape does not fit. Returns the count."""
    updater, keys = _updater_and_keys(mod)
    if updater is None:
        raise CheckpointError('%s: the optimizer of a dist kvstore runs on the parameter servers; its momentum '
                              'cannot be set from a worker' % path)
    params = dict(zip(mod._exec_group.param_names, mod._exec_group.param_arrays))
    for name, value in momentum.items():
        if name not in keys:
            raise CheckpointError('optimizer state %s: %s is no parameter of this graph' % (path, name))
        if tuple(value.shape) != tuple(params[name][0].shape):
            raise CheckpointError('optimizer state %s: %s has shape %s, the parameter %s'
                                  % (path, name, value.shape, params[name][0].shape))
    for name, value in momentum.items():
        weights = params[name][:1] if mod._update_on_kvstore else params[name]
        for k, weight in zip(keys[name], weights):
            updater.states[k] = mx.nd.array(value, ctx=weight.context, dtype=value.dtype)
            updater.states_synced[k] = False  # moved to the weight's context at its first update
    return len(momentum)


def list_epochs(prefix):
    """Epochs that have a params file for this prefix, ascending."""
    pat = re.compile(re.escape(os.path.basename(prefix)) + r'-(\d{4})\.params$')
    found = (pat.match(os.path.basename(p)) for p in glob.glob(glob.escape(prefix) + '-*.params'))
    return sorted(int(m.group(1)) for m in found if m)


def latest_epoch(prefix):
    epochs = list_epochs(prefix)
    return epochs[-1] if epochs else None


def load_params(params_path):
    """params file -> (arg_params, aux_params) dicts of NDArrays; CheckpointError naming the file."""
    if not os.path.isfile(params_path):
        raise CheckpointError('params file not found: %s' % params_path)
    try:
        saved = mx.nd.load(params_path)
    except mx.base.MXNetError as err:
        raise CheckpointError('cannot read params file %s (truncated or not an MXNet .params file): %s'
                              % (params_path, str(err).strip().splitlines()[-1])) from None
    if not isinstance(saved, dict):
        raise CheckpointError('params file %s holds no named parameters' % params_path)
    args, auxs = {}, {}
    for key, value in saved.items():
        kind, _, name = key.partition(':')
        if kind == 'arg':
            args[name] = value
        elif kind == 'aux':
            auxs[name] = value
        else:
            raise CheckpointError('params file %s: entry %r is not arg:/aux: prefixed' % (params_path, key))
    return args, auxs


def load_checkpoint(prefix, epoch):
    """(symbol, arg_params, aux_params) of ``prefix`` at ``epoch``, with clear errors for missing files."""
    sym_path, params_path = checkpoint_paths(prefix, epoch)
    if not os.path.isfile(params_path):
        epochs = list_epochs(prefix)
        hint = ('available epochs for this prefix: %s' % ', '.join(map(str, epochs)) if epochs else
                'no %s-NNNN.params file exists; put the published model files under model/ '
                '(e.g. model/mnet.25-symbol.json and model/mnet.25-0000.params)' % prefix)
        raise CheckpointError('params file not found: %s (%s)' % (params_path, hint))
    if not os.path.isfile(sym_path):
        raise CheckpointError('symbol file not found: %s (the params %s need the graph saved next to them '
                              'as <prefix>-symbol.json)' % (sym_path, params_path))
    try:
        with quiet_native_log():  # MXNet announces its upgrade of an older graph file: nothing to act on
            sym = mx.sym.load(sym_path)
    except (mx.base.MXNetError, ValueError) as err:
        raise CheckpointError('cannot read symbol file %s: %s' % (sym_path, str(err).strip().splitlines()[-1])) \
            from None
    args, auxs = load_params(params_path)
    return sym, args, auxs


def check_params_fit(sym, args, auxs, params_path, data_shape):
    """Raise CheckpointError when the params miss graph parameters or have other shapes; else return the
    graph's output shapes for that input (callers check them without inferring again)."""
    arg_shapes, out_shapes, aux_shapes = sym.infer_shape(data=data_shape)
    expected = dict(zip(sym.list_arguments(), arg_shapes))
    expected.pop('data', None)
    expected.update(zip(sym.list_auxiliary_states(), aux_shapes))
    given = dict(args, **auxs)
    missing = [n for n in expected if n not in given]
    wrong = ['%s %s (graph wants %s)' % (n, given[n].shape, expected[n]) for n in expected
             if n in given and tuple(given[n].shape) != tuple(expected[n])]
    if missing or wrong:
        what = ('%d parameters missing (%s)' % (len(missing), ', '.join(missing[:4])) if missing else
                '%d parameters of another shape (%s)' % (len(wrong), '; '.join(wrong[:3])))
        raise CheckpointError('params file %s does not fit its graph: %s. Was it saved for another network? '
                              'Check the prefix and epoch.' % (params_path, what))
    return out_shapes


def non_finite(args, auxs):
    """Names of the tensors holding NaN or inf (arg: / aux: prefixed), in sorted order."""
    bad = []
    for kind, params in (('arg', args), ('aux', auxs)):
        for name in sorted(params):
            value = params[name]
            value = value.asnumpy() if hasattr(value, 'asnumpy') else value
            if not np.isfinite(value).all():
                bad.append('%s:%s' % (kind, name))
    return bad


def remove_epochs(prefix):
    """Delete every <prefix>-NNNN.params / .states (a restarted run must not leave a mixed set); returns them."""
    removed = []
    for epoch in list_epochs(prefix):
        for path in (checkpoint_paths(prefix, epoch)[1], states_path(prefix, epoch),
                     legacy_states_path(prefix, epoch)):
            if os.path.exists(path):
                os.remove(path)
                removed.append(path)
    return removed


class PrefixLock:
    """An exclusive lock on a checkpoint prefix (``<prefix>.lock``, flock): two runs never write one prefix.

    Released when the process ends, however it ends (the kernel drops flock locks with the file).
    """

    def __init__(self, prefix):
        self.path = prefix + '.lock'
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self._file = open_lock(self.path)
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._file.seek(0)
            holder = self._file.read().strip() or 'another process'
            self._file.close()
            raise CheckpointError('%s is locked by a running training (%s): two runs must not write the same '
                                  'checkpoints; wait for it, or use another --prefix' % (self.path, holder)) from None
        self._file.truncate(0)
        self._file.write('pid %d' % os.getpid())
        self._file.flush()

    def release(self):
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def save_checkpoint(prefix, epoch, sym, args, auxs):
    """Write prefix-symbol.json and prefix-%04d.params atomically (temp file + os.replace).

    Refuses (CheckpointError naming the tensors) to write parameters that hold NaN or inf.
    """
    bad = non_finite(args, auxs)
    if bad:
        raise CheckpointError('not saving %s-%04d.params: %d tensors hold NaN/inf (%s)'
                              % (prefix, epoch, len(bad), ', '.join(bad[:4])))
    sym_path, params_path = checkpoint_paths(prefix, epoch)
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    payload = {'arg:%s' % k: v.as_in_context(mx.cpu()) for k, v in args.items()}
    payload.update({'aux:%s' % k: v.as_in_context(mx.cpu()) for k, v in auxs.items()})
    with atomic_path(params_path, 'checkpoint') as tmp_params, atomic_path(sym_path, 'checkpoint') as tmp_sym:
        try:
            sym.save(tmp_sym)
            mx.nd.save(tmp_params, payload)
        except mx.base.MXNetError as err:
            raise write_error(params_path, err) from None
    return sym_path, params_path
