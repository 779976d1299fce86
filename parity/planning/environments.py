"""Python environments as an axis of a check: ``--env v5=.venv-v5/bin/python``, ``--frameworks pt@v5,tf``.

A framework key written ``FW@NAME`` runs its worker under the interpreter
declared as NAME; a bare key runs under this interpreter (the local
environment, name ""). Before any worker starts, each declared environment
that a check uses is probed once (``PYTHON -c PROBE``, about a second): is it
Python, does it have parity, does its parity speak this worker protocol,
which versions and which transformers folder does it have, which frameworks
can it run. The parent reads that environment's transformers mappings from
that folder (parity.planning.tasks), keys conversions by its versions, and records
both in results.json (``frameworks.<key>.environment``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from parity.contracts.errors import UsageError

LOCAL = ""  # the name of the environment parity itself runs in

# Run by a declared interpreter: the first line proves it is Python 3, the second says what it has.
PROBE = """\
import sys
print("parity-probe", sys.version.split()[0], flush=True)
try:
    from parity.planning.environments import describe
except ImportError as e:
    try:  # a parity from before the layer packages: it says its protocol, and is refused for it
        from parity.environments import describe
    except ImportError:
        print("parity-missing", e)
        raise SystemExit(0)
import json
print(json.dumps(describe()))
"""
PROBE_SECONDS = 120


@dataclass(frozen=True)
class Environment:
    name: str                 # "" for this interpreter
    python: str               # the interpreter as declared (or sys.executable)
    executable: str           # what workers start: the declared path made absolute (a venv's python is a link)
    python_version: str
    protocol: int             # parity.contracts.protocol.VERSION of its parity
    versions: dict = field(default_factory=dict)   # results.versions() there
    transformers: str | None = None                # its transformers package folder (parity.planning.tasks reads it)
    unavailable: dict = field(default_factory=dict)  # framework key -> why it cannot run there

    def record(self) -> dict:
        """results.json's ``frameworks.<key>.environment``: where the worker ran, with what."""
        return {"name": self.name or None, "python": self.executable, "versions": dict(self.versions)}


def split(key: str) -> tuple[str, str]:
    """"pt@v5" -> ("pt", "v5"); "pt" -> ("pt", ""); loading options left out ("pt@v5:bf16" -> ("pt", "v5"))."""
    fw, _, env = key.partition(":")[0].partition("@")
    return fw, env


def describe() -> dict:
    """This interpreter's facts (the probe prints them; the local environment reads them directly)."""
    from parity.contracts.protocol import VERSION
    from parity.contracts import registry
    from parity.contracts.versions import installed_root, unavailable_reason, versions

    return {"python_version": sys.version.split()[0], "executable": sys.executable, "protocol": VERSION,
            "versions": versions(), "transformers": installed_root(),
            "unavailable": {fw.key: reason for fw in registry.FRAMEWORKS
                            if (reason := unavailable_reason(fw.key))}}


def local() -> Environment:
    """This interpreter, described afresh for each check (a few milliseconds; nothing imported)."""
    facts = describe()
    return Environment(LOCAL, sys.executable, sys.executable, facts["python_version"], facts["protocol"],
                       facts["versions"], facts["transformers"], facts["unavailable"])


def declarations(values, base: Path | None = None) -> dict[str, str]:
    """``["v5=.venv-v5/bin/python"]`` (--env) or ``{"v5": "..."}`` (parity.toml) -> {name: python}.

    Paths in a file are relative to it (``base``); on the command line, to the current folder.
    """
    if not values:
        return {}
    if isinstance(values, dict):
        items = [(str(k), v) for k, v in values.items()]
    else:
        items = []
        for value in ([values] if isinstance(values, str) else values):
            name, eq, python = str(value).partition("=")
            if not eq or not name.strip() or not python.strip():
                raise UsageError(f"--env {value!r} is not NAME=PYTHON",
                                 "write --env v5=.venv-v5/bin/python (a name, then the interpreter's path)")
            items.append((name.strip(), python.strip()))
    out = {}
    for name, python in items:
        if not isinstance(python, str) or not python:
            raise UsageError(f"environment {name!r} names no interpreter ({python!r})",
                             'write env = {v5 = ".venv-v5/bin/python"}')
        if not name.replace("-", "").replace("_", "").isalnum():
            raise UsageError(f"environment name {name!r} is not a plain word",
                             "name environments with letters, digits, - and _ (e.g. v5)")
        path = Path(python).expanduser()
        if base is not None and not path.is_absolute():
            path = base / path
        out[name] = str(path)
    return out


_PROBED: dict = {}


def probe(name: str, python: str) -> Environment:
    """Start ``python`` once and read what it has; a UsageError when it cannot run parity's workers."""
    where = f"{python} (environment {name})"
    fix = f"build it (`make venv-v5` makes .venv-v5), or point --env {name}= at a venv's bin/python"
    path = Path(python)
    if not path.exists():
        raise UsageError(f"interpreter {where} does not exist", fix)
    if path.is_dir() or not os.access(path, os.X_OK):
        raise UsageError(f"interpreter {where} is not an executable file", fix)
    key = (str(path.absolute()), path.stat().st_mtime)
    if key not in _PROBED:
        _PROBED[key] = _run_probe(name, path, where)
    return _PROBED[key]


def _run_probe(name: str, path: Path, where: str) -> Environment:
    from parity.contracts.protocol import VERSION

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME",)}
    try:
        proc = subprocess.run([str(path), "-c", PROBE], capture_output=True, text=True, timeout=PROBE_SECONDS,
                              stdin=subprocess.DEVNULL, env=env)
    except OSError as e:
        raise UsageError(f"interpreter {where} cannot be started ({e.strerror or e})",
                         f"point --env {name}= at a Python interpreter, e.g. .venv-v5/bin/python") from None
    except subprocess.TimeoutExpired:
        raise UsageError(f"interpreter {where} did not answer within {PROBE_SECONDS} s",
                         "check that it starts: run it with -c 'print(1)'") from None
    lines = proc.stdout.splitlines()
    if not lines or not lines[0].startswith("parity-probe "):
        said = (proc.stderr.strip().splitlines() or proc.stdout.strip().splitlines() or ["nothing"])[-1][:120]
        raise UsageError(f"{where} is not a Python 3 interpreter (it said: {said})",
                         f"point --env {name}= at a Python interpreter, e.g. .venv-v5/bin/python")
    if len(lines) > 1 and lines[1].startswith("parity-missing"):
        raise UsageError(f"{where} has no parity installed ({lines[1][len('parity-missing '):]})",
                         f"install it there: {path} -m pip install --no-deps -e {_source_root()}")
    try:
        facts = json.loads(lines[-1])
    except (ValueError, IndexError):
        said = (proc.stderr.strip().splitlines() or ["no output"])[-1][:160]
        raise UsageError(f"parity in {where} failed to describe itself ({said})",
                         f"run `{path} -m parity --help` there to see why") from None
    if facts.get("protocol") != VERSION:
        raise UsageError(f"parity in {where} speaks worker protocol {facts.get('protocol')}, this parity "
                         f"{VERSION} (parity {facts['versions'].get('parity')} there)",
                         f"install this parity there: {path} -m pip install --no-deps -e {_source_root()}")
    return Environment(name, str(path), str(path.absolute()), facts["python_version"], facts["protocol"],
                       facts["versions"], facts["transformers"], facts["unavailable"])


def _source_root() -> str:
    return str(Path(__file__).resolve().parent.parent)


def resolve(frameworks, declared: dict[str, str]) -> dict[str, Environment]:
    """{environment name: Environment} for every environment the framework keys use ("" is this one)."""
    out = {LOCAL: local()}
    for key in frameworks:
        name = split(key)[1]
        if name and name not in out:
            out[name] = probe(name, declared[name])
    return out


def of(key: str, envs: dict[str, Environment]) -> Environment:
    return envs[split(key)[1]]
