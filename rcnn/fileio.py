"""Safe output files: nothing is written through a symlink, every file appears whole or not at all.

Every tool writes its outputs through these helpers:

- ``atomic_path(path)`` yields a fresh temporary name beside `path` (created with ``O_EXCL`` by
  ``mkstemp``, with `path`'s extension so that writers that pick a format by name still work); once the
  block ends without an error the temporary file replaces `path` in one rename, else it is removed.
- ``atomic_open(path, mode)`` is the same for a file object.
- ``open_append(path)`` / ``open_lock(path)`` open a log or lock file without following a symlink.

A `path` that is a symlink is refused (``UnsafeOutputError``, naming it): a planted link must never make a
tool truncate, overwrite or append to the file it points to. Results get the usual permissions
(0666 less the umask), not mkstemp's 0600.
"""
import contextlib
import errno
import os
import tempfile

__all__ = ['UnsafeOutputError', 'refuse_symlink', 'write_error', 'atomic_path', 'atomic_open', 'open_append', 'open_lock',
           'same_file_or_inside', 'check_writable_dir']


class UnsafeOutputError(OSError):
    """An output path is a symlink (or otherwise unsafe to write)."""


def refuse_symlink(path, what='output file'):
    if os.path.islink(path):
        raise UnsafeOutputError('%s %s is a symbolic link (to %s): not writing through it; remove the link or '
                                'choose another output' % (what, path, os.readlink(path)))


def write_error(path, err):
    """An OSError for a writer that failed inside a library (MXNet's 'FileStream.Write incomplete'): ENOSPC when
    the device holding `path` is (nearly) full, else EIO with the library's last line."""
    try:
        st = os.statvfs(os.path.dirname(os.path.abspath(path)))
        full = st.f_bavail * st.f_frsize < 1 << 20
    except OSError:
        full = False
    if full:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
    return OSError(errno.EIO, 'write failed: %s' % str(err).strip().splitlines()[-1], path)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path, what='output file'):
    """Yield a temporary path in `path`'s folder; on success it replaces `path` atomically."""
    refuse_symlink(path, what)
    folder = os.path.dirname(os.path.abspath(path))
    stem, ext = os.path.splitext(os.path.basename(path))
    fd, tmp = tempfile.mkstemp(prefix='.%s.' % stem, suffix='.tmp' + ext, dir=folder)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        refuse_symlink(path, what)  # planted while we wrote
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_open(path, mode='w', what='output file', **kwargs):
    """A file object on a temporary file that replaces `path` when the block ends without an error."""
    with atomic_path(path, what) as tmp:
        with open(tmp, mode, **kwargs) as f:
            yield f


def open_append(path, what='log file'):
    """Text file opened for appending; refuses a symlink (O_NOFOLLOW)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o666)
    except OSError as err:
        if os.path.islink(path):
            raise UnsafeOutputError('%s %s is a symbolic link: not appending through it' % (what, path)) from None
        raise err
    return os.fdopen(fd, 'a')


def open_lock(path):
    """Read/write file object for a lock file; refuses a symlink."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
    except OSError as err:
        if os.path.islink(path):
            raise UnsafeOutputError('lock file %s is a symbolic link: not writing through it' % path) from None
        raise err
    return os.fdopen(fd, 'r+')


def same_file_or_inside(path, folder):
    """Whether `path` is `folder` or lies inside it once every symlink is resolved (realpath, not abspath)."""
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def check_writable_dir(folder, what='output folder'):
    """Create `folder` when needed and prove a file can be made in it; OSError with one sentence if not."""
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix='.write-test-'):
            pass
    except OSError as err:
        raise OSError('cannot write to %s %s: %s' % (what, folder, err.strerror or err)) from None
