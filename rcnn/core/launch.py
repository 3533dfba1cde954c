"""Distributed launcher for MXNet's parameter-server kvstore (``dist_sync``, ``dist_async``...).

    python -m rcnn.core.launch -n 2 -s 1 --launcher local python train.py --kvstore dist_sync ...
    python -m rcnn.core.launch -n 2 -s 1 --launcher ssh -H hosts python train.py --kvstore dist_sync ...

``--launcher local`` (every process on this machine) is run here: one scheduler, the servers and the
workers, each in its own process group with the DMLC_* environment MXNet reads. The job ends as a whole:
when every worker has finished it waits for the servers and the scheduler, and when any process dies or
fails (a killed worker, a bad flag) it names that process, stops all the others (their data workers too)
and exits non-zero, so a dead worker never leaves the rest waiting forever at a barrier. Ctrl-C or a
SIGTERM to the launcher stops the whole job the same way; its children are also told to die with it
(PR_SET_PDEATHSIG) should the launcher itself be killed.

Other launchers (ssh, mpi, sge, yarn) run the stock ``mxnet/tools/launch.py`` with dmlc_tracker, after
restoring ``Thread.isAlive`` (removed in Python 3.9), which the stock tracker still calls.
"""
import argparse
import ctypes
import importlib.util
import os
import runpy
import signal
import socket
import subprocess
import sys
import threading
import time

__all__ = ['main', 'run_local']
GRACE = 10.0       # seconds between SIGTERM and SIGKILL when the job is stopped
FINISH_WAIT = 120  # seconds the servers and the scheduler get to finish after the last worker ended
PR_SET_PDEATHSIG = 1


def _die_with_parent():
    """In the child before exec: a new session (own process group), and SIGKILL when the launcher dies."""
    os.setsid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _describe(status):
    return 'was killed by signal %d (%s)' % (-status, signal.Signals(-status).name) if status < 0 else \
        'exited with status %d' % status


def _guard(read_fd):
    """The watcher process: collects the process groups of the job from the launcher through a pipe and, when
    the pipe closes (the launcher ended, even by SIGKILL), kills whatever is left in them: grandchildren
    included (a data worker, a shell's background job), which PR_SET_PDEATHSIG does not reach."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    groups, buf = [], b''
    while True:
        try:
            chunk = os.read(read_fd, 4096)
        except InterruptedError:
            continue
        if not chunk:
            break
        buf += chunk
        *lines, buf = buf.split(b'\n')
        if b'done' in lines:  # the launcher ended the job itself (it stopped every group): nothing to kill
            os._exit(0)
        groups += [int(g) for g in lines if g.strip()]
    for pgid in groups:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    os._exit(0)


class _Job:
    def __init__(self, command, workers, servers):
        port = _free_port()
        self.base = dict(os.environ, DMLC_PS_ROOT_URI='127.0.0.1', DMLC_PS_ROOT_PORT=str(port),
                         DMLC_NUM_WORKER=str(workers), DMLC_NUM_SERVER=str(servers), DMLC_JOB_CLUSTER='local')
        self.command = command
        self.procs = []  # (name, Popen)
        self.roles = [('scheduler', 0)] + [('server', i) for i in range(servers)] + \
            [('worker', i) for i in range(workers)]

    def start(self):
        read_fd, self.guard_fd = os.pipe()
        self.guard = os.fork()
        if self.guard == 0:  # the watcher (see _guard); it holds only the read end
            os.close(self.guard_fd)
            _guard(read_fd)
        os.close(read_fd)
        os.set_inheritable(self.guard_fd, False)
        for role, index in self.roles:
            env = dict(self.base, DMLC_ROLE=role, DMLC_TASK_ID=str(index))
            try:
                proc = subprocess.Popen(self.command, env=env, preexec_fn=_die_with_parent)
            except OSError as err:
                raise LaunchError('cannot run %s: %s' % (self.command[0], err.strerror or err)) from None
            os.write(self.guard_fd, b'%d\n' % proc.pid)  # its own process group (setsid)
            name = role if role == 'scheduler' else '%s %d' % (role, index)
            self.procs.append((name, proc))
            print('launch: started %s (pid %d)' % (name, proc.pid), file=sys.stderr, flush=True)

    def close_guard(self):
        """Dismiss the watcher (after stop(): nothing of the job is left) and reap it."""
        if getattr(self, 'guard_fd', None) is not None:
            os.write(self.guard_fd, b'done\n')  # stop() has run: a group id reused since must not be killed
            os.close(self.guard_fd)
            self.guard_fd = None
            os.waitpid(self.guard, 0)

    def stop(self):
        """SIGTERM to every process group still running, SIGKILL after GRACE seconds."""
        alive = [p for _, p in self.procs if p.poll() is None]
        for sig, wait in ((signal.SIGTERM, GRACE), (signal.SIGKILL, 5.0)):
            for proc in alive:
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.time() + wait
            while time.time() < deadline and any(p.poll() is None for p in alive):
                time.sleep(0.1)
            alive = [p for p in alive if p.poll() is None]
            if not alive:
                break
        for _, proc in self.procs:  # the groups of finished processes too: their data workers, if any remain
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def wait(self):
        """Exit status of the job: 0 when every process ended well; else the failing one is named and the
        others are stopped."""
        finished_at = None
        while True:
            if any(p.poll() not in (None, 0) for _, p in self.procs):
                # a worker that refuses takes its server down with it (SIGABRT on the lost connection): name
                # the worker, the cause, before the processes that failed because of it
                time.sleep(0.5)
                failed = sorted(((n, p) for n, p in self.procs if p.poll() not in (None, 0)),
                                key=lambda np_: not np_[0].startswith('worker'))
                name, proc = failed[0]
                status = proc.poll()
                also = ', '.join('%s %s' % (n, _describe(p.poll())) for n, p in failed[1:])
                print('launch: %s (pid %d) %s%s: stopping the job' % (name, proc.pid, _describe(status),
                                                                      ' (then %s)' % also if also else ''),
                      file=sys.stderr, flush=True)
                self.stop()
                return status if status > 0 else 128 - status
            workers = [p for n, p in self.procs if n.startswith('worker')]
            if all(p.poll() == 0 for p in workers):
                if all(p.poll() == 0 for _, p in self.procs):
                    return 0
                finished_at = finished_at or time.time()
                if time.time() - finished_at > FINISH_WAIT:
                    left = [n for n, p in self.procs if p.poll() is None]
                    print('launch: every worker finished but %s did not end within %d s: stopping it'
                          % (', '.join(left), FINISH_WAIT), file=sys.stderr, flush=True)
                    self.stop()
                    return 0
            time.sleep(0.2)


class LaunchError(RuntimeError):
    """The job's command cannot be started."""


def run_local(command, workers, servers):
    """Run a local parameter-server job; returns its exit status."""
    job = _Job(command, workers, servers)
    interrupted = []

    def on_signal(signum, _frame):
        interrupted.append(signum)
        raise KeyboardInterrupt

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        job.start()
        return job.wait()
    except LaunchError as err:
        print('launch: error: %s' % err, file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        sig = interrupted[0] if interrupted else signal.SIGINT
        print('launch: %s: stopping the job' % signal.Signals(sig).name, file=sys.stderr, flush=True)
        job.stop()
        return 128 + sig
    finally:
        job.stop()  # nothing is left behind, however the job ended
        job.close_guard()
        for s, handler in old.items():
            signal.signal(s, handler)


def hostfile_hosts(path):
    """[(host, port)] of a host file as MXNet's ssh tracker reads it (`host`, `host:port`, `host slots=N`)."""
    hosts = []
    with open(path) as f:
        for line in f:
            line = line.split('slots=')[0].strip()
            if line:
                host, _, port = line.partition(':')
                hosts.append((host, port or '22'))
    return hosts


def unreachable_hosts(hosts, timeout=10):
    """[(host, why)] of the hosts `ssh` cannot run a command on: MXNet's ssh tracker starts its processes in
    threads that swallow an ssh failure, and the job then waits (or ends 0) without them."""
    bad = []
    for host, port in hosts:
        try:
            res = subprocess.run(['ssh', '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=%d' % timeout,
                                  '-o', 'StrictHostKeyChecking=no', '-p', port, host, 'true'],
                                 capture_output=True, text=True, timeout=timeout + 5, stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            return [(host, 'no ssh client on this machine')]
        except subprocess.TimeoutExpired:
            bad.append((host, 'no answer in %d s' % timeout))
            continue
        if res.returncode:
            lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
            bad.append((host, lines[-1] if lines else 'ssh exited with status %d' % res.returncode))
    return bad


def _stock_launcher():
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


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description='Launch a distributed MXNet job (parameter server).', add_help=True)
    p.add_argument('-n', '--num-workers', type=int, required=True, help='worker processes')
    p.add_argument('-s', '--num-servers', type=int, help='server processes (default: as many as workers)')
    p.add_argument('--launcher', default='ssh', help="'local' runs here; others use MXNet's stock launcher")
    p.add_argument('command', nargs=argparse.REMAINDER, help='the command every process runs')
    p.add_argument('-H', '--hostfile', help='ssh/mpi: file with one host per line')
    known, _ = p.parse_known_args(argv)
    if known.launcher not in ('local', 'ssh', 'mpi', 'sge', 'yarn'):
        p.error("--launcher must be local, ssh, mpi, sge or yarn, got %r" % known.launcher)
    if known.launcher in ('ssh', 'mpi') and not known.hostfile:
        p.error('--launcher %s needs -H HOSTFILE (one host per line); on this machine alone: --launcher local'
                % known.launcher)
    if known.launcher in ('ssh', 'mpi') and not os.path.isfile(known.hostfile):
        p.error('-H %s: no such host file' % known.hostfile)
    if known.launcher == 'ssh':
        hosts = hostfile_hosts(known.hostfile)
        if not hosts:
            p.error('-H %s lists no host' % known.hostfile)
        bad = unreachable_hosts(hosts)
        if bad:
            print('launch: error: ssh cannot run a command on %s (%s): the job would run without it; check '
                  'the host, key-based login (ssh -o BatchMode=yes HOST true) and -H %s'
                  % (bad[0][0], bad[0][1], known.hostfile), file=sys.stderr, flush=True)
            return 2
    if known.launcher != 'local':
        return _stock_launcher()
    args = p.parse_args(argv)
    if not args.command:
        p.error('no command to launch (e.g. python train.py --kvstore dist_sync ...)')
    if args.num_workers < 1:
        p.error('-n must be >= 1, got %d' % args.num_workers)
    servers = args.num_workers if args.num_servers is None else args.num_servers
    if servers < 1:
        p.error('-s must be >= 1 for the parameter-server kvstore, got %d' % servers)
    return run_local(args.command, args.num_workers, servers)


if __name__ == '__main__':
    sys.exit(main())
