"""A pool's template process: ``python -m parity.worker.template FD FRAMEWORK BLOCKED`` (started by
parity.execution.forkserver.Template). It imports what every worker of its framework imports first, then
forks one worker per request, which runs the serve loop as ``python -m parity.worker --serve-loop`` would.

It forks only while it is single-threaded: a fork copies every other thread's locks as they are held (JAX
warns of this), so a template that finds more than one thread answers "threads" instead of a pid, and the
pool starts that key's workers as new interpreters from then on, saying so in its status. The only threads
its imports start are OpenBLAS's (numpy's and scipy's each start a worker thread when loaded), so it
imports with OPENBLAS_NUM_THREADS=1 unless the key's environment sets it, and takes the variable out again
before forking: a forked worker's environment is its key's, its numpy BLAS runs on one thread.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time

from parity.contracts.procs import die_with_parent, thread_count

REPARENT_WAIT_S = 5.0  # how long a forked worker waits to become the server's child before it gives up
SINGLE_THREADED = {"OPENBLAS_NUM_THREADS": "1"}  # set while importing, where the key's environment does not


def _warm(framework: str) -> None:
    """What every worker of ``framework`` imports before it loads a model; a failure is left for the
    worker to meet (and report) again, as a fresh worker would."""
    import importlib

    from parity.contracts import registry
    from parity.worker.runners import runner_class

    fw = registry.get(framework)
    try:
        runner_class(framework)
        for module in fw.requires + fw.warm_imports:
            importlib.import_module(module)
    except Exception:
        pass


def _become_worker(sock: socket.socket, stdin_fd: int, log: str, server: int) -> None:
    """In the forked worker: own session, the pipe as stdin, ``log`` as stdout and stderr, the server
    as parent (and its death as ours); then the serve loop, as ``parity.worker --serve-loop``."""
    from parity.worker.serving import serve_loop

    sock.close()
    main_file = os.path.join(os.path.dirname(sys.modules["parity.worker"].__file__), "__main__.py")
    sys.argv = [main_file, "--serve-loop"]  # as `python -m parity.worker --serve-loop`
    os.setsid()
    os.dup2(stdin_fd, 0)
    os.close(stdin_fd)
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(out)
    deadline = time.monotonic() + REPARENT_WAIT_S
    while os.getppid() != server:  # the middle process is about to exit: the subreaper adopts us
        if time.monotonic() > deadline:
            os._exit(1)
        time.sleep(0.001)
    die_with_parent()
    if os.getppid() != server:  # the server died before the death signal was armed
        os._exit(1)
    code = 0
    try:
        serve_loop(os.fdopen(0, "r"))
    except BaseException:  # as an uncaught exception ends a worker process: its traceback in the log
        import traceback

        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv=None) -> int:
    import faulthandler

    from parity.worker.serving import block_imports

    argv = sys.argv[1:] if argv is None else argv
    fd, framework, blocked = int(argv[0]), argv[1], [b for b in argv[2].split(",") if b]
    server = os.getppid()
    die_with_parent()
    faulthandler.enable()  # as parity.worker's main: a native crash leaves its stack in the worker's log
    block_imports(blocked)
    ours = {k: v for k, v in SINGLE_THREADED.items() if k not in os.environ}
    os.environ.update(ours)
    _warm(framework)
    for name in ours:  # the forked workers get their key's environment
        del os.environ[name]
    sock = socket.socket(fileno=fd)
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(sock, 4096, 1)
        except OSError:
            return 0
        if not message:  # the pool closed its end
            return 0
        log = json.loads(message)["log"]
        sys.stdout.flush()  # nothing of the template's output is copied into a worker's log
        sys.stderr.flush()
        threads = thread_count()
        if threads > 1:  # a fork would copy the other threads' locks as they are held: no fork, say why
            os.close(fds[0])
            sock.send(f"threads {threads}".encode())
            continue
        pid_in, pid_out = os.pipe()
        middle = os.fork()
        if middle == 0:
            code = 1
            try:
                os.close(pid_in)
                worker = os.fork()
                if worker == 0:
                    os.close(pid_out)
                    _become_worker(sock, fds[0], log, server)
                os.write(pid_out, str(worker).encode())
                code = 0
            finally:
                os._exit(code)
        os.close(pid_out)
        os.close(fds[0])
        worker = os.read(pid_in, 32)
        os.close(pid_in)
        _, status = os.waitpid(middle, 0)
        # Sent once the middle process is gone: the worker is the server's child by then, so its
        # first waitpid already finds it.
        sock.send(worker if worker.isdigit() and os.waitstatus_to_exitcode(status) == 0 else b"fork failed")


if __name__ == "__main__":
    code = main()
    os._exit(code)
