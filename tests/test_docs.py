"""The shell commands the docs show, run as written: each documented exit code and verdict line must hold.

A runnable example in README.md or docs/*.md is a fenced block right after a marker line

    <!-- doc-test: exit 0; MINILM=minilm; bert-tf=tiny:bert-tf -->

Its `$ ` lines are run one after another in bash (a line ending in `\\` goes on), in a fresh folder where
`.venv` and `.venv-v5` point to this checkout's and `parity` is on PATH; each `NAME=FIXTURE` stands a fixture
in for a hub checkpoint: the word NAME (and $NAME) becomes the fixture's path (`minilm`: the real
all-MiniLM-L6-v2; `tiny:X` / `gen:X` / `loading:X`: fixtures/build.py's, fixtures/generation.py's and
fixtures/loading.py's X). The last command's exit code must be the marker's, and every verdict line of the
block (`verdict: ...`, `A vs B: PASS|FAIL`, `parity: error: ...`) must appear in what the commands printed.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MARK = re.compile(r"^<!-- doc-test: (?P<spec>.*?) -->\s*$")
VERDICT = re.compile(r"^(verdict: .*|\S+ vs \S+: (PASS|FAIL)|parity: error: .*)")


def examples(files=None) -> list:
    """(file, line, exit code, substitutions, commands, expected lines) of every marked block."""
    found = []
    for path in files or [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        lines = path.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            m = MARK.match(line)
            if not m:
                continue
            spec = [part.strip() for part in m["spec"].split(";") if part.strip()]
            code = int(spec[0].removeprefix("exit").strip())
            subs = dict(part.split("=", 1) for part in spec[1:])
            assert lines[i + 1].startswith("```"), f"{path.name}:{i + 1}: a doc-test marker must precede a block"
            end = next(j for j in range(i + 2, len(lines)) if lines[j].startswith("```"))
            block = lines[i + 2:end]
            found.append((path.name, i + 1, code, subs, _commands(block), [b for b in block if VERDICT.match(b)]))
    return found


def _commands(block: list) -> list[str]:
    out, current = [], None
    for line in block:
        if current is not None:
            current += "\n" + line
        elif line.startswith("$ "):
            current = line[2:]
        if current is not None and not current.endswith("\\"):
            out.append(current)
            current = None
    return out


def _fixture(spec: str, request) -> str:
    if spec == "minilm":
        return str(request.getfixturevalue("minilm"))
    kind, _, name = spec.partition(":")
    return str(request.getfixturevalue({"tiny": "tiny", "gen": "gen", "loading": "loading"}[kind]) / name)


def _substitute(command: str, subs: dict) -> str:
    for word, path in subs.items():
        command = re.sub(rf"\$\{{?{re.escape(word)}\}}?(?![\w])|(?<![\w./-]){re.escape(word)}(?![\w./-])",
                         lambda _: path, command)
    return command


EXAMPLES = examples()


def test_the_docs_have_runnable_examples():
    assert len(EXAMPLES) >= 5 and all(e[4] and e[5] for e in EXAMPLES), EXAMPLES


@pytest.mark.parametrize("example", EXAMPLES, ids=[f"{e[0]}:{e[1]}" for e in EXAMPLES])
def test_documented_command(example, request, tmp_path):
    _, _, code, subs, commands, expected = example
    subs = {word: _fixture(spec, request) for word, spec in subs.items()}
    for venv in (".venv", ".venv-v5"):
        (tmp_path / venv).symlink_to(ROOT / venv)
    env = {**os.environ, "PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    printed, last = "", None
    for command in commands:
        proc = subprocess.run(["bash", "-c", _substitute(command, subs)], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=900)
        printed += proc.stdout + proc.stderr
        last = proc.returncode
    assert last == code, printed
    missing = [line for line in expected if _shown(line) not in printed]
    assert not missing, f"documented but not printed: {missing}\n{printed}"


def _shown(line: str) -> str:
    """What must appear of a documented verdict line: all of it, but a pair's line only up to its verdict
    (the counts after it are measured numbers of the run that was documented)."""
    m = re.match(r"^(\S+ vs \S+: (PASS|FAIL))", line)
    return m.group(1) if m else line.strip()


def test_the_parser_finds_marked_blocks_and_their_verdicts(tmp_path):
    doc = tmp_path / "d.md"
    doc.write_text("text\n<!-- doc-test: exit 1; M=minilm -->\n```\n$ parity check M \\\n  --explain\n"
                   "pt vs tf: FAIL  (1/2)\nnoise\nverdict: FAIL (exit 1: parity mismatch)\n```\n"
                   "```\n$ not marked\n```\n")
    [(name, line, code, subs, commands, expected)] = examples([doc])
    assert (name, line, code, subs) == ("d.md", 2, 1, {"M": "minilm"})
    assert commands == ["parity check M \\\n  --explain"]
    assert expected == ["pt vs tf: FAIL  (1/2)", "verdict: FAIL (exit 1: parity mismatch)"]
    assert _substitute("parity check $M M2 M --x=M", {"M": "/p"}) == "parity check /p M2 /p --x=/p"
    assert _shown("pt vs tf: FAIL  (1/2)") == "pt vs tf: FAIL"
