"""Results: the versioned JSON every report is rendered from.

``schema_version`` guards readers: an older file is upgraded on load, a
newer one is refused with a clear message rather than misread.

Each part of results.json is a typed record (OutputComparison, PairComparison,
FrameworkEntry, LoadIssues, Results) whose dataclass fields are its JSON keys
in file order; ``to_dict()`` writes exactly those keys and ``from_dict()``
reads them back, so a schema 1 file round-trips key for key. The records are
read-only mappings too, so ``results.comparisons[0]["passed"]`` (the Python
API as documented) keeps working. docs/results-schema.md is generated from
the field docs here (``schema_markdown``).
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

from parity.contracts.errors import UsageError
from parity.contracts.versions import versions

SCHEMA_VERSION = 1


def environment(devices: dict) -> dict:
    return {"versions": versions(), "platform": platform.platform(), "machine": platform.machine(),
            "cpu_count": os.cpu_count(), "devices": devices}


class _Absent:
    """The value of a key a record does not carry: left out of to_dict, a KeyError as a mapping.

    Distinct from None, which is written as null (a crashed worker's ``signal`` may be null,
    and is then present)."""

    _one = None

    def __new__(cls):
        if cls._one is None:
            cls._one = super().__new__(cls)
        return cls._one

    def __repr__(self) -> str:
        return "ABSENT"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self):
        return (_Absent, ())


ABSENT = _Absent()


def key(doc: str, default=MISSING, *, factory=MISSING, omit_none: bool = False, of=None, written=None):
    """A record field: ``doc`` (and ``written``, when it is written) go into docs/results-schema.md.
    ``default=ABSENT``: the key is written only when set; ``omit_none``: not written while None;
    ``of=(kind, Record)``: the value is that record, or a "list" or "dict" of them."""
    meta = {"doc": doc, "omit_none": omit_none, "of": of, "written": written}
    if factory is not MISSING:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def _plain(value):
    """JSON-ready copy: records through their to_dict, containers copied (as asdict did)."""
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value


def _typed(f, value):
    """A JSON value as the field's record type; anything not shaped as expected is kept as it is."""
    of = f.metadata.get("of")
    if of is None or value is None:
        return value
    kind, cls = of
    as_record = lambda v: cls.from_dict(v) if isinstance(v, Mapping) else v  # noqa: E731
    if kind == "list" and isinstance(value, list):
        return [as_record(v) for v in value]
    if kind == "dict" and isinstance(value, Mapping):
        return {k: as_record(v) for k, v in value.items()}
    return as_record(value) if kind == "one" else value


class Record(Mapping):
    """Base of the results.json parts: the dataclass fields are the JSON keys, in file order.

    Keys a file does not have are ABSENT (and stay out of to_dict); keys this parity does not
    know are kept in ``extra`` and written after the known ones, as the untyped dicts kept them.
    """

    def _present(self):
        for f in fields(self):
            if f.name == "extra" or not f.metadata.get("doc"):
                continue
            value = getattr(self, f.name)
            if value is ABSENT or (value is None and f.metadata.get("omit_none")):
                continue
            yield f.name, value
        yield from self.extra.items()

    def to_dict(self) -> dict:
        return {k: _plain(v) for k, v in self._present()}

    @classmethod
    def from_dict(cls, data: Mapping):
        """Read one part leniently: a missing key is ABSENT, an unknown one goes to ``extra``."""
        if isinstance(data, cls):
            return data
        known = {f.name: f for f in fields(cls) if f.init and f.metadata.get("doc")}
        values = {name: ABSENT for name in known}
        extra = {}
        for k, v in data.items():
            if k in known:
                values[k] = _typed(known[k], v)
            else:
                extra[k] = v
        return cls(**values, extra=extra)

    def __getitem__(self, name: str):
        f = self.__dataclass_fields__.get(name)
        if f is None or name == "extra" or not f.metadata.get("doc"):
            return self.extra[name]
        value = getattr(self, name)
        if value is ABSENT or (value is None and f.metadata.get("omit_none")):
            raise KeyError(name)
        return value

    def __iter__(self):
        return (k for k, _ in self._present())

    def __len__(self) -> int:
        return sum(1 for _ in self._present())


def record(cls):
    """A Record dataclass: keyword-only fields in JSON order; Mapping's equality (a record equals
    the dict it writes)."""
    return dataclass(cls, eq=False, kw_only=True)


@record
class LoadIssues(Record):
    """What the framework's loader reported (`frameworks.<fw>.load`)."""

    missing: list = key("weights the model expects and the checkpoint lacks: newly initialised", factory=list)
    unexpected: list = key("weights in the checkpoint the model does not use", factory=list)
    mismatched: list = key("weights whose shape differs from the model's", factory=list)
    notes: list = key("what parity did about the load (conversions, workarounds, ignored options)", factory=list)
    extra: dict = field(default_factory=dict, repr=False)


@record
class FrameworkEntry(Record):
    """One framework's load and run (`frameworks.<fw>`). The first nine keys are always written
    (null until known); the optional ones when they apply."""

    status: str | None = key("ok, error, crashed, unavailable, unsupported or interrupted", None)
    error: str | None = key("first line of what went wrong, or null", None)
    class_name: str | None = key("the model class (e.g. TFBertModel); null when transformers has none")
    weights: str | None = key("the weights file loaded", None)
    converted_from: str | None = key("the framework whose weights were converted, or null for native weights",
                                     None)
    via: str | None = key("the conversion bridge, when the conversion went through a third format", None)
    device: str | None = key("the device the framework ran on (e.g. cpu)", None)
    load: LoadIssues = key("the loader's report: `missing`, `unexpected`, `mismatched`, `notes`",
                           factory=LoadIssues, of=("one", LoadIssues))
    seconds: dict = key("`import` (the framework, transformers and the model class), `load`, `run`, "
                        "`total`, `cpu` (the worker process's CPU seconds, every thread)", factory=dict)
    path: str = key("the folder this framework loaded natively (parity convert)", ABSENT)
    signal: str | None = key("a worker that died or ran past --timeout: the signal (e.g. SIGKILL), or null",
                             ABSENT)
    returncode: int | None = key("with `signal`: the worker's exit status (negative: killed by a signal)", ABSENT)
    timed_out: bool = key("with `signal`: whether the worker ran past --timeout", ABSENT)
    traceback: str = key("a framework that raised: the full traceback", ABSENT)
    imported: list = key("the frameworks (torch, tensorflow, jax) the process had imported", ABSENT)
    compile_cache: dict = key("Flax with the cache on: `dir`, `requests`, `hits`", ABSENT)
    cache: str | None = key("written once the model loaded: `hit` or `stored` when the converted weights came "
                            "from or went to the conversion cache, else null", ABSENT)
    settings: dict = key("how the framework loaded, as it ran: `dtype` (the weights' effective floating dtype: "
                         "float32 unless a `:OPTION` loading variant chose another, e.g. `pt@v5:auto` on a bf16 "
                         "checkpoint), PyTorch's `attn_implementation` (eager whenever attentions are compared and no "
                         "variant says otherwise); absent when the framework did not load", ABSENT)
    environment: dict = key("where the worker ran: `name` (the --env name; null for parity's own interpreter), "
                            "`python` (the interpreter), `versions` (python and the PACKAGES there); absent in "
                            "files from before it existed", ABSENT)
    extra: dict = field(default_factory=dict, repr=False)


def _metric(doc: str):
    """A metric of OutputComparison: written for every compared output, absent from the row of an
    output missing on one side."""
    return key(doc, ABSENT, written="compared outputs")


@record
class OutputComparison(Record):
    """One output of one pair (`comparisons[].outputs[]`). An output present on one side only has
    just `name`, `shape` (null), `passed` (false), `atol`, `rtol` and `error`."""

    name: str = key("the flattened output name (logits, hidden_states.3, past_key_values.0.k, ...)")
    shape: list | None = key("the reference's shape")
    passed: bool = key("every counted element satisfies |candidate - reference| <= atol + rtol * |reference|, "
                       "and none is NaN or Inf")
    atol: float = key("the absolute tolerance applied")
    rtol: float = key("the relative tolerance applied")
    max_abs_diff: float | None = _metric("greatest |candidate - reference| over counted finite elements")
    max_rel_diff: float | None = _metric("greatest |candidate - reference| / |reference| over non-zero references")
    mean_abs_diff: float | None = _metric("mean |candidate - reference| over counted finite elements")
    cosine: float | None = _metric("cosine similarity of the counted finite elements")
    mismatched: int = _metric("counted elements outside the tolerance (NaN and Inf included)")
    total: int = _metric("counted elements (padded positions excluded)")
    mismatched_share: float = _metric("mismatched / total")
    worst_index: list | None = _metric("index of the greatest absolute difference (of the first NaN or Inf "
                                       "when there is one)")
    required_atol: float | None = _metric("the smallest atol that passes at this rtol (null when NaN or Inf "
                                          "decide)")
    nonfinite: dict = _metric("NaN and Inf counts among counted elements: `reference`, `candidate`")
    masked: bool = _metric("whether padded positions were excluded")
    error: str | None = key("why the output could not be compared (shape mismatch, missing on one side)", None)
    top1_agreement: float | None = key("logits outputs (class or vocabulary last axis): share of counted positions "
                                       "where both pick the same top-1 (null when a value is not finite)", ABSENT)
    mean_kl: float | None = key("logits outputs: mean KL(reference || candidate) of the softmax over the last axis, "
                                "nats per counted position", ABSENT)
    gate: dict = key("under `gate = \"top1\"` (logits outputs): `kind`, `min` (the threshold), "
                     "`elementwise_passed`; `passed` is then top1_agreement >= min. A pair with a `:bf16` / `:fp16` "
                     "side (parity.numerics.precision): `kind` statistical, `dtype`, `stat` (mean), `max`, `mean`, "
                     "`median`, `quantile` (at `q`) of |candidate - reference|, `mean_ref`, `bound` (atol + rtol * "
                     "mean_ref), `top1_flips` (logits: flips beyond tolerance), `elementwise_passed`; `passed` is "
                     "then mean <= bound (and no decided top-1 flip). Under `gate = \"oracle\"` "
                     "(every compared output): `kind`, `elementwise_passed`; `passed` is then element-wise or "
                     "`oracle.passed`", ABSENT)
    oracle: dict | None = key("when a float64 run of the model was made (`--gate oracle`, `--explain`): "
                              "`reference_rmse` and `candidate_rmse` (each side's root mean squared error to the "
                              "float64 outputs over the counted positions), `multiplier`, `slack` (atol / 10) and "
                              "`passed` (candidate_rmse <= multiplier * reference_rmse + slack: torch._dynamo "
                              "same()'s rule with an fp64 reference)", ABSENT)
    candidate_shape: list = key("shape mismatch only: the candidate's shape", ABSENT)
    padded: dict = key("masked outputs: the excluded positions apart from the verdict: `positions`, "
                       "`max_abs_diff` (null when none finite), `nonfinite`", ABSENT)
    extra: dict = field(default_factory=dict, repr=False)
    # Not written: max abs diff per (batch row, token) for compare_pair's token_error.
    per_token: dict | None = field(default=None, repr=False)


@record
class PairComparison(Record):
    """One candidate against the reference (`comparisons[]`)."""

    reference: str = key("the reference framework (`baseline:<fw>` against a recorded baseline)")
    candidate: str = key("the framework compared with it")
    passed: bool = key("every output passed")
    first_divergence: str | None = key("the first failing output in forward-pass order, or null")
    outputs: list[OutputComparison] = key("one row per output, in forward-pass order",
                                          factory=list, of=("list", OutputComparison))
    token_error: dict | None = key("for the token-aligned output (or attention map per query) with the "
                                   "largest max abs diff: `output`, `max_abs_diff`, `reduction`, `values` "
                                   "(that diff per batch row and token, 3 significant digits, null where "
                                   "padded), `nonfinite` ([row, token] pairs); null when no output is "
                                   "token-aligned", None)
    not_compared: list = key("absent in files from before it existed: caches one framework does not "
                             "return from a plain forward pass: `name`, `missing_in`, `reason`", ABSENT)
    extra: dict = field(default_factory=dict, repr=False)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@record
class Results(Record):
    """The whole file. Unlike its parts it is read strictly: it needs every key without a default,
    and keys this parity does not know are dropped."""

    schema_version: int = key("the file's schema; a reader refuses a newer one", SCHEMA_VERSION)
    passed: bool = key("the verdict: every framework ran and every comparison passed")
    exit_code: int = key("the exit code the verdict maps to (0 pass, 1 mismatch, 3 a framework failed, "
                         "130 interrupted)")
    task: str = key("the Auto family used (sequence-classification, base, ...)")
    checkpoint: dict = key("`path`, `model_type`, `architectures`, `labels` (id2label, when set), "
                           "`fingerprint` (sha256 over every file's sha256), `files` (sha256 and size per file)")
    inputs: dict = key("`source` (tokenizer or random-ids), `seed`, `texts`, `tokenizer`, `cache`, `keys`, "
                       "`shapes`, `dtypes`, `padded_positions`, `empty_rows` (rows whose mask is all "
                       "zeros: nothing to compare, excluded from every comparison; absent in files from "
                       "before it existed), `attention_mask` (per row and token, or null)")
    environment: dict = key("`versions` (python and the PACKAGES), `platform`, `machine`, `cpu_count`, "
                            "`devices` per framework")
    config: dict = key("the resolved options of the run")
    frameworks: dict[str, FrameworkEntry] = key("per framework key (pt, tf, flax; pt@v5 for one run in the --env "
                                                "environment v5; pt:bf16, pt@v5:auto with a loading variant, "
                                                "parity.contracts.variants; "
                                                "environment v5): its FrameworkEntry",
                                                of=("dict", FrameworkEntry))
    comparisons: list[PairComparison] = key("per candidate: its PairComparison", of=("list", PairComparison))
    created: str = key("when the file was written (UTC, ISO 8601)", factory=_now)
    seconds: dict = key("the parent's stages: `prepare`, `workers`, `compare`, `total`, `cpu`", factory=dict)
    diagnosis: dict | None = key("--explain only (see diagnose.py): `oracle`, `noise_floor`, `inputs`, `pairs` "
                                 "(per pair: first divergence, layer table, which side drifted, weights, "
                                 "narrative); null otherwise", None)
    complete: bool = key("false when the run was stopped (Ctrl-C) before every framework and comparison "
                         "finished", True)
    interrupted: bool = key("true when the run was stopped; what did finish is in the file", False)
    conversion: dict | None = key("parity convert only: `from`, `to`, `output`, `weights` (the weights "
                                  "comparison)", None, omit_none=True)
    schedule: dict | None = key("worker mode only: whether the workers ran side by side and why, and when each "
                                "started and ended (schedule.py); with workers kept between checks, `pool`: "
                                "`max_checks`, `max_rss_bytes`, `max_idle`, `max_templates` (parity.execution.forkserver; 0 in "
                                "a pool inside the checking process), `shared` (the socket of a pool server, when "
                                "one lent the workers) and per framework the worker's `pid`, `check` (1: a fresh "
                                "process), `fresh_because` and `forked` (from a template) (parity.execution.pool)", None, omit_none=True)
    nothing_compared: str | None = key("why no pair was compared (every candidate unavailable, unsupported or "
                                       "failed): such a check is exit 3, never a pass; absent otherwise", None,
                                       omit_none=True)
    reference_used: dict | None = key("`requested` (--reference), `framework` (the one the comparisons are judged "
                                      "against: the requested one, or the next framework in --frameworks order that "
                                      "ran when it could not; null when no pair could be compared), `reason` (why "
                                      "the requested one was not used; null when it was); not written for baselines",
                                      None, omit_none=True)
    generation: list | None = key("--generate only: one entry per pair against the reference: `reference`, "
                                  "`candidate`, `passed`, `first_divergence_step` (the earliest step where a row's "
                                  "tokens part, null when every row is equal), `steps`, `rows` (per row: `tokens` "
                                  "[reference, candidate], `first_divergence_step`, `scores` (`raw` / `processed`: "
                                  "`passed`, `max_abs_diff`, `steps` compared), `text`, `reason` where it parted: "
                                  "`kind` near_tie, generation_loop or forward_drift, `text`, margins and drift, "
                                  "`top_candidates` (per side: the 5 best tokens of the scores it chose from at that "
                                  "step, best first: `token`, `score`, and `logit`, the raw next-token logit, when "
                                  "those scores are the processed ones; absent in files from before it existed), "
                                  "for generation_loop `not_applied`, `dropped` (settings a framework's generate "
                                  "rebuilt away) and `config_diff`), "
                                  "`scores` (which per-step scores each framework's generate returned), "
                                  "`config_diff`, `not_applied` (settings a framework's generate never reads), "
                                  "`summary`; `error` when a side could not generate (`failed_everywhere` true when "
                                  "neither could: the check is then exit 3, not a mismatch); with a `:bf16` / `:fp16` "
                                  "side `gate` (`kind` logprobs_close, `dtype`, `top_n`, `scores`, "
                                  "`elementwise_passed`) and per parted row `logprobs_close`: vLLM's rule decides",
                                  None, omit_none=True)
    tokenizers: list | None = key("where the sides could tokenize differently (another environment, KerasHub): one "
                                  "entry per pair against the reference: `reference`, `candidate`, `passed`, "
                                  "`compared` (texts), `report_only` (--tokenizers report), `issues` (special tokens, "
                                  "padding side), `texts` (per differing text: `text`, `ids` [reference, candidate], "
                                  "`tokens`, `first_difference`, `cause`), `error` (a side's tokenizer could not "
                                  "load: that side and why)", None, omit_none=True)
    pipeline: list | None = key("--pipeline only: one entry per pair: `reference`, `candidate`, `passed`, `task`, "
                                "`items` (per input: `input`, what each pipeline returned as [reference, "
                                "candidate] (`label` or `answer`, each with its `score` (absent in files from "
                                "before it existed), `top_k`, `text`, or entity `flips`), `agrees`, "
                                "`scores_within`), "
                                "`label_agreement`, `flips` (each with its score margin), `max_length` and "
                                "`truncated` (the inputs are cut as the forward batch is: to how many tokens, how "
                                "many were), `summary`; `error` naming the failing input when a side's pipeline "
                                "failed (`failed_everywhere` true when every side's did: exit 3, not a mismatch), "
                                "or `skipped` when a framework has no pipeline", None, omit_none=True)
    extra: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        # api.run_check hands in plain dicts (and compare_pair's records): type every part.
        for f in fields(self):
            if f.metadata.get("of"):
                setattr(self, f.name, _typed(f, getattr(self, f.name)))

    def save(self, path) -> Path:
        """Write atomically (temp file + rename): a reader never sees half a file."""
        from parity.contracts.atomic import write_atomic

        return write_atomic(path, json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n")

    @classmethod
    def from_dict(cls, data: dict) -> "Results":
        data = upgrade(dict(data))
        known = {f.name for f in fields(cls) if f.metadata.get("doc")}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def load(cls, path) -> "Results":
        p = Path(path)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UsageError(f"results file {path} does not exist", "pass a results.json written by parity check") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise UsageError(f"results file {path} is not valid JSON ({str(e).splitlines()[0]})",
                             "re-run parity check to write it again") from None
        if not isinstance(data, dict) or "schema_version" not in data:
            raise UsageError(f"{path} is not a parity results file (no schema_version)",
                             "pass a results.json written by parity check")
        return cls.from_dict(data)


def upgrade(data: dict) -> dict:
    """Bring an older results dict up to SCHEMA_VERSION; refuse newer ones."""
    version = data.get("schema_version")
    if not isinstance(version, int) or version < 1:
        raise UsageError(f"results schema_version {version!r} is not valid", "re-run parity check to write it again")
    if version > SCHEMA_VERSION:
        raise UsageError(f"results schema_version {version} is newer than this parity understands ({SCHEMA_VERSION})",
                         "upgrade parity (pip install -U parity) to read it")
    return data


RECORDS = (Results, FrameworkEntry, LoadIssues, PairComparison, OutputComparison)
SCHEMA_DOC = "docs/results-schema.md"


def _field_row(f) -> str:
    kind = f.type.replace(" | None", " or null")
    if f.metadata.get("written"):
        when = f.metadata["written"]
    elif f.default is ABSENT:
        when = "optional"
    elif f.metadata.get("omit_none"):
        when = "omitted while null"
    else:
        when = "always"
    doc = f.metadata["doc"].replace("|", "\\|")  # a bar inside a cell would end it
    return f"| `{f.name}` | {kind} | {when} | {doc} |"


def schema_markdown() -> str:
    """docs/results-schema.md, generated from the records' fields (a test keeps the file in step)."""
    lines = ["# results.json schema", "",
             f"Generated from `parity/results.py` by `parity.contracts.results.schema_markdown()`; do not edit by hand. "
             f"Regenerate with `python -c \"from parity.contracts.results import schema_markdown; "
             f"print(schema_markdown(), end='')\" > {SCHEMA_DOC}`.", "",
             f"`schema_version` is {SCHEMA_VERSION}. A reader upgrades an older file on load (`results.upgrade`) "
             "and refuses a newer one with a clear message. Keys appear in the file in the order below. "
             "\"optional\" keys are written only when they apply; a reader of the parts below `Results` "
             "keeps keys it does not know and writes them back after the known ones.", ""]
    for cls in RECORDS:
        doc = " ".join(line.strip() for line in (cls.__doc__ or "").strip().splitlines())
        lines += [f"## {cls.__name__}", "", doc, "", "| key | type | written | content |", "|---|---|---|---|"]
        lines += [_field_row(f) for f in fields(cls) if f.metadata.get("doc")]
        lines.append("")
    return "\n".join(lines)
