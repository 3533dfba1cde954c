"""Ctrl-C (SIGINT) handled between two units of work (a training step, an image, a video frame), never inside
one: raised inside a step, the KeyboardInterrupt landed in the OHEM op's Python callback and MXNet failed the
step; inside a folder or video run it left outputs without their JSON. The first Ctrl-C only sets a flag the
loop checks; a second one stops at once."""
import os
import signal

__all__ = ['DeferredInterrupt']


class DeferredInterrupt:
    """``with DeferredInterrupt() as stop:`` ... ``if stop.requested: break`` (or ``stop.check()``).

    :param notice: written to stderr at the first Ctrl-C
    :param exit_at_once: a second Ctrl-C exits the process with status 130 (every file it wrote is complete,
        being written atomically); else it raises KeyboardInterrupt where the program is
    """

    def __init__(self, notice=None, exit_at_once=False):
        self.requested = False
        self.notice = notice
        self.exit_at_once = exit_at_once
        self._old = None

    def _on_sigint(self, _signum, _frame):
        if self.requested:
            if self.exit_at_once:
                os.write(2, b'interrupted again: exiting now\n')
                os._exit(130)
            raise KeyboardInterrupt
        self.requested = True
        if self.notice:
            os.write(2, self.notice.encode() + b'\n')

    def __enter__(self):
        self._old = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(self, *exc):
        signal.signal(signal.SIGINT, self._old)

    def check(self):
        """KeyboardInterrupt where a Ctrl-C was asked for: at the end of a unit of work."""
        if self.requested:
            raise KeyboardInterrupt
