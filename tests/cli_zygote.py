"""A fork server for the ``cli`` fixture: each ``parity`` command in a process of its own, its imports paid once.

``python -m parity`` spends about 1.5 CPU-s importing what every command's parent process needs (transformers
with every framework off, as the CLI sets it); the tests run ~150 commands on 2 cores. This zygote imports
that once per test process, then forks one child per command: its own pid, folder, environment, stdout and
stderr files and default signal handlers, starting at ``parity.cli.main(argv)`` where a new interpreter
would. Commands that need a new interpreter (``--inline`` imports a framework into this process, variables
read when transformers is imported) are run as ``python -m parity`` by conftest's ``cli`` instead.

Protocol (a Unix socket, one command per connection): the client sends one JSON line
``{"argv", "cwd", "env", "stdout", "stderr"}`` (the last two: file paths), the zygote answers ``{"pid"}`` once
the child is started and ``{"returncode"}`` (negative: killed by that signal) when it ended.
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import signal
import socket
import sys
import tempfile
import traceback


def _prepare() -> None:
    from parity import cli

    # What `parity check` sets before its own `import transformers` (the workers get them removed again).
    os.environ.update(cli.QUIET_PARENT_ENV)
    for name in ("transformers", "transformers.models.auto.tokenization_auto", "parity.api", "parity.baseline",
                 "parity.convert", "parity.execution.executor", "parity.execution.pool_client", "parity.report.console",
                 "parity.report.html", "parity.report.junit", "parity.report.markdown"):
        importlib.import_module(name)


def _child(conn: socket.socket, listener: socket.socket, req: dict) -> None:
    """In the forked child: become the command's process and run it; never returns."""
    code = 1
    try:
        conn.close()
        listener.close()
        for sig in (signal.SIGTERM, signal.SIGCHLD, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        fd = os.open(os.devnull, os.O_RDONLY)
        os.dup2(fd, 0)
        for target, path in ((1, req["stdout"]), (2, req["stderr"])):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(req["cwd"])
        os.environ.clear()
        os.environ.update(req["env"])
        tempfile.tempdir = None  # TMPDIR as this command's environment says
        sys.argv = [sys.executable, *req["argv"]]
        sys.path[0] = req["cwd"]  # as `python -m parity` run there has it
        from parity.cli import main

        code = main(req["argv"])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        try:
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code if isinstance(code, int) else 1)


def serve(path: str) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path + ".tmp")
    os.rename(path + ".tmp", path)  # the path appears once the zygote accepts
    listener.listen(4)
    while True:
        conn, _ = listener.accept()
        with conn:
            req = json.loads(conn.makefile("rb").readline())
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _child(conn, listener, req)
            conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
            _, status = os.waitpid(pid, 0)
            code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            try:
                conn.sendall(json.dumps({"returncode": code}).encode() + b"\n")
            except OSError:  # the client gave up (its timeout) and went
                pass


if __name__ == "__main__":
    # End with the test process that started this one, however it ends.
    from parity.contracts.procs import die_with_parent

    die_with_parent(signal.SIGTERM)
    _prepare()
    serve(sys.argv[1])
