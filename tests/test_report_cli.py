"""`parity report` and `parity check --format`: files written from results.json alone, bad input, progress."""

from __future__ import annotations

import io
import json
import os
import select
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from parity.report.progress import Progress

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "results"


def test_report_renders_every_format_from_a_saved_file(cli, tmp_path):
    out = tmp_path / "out"
    r = cli("report", FIXTURES / "fail.json", "--out", out, "--format", "console,json,md,html,junit")
    assert r.code == 1, r.err  # the saved verdict: a parity mismatch
    assert sorted(p.name for p in out.iterdir()) == ["junit.xml", "report.html", "report.md", "results.json"]
    assert json.loads((out / "results.json").read_text()) == json.loads((FIXTURES / "fail.json").read_text())
    assert "first divergence: hidden_states.2" in r.out and "verdict: FAIL (exit 1" in r.out
    assert (out / "report.md").read_text().startswith("## ❌ parity: FAIL")
    assert ET.parse(out / "junit.xml").getroot().get("failures") == "1"
    assert r.err == ""


def test_report_default_is_console_and_html_next_to_the_results(cli, tmp_path):
    src = tmp_path / "run" / "results.json"
    src.parent.mkdir()
    src.write_bytes((FIXTURES / "pass.json").read_bytes())
    r = cli("report", src)
    assert r.code == 0, r.err
    assert sorted(p.name for p in src.parent.iterdir()) == ["report.html", "results.json"]
    assert src.read_bytes() == (FIXTURES / "pass.json").read_bytes()  # the input is never rewritten
    assert f"report: {src.parent / 'report.html'}" in r.out


def test_report_over_several_results_writes_an_index(cli, tmp_path):
    runs = tmp_path / "runs"
    for name in ("pass", "fail", "unsupported"):
        (runs / name).mkdir(parents=True)
        (runs / name / "results.json").write_bytes((FIXTURES / f"{name}.json").read_bytes())
    r = cli("report", *sorted(runs.glob("*/results.json")), "--out", runs, "--format", "html,md")
    assert r.code == 1, r.err
    page = (runs / "index.html").read_text()
    for name in ("pass", "fail", "unsupported"):
        assert (runs / name / "report.html").exists() and (runs / name / "report.md").exists()
        assert f'href="{name}/report.html"' in page
    assert "1 fail" in page


@pytest.mark.parametrize("args, message", [
    (["--format", "html,pdf"], "parity: error: unknown report format 'pdf'. Note: --format takes a comma list of "
                               "console, json, md, html, junit"),
    (["--format", ","], "parity: error: --format is empty."),
])
def test_report_bad_format_is_one_line_and_writes_nothing(cli, tmp_path, args, message):
    out = tmp_path / "out"
    r = cli("report", FIXTURES / "pass.json", "--out", out, *args)
    assert r.code == 2 and r.err.startswith(message) and len(r.err.splitlines()) == 1
    assert not out.exists()


def test_report_bad_input_writes_nothing(cli, tmp_path):
    out = tmp_path / "out"
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    r = cli("report", FIXTURES / "pass.json", bad, "--out", out)
    assert r.code == 2 and "is not valid JSON" in r.err and "Traceback" not in r.err
    assert not out.exists()  # the good file was not rendered either
    r = cli("report", tmp_path / "missing.json")
    assert r.code == 2 and r.err.startswith("parity: error: results file") and "does not exist" in r.err
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps({**json.loads((FIXTURES / "pass.json").read_text()), "schema_version": 99}))
    r = cli("report", newer, "--out", out)
    assert r.code == 2 and "newer than this parity understands" in r.err and not out.exists()


def test_check_bad_format_fails_before_any_work(cli, tmp_path):
    # An empty folder (no config.json) would be refused too: the format is checked first.
    r = cli("check", tmp_path, "--format", "console,xml")
    assert r.code == 2 and r.err.startswith("parity: error: unknown report format 'xml'.")
    assert not (tmp_path / "report").exists()


# --- progress: a status line on a terminal, nothing otherwise -------------------------------------

class _Stream(io.StringIO):
    def __init__(self, tty):
        super().__init__()
        self._tty = tty

    def isatty(self):
        return self._tty


def test_progress_renders_on_a_tty_only():
    quiet = _Stream(False)
    p = Progress(quiet)
    p("pt", "loading")
    p.close()
    assert quiet.getvalue() == ""
    tty = _Stream(True)
    p = Progress(tty)
    p("pt", "loading")
    p("tf", "loading")
    p("pt", "running")
    p("pt vs tf", "comparing")
    p.close()
    frames = tty.getvalue().split("\r\x1b[K")
    assert frames[1].startswith("parity: pt loading (")
    assert frames[3].startswith("parity: pt running, tf loading (")
    assert frames[4].startswith("parity: pt running, tf loading, pt vs tf comparing (")
    assert frames[-1] == ""  # the line is cleared at the end


@pytest.mark.slow
def test_check_writes_chosen_formats_and_shows_progress_only_on_a_terminal(tiny, tmp_path):
    """The real CLI twice: stderr on a pseudo-terminal (progress shown), then on a pipe (silent)."""
    argv = [sys.executable, "-m", "parity", "check", str(tiny / "bert-pt"), "--frameworks", "pt,flax"]
    master, slave = os.openpty()
    proc = subprocess.Popen(argv + ["--report-dir", str(tmp_path / "a"), "--format", "md,junit,html"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=slave, text=True)
    os.close(slave)
    seen = b""
    while True:
        ready, _, _ = select.select([master], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the pty closes when the child exits
                break
            if not chunk:
                break
            seen += chunk
        elif proc.poll() is not None:
            break
    out = proc.communicate(timeout=600)[0]
    os.close(master)
    assert proc.returncode == 0, out
    text = seen.decode(errors="replace")
    for piece in ("pt loading", "flax loading", "flax done", "pt vs flax comparing"):
        assert piece in text, text
    a = tmp_path / "a"
    assert sorted(p.name for p in a.iterdir()) == ["junit.xml", "report.html", "report.md"]  # no json asked
    assert out.splitlines()[0].startswith("report: ")  # no console format asked: only the file list

    r = subprocess.run(argv + ["--report-dir", str(tmp_path / "b")], cwd=tmp_path, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "loading" not in r.stderr and "\r" not in r.stderr
    b = tmp_path / "b"
    assert sorted(p.name for p in b.iterdir()) == ["report.html", "results.json"]  # default console,json,html
    res = json.loads((b / "results.json").read_text())
    assert res["inputs"]["attention_mask"] and res["comparisons"][0]["token_error"]["output"]
    assert "verdict: PASS" in r.stdout and f"report: {b / 'report.html'}" in r.stdout
