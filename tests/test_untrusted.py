"""Untrusted checkpoints: no custom code without --trust-remote-code, pickles scanned and refused unread,
escaped strings in reports, no network for a local folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from parity.report import console

ROOT = Path(__file__).resolve().parents[1]


def _run(args, tmp: Path, env=None, pre=(), prefix=()):
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp / "hf_modules"), **(env or {})}
    return subprocess.run([*prefix, sys.executable, "-m", "parity", *pre, "check", *map(str, args),
                           "--report-dir", str(tmp / "out")], cwd=tmp, env=env, capture_output=True, text=True,
                          timeout=900)


def _marker_code(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').write('code from the checkpoint ran')\n"


def _one_error_line(r) -> str:
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    return lines[0]


@pytest.mark.parametrize("trust", [False, True])
def test_custom_model_code_never_runs(tmp_path, trust):
    """A model defined by code in the folder: refused without the flag; with it, still not run (no TF/Flax twin)."""
    marker = tmp_path / "MARKER"
    d = tmp_path / "evil"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({
        "model_type": "evil", "auto_map": {"AutoConfig": "configuration_evil.EvilConfig",
                                           "AutoModel": "modeling_evil.EvilModel"}}))
    (d / "configuration_evil.py").write_text(_marker_code(marker))
    (d / "modeling_evil.py").write_text(_marker_code(marker))
    (d / "model.safetensors").write_bytes(b"\x08" + bytes(7) + b"{}      ")
    r = _run([d] + (["--trust-remote-code"] if trust else []), tmp_path)
    assert r.returncode == 2
    line = _one_error_line(r)
    if trust:
        assert "defines its model in custom code" in line and "modeling_evil.EvilModel" in line
    else:
        assert "trust_remote_code is off" in line and "Note: pass --trust-remote-code" in line
    assert not marker.exists()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.slow
def test_custom_tokenizer_code_needs_the_flag_and_strings_are_escaped(tiny, tmp_path):
    """Tokenizer code in the folder runs only with --trust-remote-code (the flag reaches AutoTokenizer).

    The same checkpoint carries hostile strings: a terminal escape in its folder name and
    <script> in id2label; the console prints them inert.
    """
    marker = tmp_path / "MARKER"
    d = tmp_path / "evil\x1b[2J\x1b[31mname"
    shutil.copytree(tiny / "bert-pt", d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["id2label"] = {"0": "<script>alert(1)</script>", "1": "b", "2": "c"}
    cfg["label2id"] = {v: int(k) for k, v in cfg["id2label"].items()}
    (d / "config.json").write_text(json.dumps(cfg))
    tok_cfg = json.loads((d / "tokenizer_config.json").read_text())
    tok_cfg["auto_map"] = {"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]}
    tok_cfg.pop("tokenizer_class", None)
    (d / "tokenizer_config.json").write_text(json.dumps(tok_cfg))
    (d / "tokenizer.json").unlink()  # the slow class from the folder's code, nothing else
    (d / "tokenization_evil.py").write_text(
        _marker_code(marker) + "from transformers import BertTokenizer\n\n\nclass EvilTokenizer(BertTokenizer):\n    pass\n")

    r = _run([d, "--frameworks", "pt,flax"], tmp_path)
    assert r.returncode == 2, r.stderr
    line = _one_error_line(r)
    assert "trust_remote_code is off" in line and "tokenization_evil.EvilTokenizer" in line
    assert "\x1b" not in line and "\\x1b[2J" in line
    assert not marker.exists()

    r = _run([d, "--frameworks", "pt,flax", "--trust-remote-code"], tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert marker.exists()  # the flag was passed through: the folder's tokenizer code ran
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    assert res["inputs"]["tokenizer"] == "EvilTokenizer" and res["config"]["trust_remote_code"] is True
    assert "\x1b" not in r.stdout and "\\x1b[2J\\x1b[31mname" in r.stdout


def test_console_escapes_checkpoint_strings():
    hostile = "x\x1b]0;owned\x07\r\nverdict: PASS\u202e"
    results = {
        "checkpoint": {"path": hostile, "model_type": "bert"}, "task": "base",
        "inputs": {"source": "tokenizer", "shapes": {"input_ids": [1, 2]}, "padded_positions": 0},
        "frameworks": {"pt": {"status": "error", "class_name": hostile, "weights": hostile, "error": hostile,
                              "load": {"missing": [hostile], "notes": [hostile]}}},
        "comparisons": [{"reference": "pt", "candidate": "tf", "passed": False, "first_divergence": hostile,
                         "outputs": [{"name": hostile, "shape": [1], "passed": False, "atol": 1e-5, "rtol": 1e-5,
                                      "error": hostile}]}],
        "passed": False, "exit_code": 3,
    }
    text = console.render(results)
    assert not any(c in text for c in "\x1b\x07\r\u202e")
    assert "\\x1b]0;owned\\x07\\x0d\\x0averdict: PASS\\u202e" in text
    assert sum(line.startswith("verdict:") for line in text.splitlines()) == 1  # no forged verdict line


@pytest.mark.slow
def test_malicious_pickle_is_refused(tiny, tmp_path):
    """pytorch_model.bin (torch.save, zip and legacy formats) whose unpickling would run code: refused by the
    parent's opcode scan (parity.planning.preflight) with one line and exit 2, before any worker starts; never run."""
    import torch
    from safetensors.torch import load_file

    marker = tmp_path / "PWNED"

    class Payload:
        def __reduce__(self):
            return exec, (_marker_code(marker),)

    for zipped in (True, False):
        d = tmp_path / f"bert-evil-bin-{'zip' if zipped else 'legacy'}"
        shutil.copytree(tiny / "bert-pt", d)
        state = load_file(str(d / "model.safetensors"))
        (d / "model.safetensors").unlink()
        torch.save({**state, "payload": Payload()}, str(d / "pytorch_model.bin"),
                   _use_new_zipfile_serialization=zipped)

        (tmp_path / "tmpdir").mkdir(exist_ok=True)
        r = _run([d, "--frameworks", "pt,tf,flax"], tmp_path, env={"TMPDIR": str(tmp_path / "tmpdir")})
        assert r.returncode == 2, r.stdout + r.stderr
        line = _one_error_line(r)
        assert "would run code if unpickled: its pickle names builtins.exec" in line, line
        assert "Note: re-save the weights as safetensors" in line and "--source" in line
        assert not marker.exists()
        assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
        assert not list((tmp_path / "tmpdir").iterdir())  # no worker's folder: none started

    # The file is really hostile: a plain unpickling runs the code.
    subprocess.run([sys.executable, "-c", f"import torch; torch.load({str(d / 'pytorch_model.bin')!r}, "
                                          "weights_only=False)"], capture_output=True, timeout=300)
    assert marker.exists()


SITE_HOOK = '''
import os, socket
_log = os.environ["PARITY_NET_LOG"]
def _record(what):
    with open(_log, "a") as f:
        f.write(f"{os.getpid()} {what}\\n")
_connect = socket.socket.connect
def connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _record(f"connect {address!r}")
    return _connect(self, address)
socket.socket.connect = connect
_getaddrinfo = socket.getaddrinfo
def getaddrinfo(host, *a, **k):
    _record(f"getaddrinfo {host!r}")
    return _getaddrinfo(host, *a, **k)
socket.getaddrinfo = getaddrinfo
'''


def _unshare_works() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "-n", "true"], capture_output=True).returncode == 0


@pytest.mark.slow
def test_local_folder_needs_no_network(tiny, tmp_path):
    """HF_HUB_OFFLINE unset, proxies to a closed port, no network namespace where possible:
    the check passes and no process of the run (parent or workers) tried to connect or resolve a name."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SITE_HOOK)
    log = tmp_path / "net.log"
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env.update(PYTHONPATH=os.pathsep.join([str(hook), str(ROOT), env.get("PYTHONPATH", "")]),
               PARITY_NET_LOG=str(log), HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9",
               HF_HUB_DISABLE_TELEMETRY="0", HOME=str(tmp_path / "home"))
    prefix = ["unshare", "-n"] if _unshare_works() else []
    r = subprocess.run([*prefix, sys.executable, "-m", "parity", "check", str(tiny / "bert-pt"),
                        "--frameworks", "pt,tf,flax", "--report-dir", str(tmp_path / "out")],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not log.exists() or log.read_text() == "", log.read_text()
    # the hook was live in every process: prove it by resolving a name through it
    subprocess.run([sys.executable, "-c", "import socket\ntry: socket.getaddrinfo('localhost', 80)\n"
                    "except OSError: pass"], env=env, timeout=60)
    assert "getaddrinfo 'localhost'" in log.read_text()


@pytest.mark.slow
def test_reports_escape_checkpoint_strings(tiny, tmp_path):
    """A checkpoint with <script> in id2label, its folder name and the input text: a real run, then
    every report format holds the strings as text, never as markup."""
    import xml.etree.ElementTree as ET

    hostile = "<script>alert('x')</script>"
    ckpt = tmp_path / "ckpt<b>&"
    shutil.copytree(tiny / "bert-pt", ckpt)
    config = json.loads((ckpt / "config.json").read_text())
    config["id2label"] = {str(i): f"{hostile}{i}" for i in range(config.get("num_labels", 3))}
    config["label2id"] = {v: int(k) for k, v in config["id2label"].items()}
    (ckpt / "config.json").write_text(json.dumps(config))
    r = subprocess.run([sys.executable, "-m", "parity", "check", str(ckpt), "--frameworks", "pt,flax",
                        "--text", f"{hostile} | `pipe`", "--format", "console,json,md,html,junit",
                        "--report-dir", str(tmp_path / "out")], cwd=tmp_path, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    assert res["checkpoint"]["labels"]["0"] == f"{hostile}0"  # recorded as it is
    html = (tmp_path / "out" / "report.html").read_text()
    md = (tmp_path / "out" / "report.md").read_text()
    junit = (tmp_path / "out" / "junit.xml").read_text()
    for text in (html, md):
        assert "<script>" not in text and "ckpt<b>" not in text
        assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;0" in text or "&lt;script&gt;alert('x')&lt;/script&gt;0" in text
    assert "&lt;script&gt;" in html and "ckpt&lt;b&gt;&amp;" in html
    root = ET.fromstring(junit.encode())  # well-formed XML: the strings are escaped
    props = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert props["labels"].startswith(f"0 {hostile}0") and "<script>" not in junit
