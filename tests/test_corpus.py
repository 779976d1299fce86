"""The bad-input corpus (tests/corpus/make_corpus.py) through the CLI and Results.load.

Each case: the expected exit code, one stderr line `parity: error: ... Note: ...`
naming the problem, no traceback, nothing written to the report folder, no
worker process or temporary folder left behind.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from parity.contracts.errors import UsageError
from parity.contracts.results import Results

pytest_plugins = ["pytester"]

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("make_corpus", HERE / "corpus" / "make_corpus.py")
make_corpus = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_corpus)

CHECK_CASES = sorted(n for n, c in make_corpus.CASES.items() if c["kind"] == "check")
RESULTS_CASES = sorted(n for n, c in make_corpus.CASES.items() if c["kind"] == "results")
DECLARATION_CASES = sorted(n for n, c in make_corpus.CASES.items() if c["kind"] == "declaration")


def test_corpus_is_large_enough():
    assert len(make_corpus.CASES) >= 68
    assert len(DECLARATION_CASES) >= 5


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, tiny):
    return make_corpus.generate(tmp_path_factory.mktemp("corpus"), tiny)


def _worker_pids_under(folder: Path) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if str(folder).encode() in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                pass
    return pids


def run_check(args, tmp: Path, env=None, report_dir=None, pre=()) -> subprocess.CompletedProcess:
    """`python -m parity check` with its own TMPDIR, so leftovers (workdirs, workers) can be found."""
    (tmp / "tmpdir").mkdir(exist_ok=True)
    env = {**os.environ, "TMPDIR": str(tmp / "tmpdir"), **(env or {})}
    if report_dir is not None and "--report-dir" not in args:
        args = [*args, "--report-dir", str(report_dir)]
    return subprocess.run([sys.executable, "-m", "parity", *pre, "check", *map(str, args)], cwd=tmp, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("name", CHECK_CASES)
def test_bad_input_through_the_cli(corpus, tmp_path, name):
    manifest = corpus
    case = manifest[name]
    report_dir = tmp_path / "out"
    r = run_check(case["args"], tmp_path, report_dir=report_dir)
    assert r.returncode == case["exit"], (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("parity: error: ") and " Note: " in lines[0], lines[0]
    assert case["expect"] in lines[0], lines[0]
    assert "Traceback" not in r.stderr + r.stdout
    assert not report_dir.exists() or not any(report_dir.iterdir())  # nothing half-written
    assert not list((tmp_path / "tmpdir").iterdir())                  # workdir removed
    assert _worker_pids_under(tmp_path / "tmpdir") == []              # no worker left running


@pytest.mark.parametrize("name", RESULTS_CASES)
def test_bad_results_file(corpus, name):
    manifest = corpus
    case = manifest[name]
    with pytest.raises(UsageError) as e:
        Results.load(case["args"][0])
    line = e.value.one_line()
    assert case["expect"] in line and " Note: " in line, line


def test_tokenizer_failure_stops_the_workers_that_started(corpus, tmp_path):
    """The workers are started before the batch; a tokenizer error must not leave them loading."""
    manifest = corpus
    args = manifest["tokenizer_fails_to_load"]["args"]
    r = run_check(args, tmp_path, report_dir=tmp_path / "out", pre=["--debug"])
    assert "Traceback" in r.stderr  # --debug shows where: inside the executor, after the workers started
    assert "_in_workers" in r.stderr and "UsageError" in r.stderr and "failed to load" in r.stderr
    assert _worker_pids_under(tmp_path / "tmpdir") == []
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.slow
def test_nan_outputs_fail_with_nan_counted(tiny, tmp_path):
    """A checkpoint whose outputs are NaN is a failed comparison (exit 1) with every NaN counted, not a crash."""
    from safetensors.numpy import load_file, save_file
    import shutil

    ckpt = tmp_path / "bert-nan"
    shutil.copytree(tiny / "bert-pt", ckpt)
    weights = load_file(str(ckpt / "model.safetensors"))
    weights["bert.embeddings.LayerNorm.weight"][0] = np.nan
    save_file(weights, str(ckpt / "model.safetensors"), metadata={"format": "pt"})
    r = run_check([ckpt, "--frameworks", "pt,flax"], tmp_path, report_dir=tmp_path / "out")
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    assert res["complete"] and not res["passed"] and res["exit_code"] == 1
    assert all(fw["status"] == "ok" for fw in res["frameworks"].values())
    comp = res["comparisons"][0]
    assert not comp["passed"] and comp["first_divergence"] == "hidden_states.0"
    rows = {row["name"]: row for row in comp["outputs"]}
    # hidden size 32: one of 32 embedding features is NaN in every real token, on both sides
    h0 = rows["hidden_states.0"]
    assert h0["nonfinite"]["reference"] == h0["nonfinite"]["candidate"] == h0["total"] // 32
    assert h0["mismatched"] == h0["nonfinite"]["reference"]
    logits = rows["logits"]  # attention mixes every feature: all NaN downstream
    assert logits["nonfinite"] == {"reference": logits["total"], "candidate": logits["total"]}
    assert not any(row["passed"] for row in comp["outputs"])
    assert "NaN/Inf: " in r.stdout


# --- the same corpus through the pytest plugin --------------------------------------------------------

# CLI flag -> parity.toml key; a case using any other flag (--report-dir, --timeout) has no plugin form.
CONFIG_KEYS = {"--task": "task", "--frameworks": "frameworks", "--reference": "reference", "--source": "source",
               "--texts-file": "texts_file", "--max-length": "max_length", "--seed": "seed", "--atol": "atol",
               "--rtol": "rtol", "--outputs": "outputs", "--batch-size": "batch_size", "--device": "device"}


# argparse refuses a bad --device choice on the command line; a config file reaches the same check in config.py
PLUGIN_EXPECT = {"unknown_device": "unknown device 'tpu'"}


def as_declared_check(name: str, args: list) -> str | None:
    """A CLI case as a parity.toml check, or None when one of its flags has no config key."""
    lines = ["[[checks]]", f"name = {json.dumps(name)}", f"checkpoint = {json.dumps(args[0])}"]
    rest, texts = list(args[1:]), []
    while rest:
        if len(rest) < 2 or rest[0] not in (*CONFIG_KEYS, "--text"):
            return None
        flag, value, rest = rest[0], rest[1], rest[2:]
        if flag == "--text":
            texts.append(value)
        else:
            lines.append(f"{CONFIG_KEYS[flag]} = {json.dumps(value)}")  # a JSON string is a TOML string
    if texts:
        lines.append(f"texts = {json.dumps(texts)}")
    return "\n".join(lines) + "\n"


def _sections(out: str) -> dict:
    """pytest's report sections (`____ title ____`) by title."""
    found, title = {}, None
    for line in out.splitlines():
        head = re.match(r"^_{3,} (.+?) _{3,}$", line)
        if head:
            title = head.group(1)
            found[title] = []
        elif title is not None:
            found[title].append(line)
    return {t: "\n".join(body) for t, body in found.items()}


def _copy_declarations(corpus, pytester, names) -> dict:
    """Each declaration case's file (parity.toml or pyproject.toml) into its own folder of the pytester root."""
    for name in names:
        shutil.copytree(corpus[name]["args"][0], pytester.path / name)
    return {name: corpus[name] for name in names}


def _plugin_run(pytester, declared: dict):
    """One pytest session over ``declared``; every case must report its one line (collection error or
    failed item), none may vanish. Returns the run."""
    from importlib.metadata import entry_points

    installed = any(ep.value == "parity.pytest_plugin" for ep in entry_points(group="pytest11"))
    plugin = () if installed else ("-p", "parity.pytest_plugin")
    r = pytester.runpytest_subprocess(*plugin, "-p", "no:cacheprovider", "--continue-on-collection-errors",
                                      timeout=1200)
    sections = _sections(r.stdout.str())
    wrong = []
    for name, case in declared.items():
        mine = [body for title, body in sections.items()
                if title in (f"ERROR collecting {name}/parity.toml", f"ERROR collecting {name}/pyproject.toml")
                or title.startswith(f"parity check {name}[")]
        if not mine:
            wrong.append(f"{name}: no error or failure reported")
        expect = PLUGIN_EXPECT.get(name, case["expect"])
        for body in mine:
            line = next((ln for ln in body.splitlines() if "parity: error: " in ln), "")
            if expect not in line or " Note: " not in line or "Traceback" in body:
                wrong.append(f"{name}: {body}")
    assert not wrong, "\n".join(wrong)
    return r


@pytest.mark.parametrize("name", DECLARATION_CASES)
def test_bad_declaration_is_one_line(corpus, name):
    from parity.planning.config import load_project

    with pytest.raises(UsageError) as e:
        load_project(corpus[name]["args"][0])
    line = e.value.one_line()
    assert corpus[name]["expect"] in line and " Note: " in line, line


def test_bad_declarations_through_the_pytest_plugin(corpus, pytester):
    """A misspelt table or key, or a file that declares nothing: a collection error with the one line each,
    never zero items (pytest's exit 5, \"no tests ran\", would pass a gate that tested nothing)."""
    r = _plugin_run(pytester, _copy_declarations(corpus, pytester, DECLARATION_CASES))
    assert r.ret == pytest.ExitCode.TESTS_FAILED  # collection errors under --continue-on-collection-errors
    assert f"{len(DECLARATION_CASES)} errors in" in r.stdout.str()


@pytest.mark.slow
def test_bad_input_through_the_pytest_plugin(corpus, pytester):
    """Every case that has a parity.toml form, and every declaration case: a collection error or a failed
    item whose report is the same one line (`parity: error: ... Note: ...`), no traceback. One pytest
    session for all of them."""
    declared = {}
    for name in CHECK_CASES:
        text = as_declared_check(name, corpus[name]["args"])
        if text is not None:
            (pytester.path / name).mkdir()
            (pytester.path / name / "parity.toml").write_text(text)
            declared[name] = corpus[name]
    assert len(declared) >= 25
    declared.update(_copy_declarations(corpus, pytester, DECLARATION_CASES))
    _plugin_run(pytester, declared)
