"""CheckConfig: everything one `parity check` needs, validated once, up front.

Tolerance policy: float32 defaults ``atol=1e-5, rtol=1e-5`` for every output.
transformers' own PT/TF equivalence tests used 1e-5 max-abs on tiny models and
its pt-to-tf converter 5e-5 on real ones; on the real all-MiniLM-L6-v2 the
largest diff over non-padded positions is 5e-6 (PT vs TF and PT vs Flax), so
1e-5 leaves a margin without hiding a real defect (a 1% weight change moves
outputs by ~1e-2).
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from parity.contracts.errors import UsageError
from parity.contracts.outputs import GROUPS
from parity.contracts import registry

FRAMEWORKS = registry.KEYS
SOURCES = ("auto",) + tuple(fw.key for fw in registry.FRAMEWORKS if fw.weight_files)  # weights a folder holds
DEVICES = ("auto", "cpu", "gpu")
DEFAULT_ATOL = 1e-5
DEFAULT_RTOL = 1e-5
DEFAULT_MAX_LENGTH = 64
FRAMEWORK_ALIASES = registry.ALIASES


def split_list(value) -> list[str]:
    """Accept "a,b" or ["a", "b"]; strip blanks."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    return [str(v).strip() for v in items if str(v).strip()]


def framework_key(value, envs: dict, option: str = "--frameworks") -> str:
    """"torch@v5:bf16" -> "pt@v5:bf16": a framework (alias accepted), optionally @ an environment declared in
    ``envs``, optionally :OPTION loading variants (parity.contracts.variants) the framework can load."""
    from parity.contracts import variants

    fw, env, opts = variants.parse(str(value).strip())
    fw = FRAMEWORK_ALIASES.get(fw.lower(), fw.lower())
    if fw not in FRAMEWORKS:
        raise UsageError(f"unknown framework {fw!r}",
                         f"{option} takes {', '.join(FRAMEWORKS)}, each optionally FW@ENV for an --env environment "
                         f"and :OPTION ({', '.join(variants.OPTIONS)})")
    opts = tuple(dict.fromkeys(o.strip().lower() for o in opts))
    for o in opts:
        if o not in variants.OPTIONS:
            raise UsageError(f"unknown loading option {o!r} in {option} {value}",
                             f"write FW[@ENV][:OPTION...] with OPTION one of {', '.join(variants.OPTIONS)}")
        if o not in registry.get(fw).load_options:
            raise UsageError(f"{registry.get(fw).label} cannot load {fw}:{o} ({option} {value})",
                             f"{fw} takes {', '.join(registry.get(fw).load_options)}; compare {o} in a framework "
                             "that loads it (pt:bf16)")
    why = variants.conflict(opts)
    if why:
        raise UsageError(f"{option} {value} asks for two things at once: {why}", "keep one dtype and one attention "
                         "option per key, e.g. pt@v5:bf16:eager")
    suffix = "".join(f":{o}" for o in opts)
    if not env:
        return fw + suffix
    if env not in envs:
        declared = f" (declared: {', '.join(envs)})" if envs else ""
        raise UsageError(f"{option} names {fw}@{env}, but no environment {env!r} is declared{declared}",
                         f"declare it: --env {env}=PATH/TO/bin/python (or env = {{{env} = \"...\"}} in parity.toml)")
    return f"{fw}@{env}{suffix}"


def _tolerance(name: str, value) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"--{name} must be a number, got {value!r}",
                         f"pass a non-negative float such as --{name} 1e-5") from None
    if math.isnan(f) or math.isinf(f) or f < 0:
        raise UsageError(f"--{name} must be a finite non-negative number, got {value!r}",
                         f"pass a non-negative float such as --{name} 1e-5")
    return f


def _patterns(value) -> dict:
    """Validate ``{pattern: {"atol": F, "rtol": F}}`` (either key may be left out)."""
    if not value:
        return {}
    if not isinstance(value, dict):
        raise UsageError(f"tolerances must be a table of output-name patterns, got {value!r}",
                         'write e.g. tolerances = {"attentions.*" = {atol = 1e-4}}')
    out = {}
    for pattern, tol in value.items():
        if not isinstance(tol, dict) or not tol or set(tol) - {"atol", "rtol"}:
            raise UsageError(f"tolerance for {pattern!r} must set atol and/or rtol, got {tol!r}",
                             f'write "{pattern}" = {{atol = 1e-4, rtol = 1e-5}}')
        out[str(pattern)] = {k: _tolerance(k, v) for k, v in tol.items()}
    return out


@dataclass
class CheckConfig:
    path: str
    task: str | None = None
    frameworks: list = field(default_factory=lambda: list(registry.DEFAULT_KEYS))
    reference: str | None = None          # None: default_reference(frameworks), said in `chosen`
    source: str = "auto"
    texts: list | None = None
    texts_file: str | None = None
    batch_size: int | None = None
    max_length: int | None = None          # None: DEFAULT_MAX_LENGTH, fitted for --generate (planning.behaviour)
    seed: int = 0
    device: str = "auto"
    atol: float = DEFAULT_ATOL
    rtol: float = DEFAULT_RTOL
    outputs: list = field(default_factory=lambda: list(GROUPS))
    report_dir: str | None = None
    inline: bool = False
    explain: bool = False
    cache: bool = True
    save_replay: str | None = None
    timeout: float | None = None          # seconds per framework worker; None = no limit
    trust_remote_code: bool = False       # let the checkpoint's own Python code run (off by default)
    # Output-name pattern (fnmatch, e.g. "attentions.*") -> {"atol": F, "rtol": F}; the first match wins.
    tolerances: dict = field(default_factory=dict)
    # Environment name -> its interpreter (--env v5=.venv-v5/bin/python); FW@NAME runs there (parity.planning.environments).
    envs: dict = field(default_factory=dict)
    # Behaviour checks (parity.numerics.behaviour): generate() and pipelines beside the forward pass.
    generate: bool = False
    max_new_tokens: int = 20
    num_beams: int = 1
    pipeline: bool = False
    # "elementwise" (every output within tolerance), "top1": logits outputs pass on top-1 agreement >= top1_min,
    # or "oracle": an output passes when the candidate is as near a float64 run as the reference (numerics.oracle)
    gate: str = "elementwise"
    top1_min: float | None = None
    # What parity chose where an option was left out, and why (results.json config.chosen; the console says it).
    chosen: dict = field(default_factory=dict)
    # Tokenizer parity where sides could tokenize differently (parity.planning.tokenizers): compare, report or off
    tokenizers: str = "compare"

    def validated(self, min_frameworks: int = 2) -> "CheckConfig":
        """Normalise and check every field; raise UsageError on the first bad one.

        ``min_frameworks=1`` is for comparing against a recorded baseline.
        """
        self.path = str(self.path)
        self.report_dir = None if self.report_dir is None else str(self.report_dir)
        self.texts_file = None if self.texts_file is None else str(self.texts_file)
        self.save_replay = None if self.save_replay is None else str(self.save_replay)
        self._validate_frameworks(min_frameworks)
        if self.source not in SOURCES:
            raise UsageError(f"unknown source {self.source!r}", f"--source takes {registry.spoken(SOURCES, 'or')}")
        if self.device not in DEVICES:
            raise UsageError(f"unknown device {self.device!r}", "--device takes auto, cpu or gpu")
        self.atol = _tolerance("atol", self.atol)
        self.rtol = _tolerance("rtol", self.rtol)
        self.tolerances = _patterns(self.tolerances)
        groups = split_list(self.outputs) or list(GROUPS)
        for g in groups:
            if g not in GROUPS:
                raise UsageError(f"unknown output group {g!r}",
                                 "--outputs takes a comma list of logits, hidden_states, attentions, cache")
        self.outputs = list(dict.fromkeys(groups))
        if self.max_length is None:
            self.max_length = DEFAULT_MAX_LENGTH
            self.chosen.setdefault("max_length", None)  # the default: planning.behaviour may fit it to the model
        for name in ("batch_size", "max_length", "seed"):
            setattr(self, name, _count(name, getattr(self, name)))
        self._validate_timeout()
        self.trust_remote_code = bool(self.trust_remote_code)
        self._validate_texts()
        self._validate_behaviour()
        from parity.planning.tokenizers import mode

        self.tokenizers = mode(self.tokenizers)
        return self

    def _validate_frameworks(self, min_frameworks: int) -> None:
        from parity.planning.environments import declarations

        self.envs = declarations(self.envs) if not isinstance(self.envs, dict) else dict(self.envs)
        fws = [framework_key(f, self.envs) for f in split_list(self.frameworks)]
        if len(set(fws)) < min_frameworks:
            raise UsageError("a parity check needs at least two frameworks",
                             "pass --frameworks pt,tf,flax (or any two of them)")
        self.frameworks = list(dict.fromkeys(fws))
        if self.reference is None:
            self.reference = default_reference(self.frameworks)
            if self.reference != registry.KEYS[0]:
                self.chosen["reference"] = f"{self.reference}: the default reference ({registry.KEYS[0]}, else " \
                    f"{registry.KEYS[0]}@ENV, else the first framework)"
        self.reference = framework_key(self.reference, self.envs, "--reference")
        if self.inline and any("@" in f for f in self.frameworks):
            raise UsageError("--inline runs every framework in this process, and "
                             f"{next(f for f in self.frameworks if '@' in f)} runs in another environment",
                             "leave out --inline (or the @ENV frameworks)")
        if self.reference not in self.frameworks:
            raise UsageError(f"reference {self.reference!r} is not among the frameworks {','.join(self.frameworks)}",
                             "pass --reference with one of the --frameworks")

    def _validate_timeout(self) -> None:
        if self.timeout is None:
            return
        try:
            self.timeout = float(self.timeout)
        except (TypeError, ValueError):
            raise UsageError(f"--timeout must be a number of seconds, got {self.timeout!r}",
                             "pass --timeout SECONDS, e.g. --timeout 600") from None
        if not (self.timeout > 0 and math.isfinite(self.timeout)):
            raise UsageError(f"--timeout must be a positive number of seconds, got {self.timeout:g}",
                             "pass --timeout SECONDS, e.g. --timeout 600")
        if self.inline:
            raise UsageError("--timeout needs worker processes, and --inline runs every framework in this "
                             "process", "leave out --inline (or --timeout)")

    def _validate_texts(self) -> None:
        if self.texts_file is not None:
            if not Path(self.texts_file).is_file():
                raise UsageError(f"texts file {self.texts_file} does not exist",
                                 "--texts-file takes a UTF-8 file with one text per line")
            from parity.planning.batch import read_texts

            read_texts(None, self.texts_file)  # fail now, before any worker starts
        if self.texts is not None:
            self.texts = [str(t) for t in self.texts]

    def _validate_behaviour(self) -> None:
        """--generate's settings, and the gate (parity.numerics.agreement), checked before anything starts."""
        from parity.numerics.agreement import gate_threshold
        from parity.planning.behaviour import settings

        for name in ("generate", "pipeline"):
            if not isinstance(getattr(self, name), bool):
                raise UsageError(f"{name} must be true or false, got {getattr(self, name)!r}",
                                 f"write {name} = true in the declared check (or pass --{name})")
        fixed = settings(None, self.max_new_tokens, self.num_beams)
        self.max_new_tokens, self.num_beams = fixed["max_new_tokens"], fixed["num_beams"]
        self.top1_min = gate_threshold(self.gate, self.top1_min)
        if self.gate == "oracle" and not any(registry.get(fw).float64_oracle for fw in self.frameworks):
            able = [fw.key for fw in registry.FRAMEWORKS if fw.float64_oracle]
            raise UsageError("--gate oracle needs a framework that can run the model in float64, and none of "
                             f"{','.join(self.frameworks)} can", f"add {registry.spoken(able, 'or')} to --frameworks, "
                             "e.g. --frameworks pt," + ",".join(f for f in self.frameworks if f != "pt"))

    def tolerance(self, name: str) -> tuple[float, float]:
        """(atol, rtol) for one output name: the first matching pattern, else the defaults."""
        for pattern, tol in (self.tolerances or {}).items():
            if fnmatch.fnmatchcase(name, pattern):
                return tol.get("atol", self.atol), tol.get("rtol", self.rtol)
        return self.atol, self.rtol

    def to_dict(self) -> dict:
        return asdict(self)


# Keys of one declared check (pyproject [tool.parity] / parity.toml); the rest are CheckConfig's.
CHECK_KEYS = {"name", "checkpoint", "task", "frameworks", "reference", "source", "texts", "texts_file",
              "batch_size", "max_length", "seed", "device", "atol", "rtol", "outputs", "tolerances",
              "baseline", "against", "inline", "env", "generate", "pipeline", "max_new_tokens", "num_beams", "gate",
              "top1_min", "tokenizers"}


def load_project(root) -> tuple[Path | None, list[dict]]:
    """Declared checks from ``parity.toml`` or ``[tool.parity]`` of ``pyproject.toml`` in ``root``.

    Top-level keys are defaults for every ``[[checks]]`` entry. Relative
    paths are relative to the file. Returns (file, checks); (None, []) when
    there is neither file nor ``[tool.parity]``. A file that declares no check,
    or names an unknown key or table, is a UsageError: a gate must never test
    nothing silently.
    """
    import tomllib

    root = Path(root)
    for name in ("parity.toml", "pyproject.toml"):
        f = root / name
        if not f.is_file():
            continue
        try:
            data = tomllib.loads(f.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise UsageError(f"{f} is not valid TOML ({e})", f"fix the syntax of {f.name}") from None
        if name == "pyproject.toml":
            data = data.get("tool", {}).get("parity")
            if data is None:
                continue
        return f, _checks(f, data)
    return None, []


def _checks(f: Path, data: dict) -> list[dict]:
    where = "[tool.parity]" if f.name == "pyproject.toml" else f.name
    table = "[[tool.parity.checks]]" if f.name == "pyproject.toml" else "[[checks]]"
    _refuse_unknown_top_level(f, data)
    defaults = {k: v for k, v in data.items() if k != "checks"}
    entries = data.get("checks", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise UsageError(f"checks in {where} of {f} must be an array of tables",
                         "declare each check as [[tool.parity.checks]] (or [[checks]] in parity.toml)")
    if not entries:
        raise UsageError(f"{where} ({f}) declares no checks, so nothing would be tested",
                         f'add one {table} table per check, e.g. {table} checkpoint = "path/to/folder"')
    out, seen = [], set()
    for i, entry in enumerate(entries):
        merged = {**defaults, **entry}
        unknown = sorted(set(merged) - CHECK_KEYS)
        if unknown:
            raise UsageError(f"unknown key {unknown[0]!r} in check {i + 1} of {where} ({f})",
                             f"use only {', '.join(sorted(CHECK_KEYS))}")
        if "checkpoint" not in merged and "baseline" not in merged:
            raise UsageError(f"check {i + 1} of {where} ({f}) has no checkpoint", 'add checkpoint = "path/to/folder"')
        for key in ("checkpoint", "texts_file", "baseline"):
            if key in merged and not Path(str(merged[key])).expanduser().is_absolute():
                merged[key] = str((f.parent / str(merged[key])).resolve())
        if "env" in merged:
            from parity.planning.environments import declarations

            if not isinstance(merged["env"], dict):
                raise UsageError(f"env in check {i + 1} of {where} ({f}) must be a table of name = interpreter",
                                 'write env = {v5 = ".venv-v5/bin/python"}')
            merged["env"] = declarations(merged["env"], f.parent)
        name = str(merged.get("name") or Path(str(merged.get("checkpoint") or merged["baseline"])).name)
        if name in seen:
            raise UsageError(f"two checks in {where} ({f}) are named {name!r}", "give each check a distinct name")
        seen.add(name)
        merged["name"] = name
        out.append(merged)
    return out


def _refuse_unknown_top_level(f: Path, data: dict) -> None:
    """A misspelt table (``[[check]]``) or key (``chekpoint``) at the top is an error, never silently a default
    that no check reads: with no ``[[checks]]`` it would declare nothing and the gate would test nothing."""
    import difflib

    unknown = sorted(set(data) - CHECK_KEYS - {"checks"})
    if not unknown:
        return
    key, prefix = unknown[0], ("tool.parity." if f.name == "pyproject.toml" else "")
    value = data[key]
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        what, shown = "table", "[[{}]]".format
    elif isinstance(value, dict):
        what, shown = "table", "[{}]".format
    else:
        what, shown = "key", lambda k: repr(k[len(prefix):])
    where = "[tool.parity]" if prefix else f.name
    close = difflib.get_close_matches(key, sorted(CHECK_KEYS | {"checks"}), n=1)
    hint = f" (did you mean {shown(prefix + close[0])}?)" if close else ""
    raise UsageError(f"unknown {what} {shown(prefix + key)} in {where} ({f}){hint}",
                     f"declare checks as [[{prefix}checks]] tables; the keys there and at the top (defaults for "
                     f"every check) are {', '.join(sorted(CHECK_KEYS))}")


def from_entry(entry: dict, **overrides) -> "CheckConfig":
    """CheckConfig of one declared check (validated)."""
    kw = {k: v for k, v in entry.items() if k not in ("name", "checkpoint", "baseline", "against", "env")}
    if entry.get("env"):
        kw["envs"] = entry["env"]
    kw.update(overrides)
    return CheckConfig(path=str(entry.get("checkpoint", "")), **kw).validated()


def _count(name: str, value):
    """--batch-size, --max-length (>= 1) and --seed (>= 0) as integers; None stays None."""
    if value is None:
        return None
    flag = f"--{name.replace('_', '-')}"
    try:
        ivalue = int(value)
    except (TypeError, ValueError):
        raise UsageError(f"{flag} must be an integer, got {value!r}", f"pass {flag} N") from None
    if ivalue < (0 if name == "seed" else 1):
        raise UsageError(f"{flag} must be {'>= 0' if name == 'seed' else '>= 1'}, got {value}", f"pass {flag} N")
    return ivalue


def default_reference(frameworks: list) -> str:
    """The reference when none is given: PyTorch, else PyTorch in another environment (pt@v5), else the first."""
    first = registry.KEYS[0]
    return next((fw for fw in frameworks if fw == first), None) \
        or next((fw for fw in frameworks if fw.partition("@")[0].partition(":")[0] == first), frameworks[0])
