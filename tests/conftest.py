"""Shared fixtures: the tiny checkpoints (built once per machine), the real MiniLM, a CLI runner."""

from __future__ import annotations

import fcntl
import shutil
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
START_ENV = dict(os.environ)  # before pytester (HOME) or the shared pool (its socket) change it
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Tests convert for real unless they ask for the conversion cache (tests/test_conversion_cache.py).
os.environ["PARITY_CACHE_DIR"] = "off"
# Idle workers the tests' shared pool keeps: pt, tf, flax and their conversion-keyed twins, KerasHub's
# three backends, pt@v5, and a second of the busiest for the other xdist worker (each 0.3-1 GiB idle; with
# 10, six workers of a run were stopped when idle and started again; at least 13.5 GiB stayed available).
TEST_POOL_IDLE = 14
# Templates that fork its new workers (parity.execution.forkserver): a run starts 80-odd workers of about 40 keys;
# the most recently used 8 templates made 41 of them forks instead of interpreters (a replay of a run's keys).
TEST_POOL_TEMPLATES = 8


@pytest.fixture(scope="session", autouse=True)
def worker_pool(request):
    """Every check of this test run, in this process or through the CLI in a subprocess, borrows its
    framework workers from one pool (parity.execution.pool_server, shared by the run's xdist workers through
    PARITY_POOL_SOCKET): imports are paid once per framework and environment, not per check.
    tests/test_pool.py proves a kept worker gives a fresh one's bits. PARITY_TEST_POOL=0: a fresh
    worker per framework and check, as a user's single `parity check` gets."""
    if os.environ.get("PARITY_TEST_POOL", "1") == "0":
        yield None
        return
    from parity.execution import pool, pool_client

    config = request.config
    if hasattr(config, "workerinput"):  # xdist: the run's id, and the controller to outlive
        run, watch = config.workerinput["testrunuid"], os.getppid()
    else:
        run, watch = f"{os.getpid()}-{os.urandom(4).hex()}", os.getpid()
    # No idle end: between this process's own checks only CLI subprocesses may be connected.
    os.environ[pool.SOCKET_ENV] = path = pool_client.for_run(
        run, watch, idle_exit=None, max_idle=TEST_POOL_IDLE, max_templates=TEST_POOL_TEMPLATES)
    yield path
    os.environ.pop(pool.SOCKET_ENV, None)


@pytest.fixture
def pytester(pytester, monkeypatch):
    """pytester whose inner pytest sessions run in this run's environment: its HOME and no PYTHONPATH entry
    for their folder (their tests need neither), so their checks borrow this run's kept workers, which
    parity.execution.pool keys by the environment they start with, instead of starting a set of their own."""
    for name in ("HOME", "USERPROFILE", "PY_COLORS"):
        if name in START_ENV:
            monkeypatch.setenv(name, START_ENV[name])
        else:
            monkeypatch.delenv(name, raising=False)

    def popen(cmdargs, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=pytester.CLOSE_STDIN, **kw):
        if stdin is pytester.CLOSE_STDIN:
            stdin = subprocess.DEVNULL
        assert not isinstance(stdin, bytes), "not used here"
        return subprocess.Popen(cmdargs, stdout=stdout, stderr=stderr, stdin=stdin, env=dict(os.environ), **kw)

    monkeypatch.setattr(pytester, "popen", popen)
    return pytester


def _build_key() -> str:
    h = hashlib.sha256((ROOT / "fixtures" / "build.py").read_bytes())
    return h.hexdigest()[:12]


@pytest.fixture(scope="session")
def tiny() -> Path:
    """Folder of tiny checkpoints from fixtures/build.py, built once and reused (locked for xdist)."""
    cache = ROOT / ".cache" / "fixtures"
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / _build_key()
    with open(cache / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "DONE").exists():
            tmp = target.with_name(target.name + ".partial")
            subprocess.run([sys.executable, "-m", "fixtures.build", str(tmp)], cwd=ROOT, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            (tmp / "DONE").write_text("ok")
            if target.exists():
                shutil.rmtree(target)
            tmp.rename(target)
            for old in cache.iterdir():  # builds of an older fixtures/build.py
                if old.is_dir() and old != target:
                    shutil.rmtree(old, ignore_errors=True)
    return target


def build_cached(name: str, argv: list, sources: list) -> Path:
    """Run a fixtures builder once per content of its sources into .cache/<name>/<key> (locked for xdist)."""
    h = hashlib.sha256()
    for src in sources:
        h.update((ROOT / src).read_bytes())
    cache = ROOT / ".cache" / name
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / h.hexdigest()[:12]
    with open(cache / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "DONE").exists():
            import shutil
            tmp = target.with_name(target.name + ".partial")
            shutil.rmtree(tmp, ignore_errors=True)
            subprocess.run([sys.executable, *[a.replace("{out}", str(tmp)) for a in argv]], cwd=ROOT, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            (tmp / "DONE").write_text("ok")
            if target.exists():
                shutil.rmtree(target)
            tmp.rename(target)
    return target


def assert_within_tolerance(row: dict, atol: float = 1e-5, rtol: float = 1e-5) -> None:
    """One compared output passed under the tolerance it records, as parity judges it
    (``|a - b| <= atol + rtol * |b|`` per element; ``required_atol`` is the least atol that passes at that rtol).

    Never a bound on ``max_abs_diff`` itself: which kernels run depends on the CPU, and a cross-framework
    difference may exceed ``atol`` where ``rtol * |b|`` still covers it (mt5's logits: 1.08e-5 on an
    AVX-512 FP16 Xeon, a pass)."""
    assert (row["atol"], row["rtol"]) == (atol, rtol), row
    assert row["passed"] and row["error"] is None and row["mismatched"] == 0 < row["total"], row
    assert row["max_abs_diff"] is not None and row["required_atol"] <= atol, row


@pytest.fixture
def ids_batch() -> dict:
    """Two rows of 12 token ids for the tiny BERTs, the second padded from position 7."""
    import numpy as np

    rng = np.random.default_rng(0)
    ids = rng.integers(5, 99, size=(2, 12), dtype=np.int64)
    mask = np.ones_like(ids)
    mask[1, 7:] = 0
    return {"input_ids": ids, "attention_mask": mask}


@pytest.fixture(scope="session")
def v5() -> str:
    """The transformers 5 interpreter; `make test` sets PARITY_REQUIRE_V5 so that its absence fails there."""
    v5 = ROOT / ".venv-v5" / "bin" / "python"
    if not v5.exists():
        if os.environ.get("PARITY_REQUIRE_V5"):
            pytest.fail(f"{v5} is missing: run `make venv-v5`")
        pytest.skip(f"{v5} is missing: run `make venv-v5`")
    return str(v5)


@pytest.fixture(scope="session")
def gen() -> Path:
    """The behaviour fixtures (fixtures/generation.py): tiny GPT-2, BART, T5, BERT heads, built once."""
    return build_cached("generation", ["-m", "fixtures.generation", "{out}"],
                        ["fixtures/generation.py", "fixtures/build.py"])


@pytest.fixture(scope="session")
def loading() -> Path:
    """The "as users load it" fixtures (fixtures/loading.py): a bf16-saved GPT-2, a legacy Llama tokenizer."""
    return build_cached("loading", ["-m", "fixtures.loading", "{out}"],
                        ["fixtures/loading.py", "fixtures/build.py", "fixtures/generation.py"])


@pytest.fixture(scope="session")
def minilm() -> Path:
    from fixtures.minilm import path

    return path()


class CLIResult:
    def __init__(self, proc: subprocess.CompletedProcess, report_dir: Path | None, forked: bool = False):
        self.forked = forked  # from the zygote rather than a new interpreter
        self.code = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr
        self.report_dir = report_dir

    @property
    def results(self) -> dict:
        return json.loads((self.report_dir / "results.json").read_text())

    def comparison(self, candidate: str) -> dict:
        return next(c for c in self.results["comparisons"] if c["candidate"] == candidate)


# Commands the zygote cannot stand in for: --inline imports a framework into the command's own process, and
# these variables are read at interpreter start or when the zygote imports transformers and huggingface_hub
# (every framework off). Frameworks' own variables (TF_*, TORCH*, ...) are read by the workers.
_NEEDS_INTERPRETER = ("USE_", "HF_", "HUGGINGFACE_", "TRANSFORMERS_", "TOKENIZERS_", "PYTHON", "XDG_", "HOME")


def _import_env(env) -> dict:
    return {k: v for k, v in env.items() if k.startswith(_NEEDS_INTERPRETER)}


class _Zygote:
    """Client of tests/cli_zygote.py: one forked child per command, as subprocess.run would give."""

    def __init__(self, folder: Path):
        self.path = str(folder / "z.sock")
        self.import_env = _import_env(os.environ)
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "cli_zygote.py"), self.path], cwd=ROOT,
                                     stdin=subprocess.DEVNULL)

    def ready(self) -> bool:
        import time

        deadline = time.monotonic() + 120
        while not os.path.exists(self.path):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def run(self, argv: list, cwd: Path, env: dict, timeout: float) -> subprocess.CompletedProcess:
        import socket
        import tempfile

        with tempfile.TemporaryDirectory() as tmp, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            out, err = Path(tmp, "out"), Path(tmp, "err")
            sock.connect(self.path)
            sock.sendall(json.dumps({"argv": argv, "cwd": str(cwd), "env": env, "stdout": str(out),
                                     "stderr": str(err)}).encode() + b"\n")
            answers = sock.makefile("rb")
            pid = json.loads(answers.readline())["pid"]
            sock.settimeout(timeout)
            try:
                code = json.loads(answers.readline())["returncode"]
            except (TimeoutError, socket.timeout):
                os.kill(pid, 9)
                raise subprocess.TimeoutExpired(["parity", *argv], timeout) from None
            return subprocess.CompletedProcess(argv, code, out.read_text(), err.read_text())

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait()


@pytest.fixture(scope="session")
def cli_zygote(tmp_path_factory):
    """The fork server the ``cli`` fixture runs commands through (PARITY_TEST_ZYGOTE=0: a new interpreter each)."""
    if os.environ.get("PARITY_TEST_ZYGOTE", "1") == "0":
        yield None
        return
    z = _Zygote(tmp_path_factory.mktemp("zygote"))
    yield z if z.ready() else None
    z.close()


@pytest.fixture
def cli(tmp_path, cli_zygote):
    """Run a `parity` command in a process of its own: forked from the zygote (tests/cli_zygote.py: the
    command's imports paid once per test process) or, where it needs one, `python -m parity` in a new
    interpreter. Either way its own pid, folder, environment, output and signal handlers."""

    def run(*args, report: bool = True, timeout: int = 600, env: dict | None = None) -> CLIResult:
        argv = [str(a) for a in args]
        report_dir = None
        if report and argv and argv[0] == "check" and "--report-dir" not in argv:
            report_dir = tmp_path / "report"
            argv += ["--report-dir", str(report_dir)]
        elif "--report-dir" in argv:
            report_dir = Path(argv[argv.index("--report-dir") + 1])
        full_env = {**os.environ, **(env or {})}
        if cli_zygote and "--inline" not in argv and _import_env(full_env) == cli_zygote.import_env:
            return CLIResult(cli_zygote.run(argv, tmp_path, full_env, timeout), report_dir, forked=True)
        proc = subprocess.run([sys.executable, "-m", "parity", *argv], cwd=tmp_path, capture_output=True,
                              text=True, timeout=timeout, env=full_env)
        return CLIResult(proc, report_dir)

    return run
