"""Bad input: exit 2, one line naming the problem and the fix, no traceback, nothing written."""

import json

import numpy as np
import pytest


def _config(d, **kw):
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps({"model_type": "bert", "vocab_size": 50, **kw}))
    return d


def _weights(d):
    from safetensors.numpy import save_file

    save_file({"w": np.zeros(100, np.float32)}, str(d / "model.safetensors"))
    return d


def case_missing(tmp):
    return [tmp / "nope"], "does not exist"


def case_file_not_folder(tmp):
    (tmp / "f.txt").write_text("x")
    return [tmp / "f.txt"], "not a folder"


def case_empty_folder(tmp):
    (tmp / "empty").mkdir()
    return [tmp / "empty"], "no config.json"


def case_config_not_json(tmp):
    d = tmp / "c"
    d.mkdir()
    (d / "config.json").write_text("{not json")
    return [d], "not valid JSON"


def case_config_empty(tmp):
    d = tmp / "c"
    d.mkdir()
    (d / "config.json").write_text("")
    return [d], "not valid JSON"


def case_config_unknown_model_type(tmp):
    return [_weights(_config(tmp / "c", model_type="not-a-model"))], "does not know"


def case_config_without_model_type(tmp):
    d = tmp / "c"
    d.mkdir()
    (d / "config.json").write_text("{}")
    return [d], "has no model_type"


def case_no_weights(tmp):
    return [_config(tmp / "c")], "no weights file"


def case_unknown_task(tmp):
    return [_weights(_config(tmp / "c")), "--task", "translation"], "unknown task"


def case_task_without_class(tmp):
    return [_weights(_config(tmp / "c")), "--task", "image-classification"], "no image-classification class"


def case_truncated_weights(tmp):
    d = _weights(_config(tmp / "c"))
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[:-40])
    return [d], "truncated"


def case_zero_byte_weights(tmp):
    d = _config(tmp / "c")
    (d / "model.safetensors").write_bytes(b"")
    return [d], "empty"


def case_wrong_format_weights(tmp):
    d = _config(tmp / "c")
    (d / "tf_model.h5").write_text("this is not HDF5")
    return [d], "not an HDF5 file"


def case_unknown_framework(tmp):
    return [_weights(_config(tmp / "c")), "--frameworks", "pt,mxnet"], "unknown framework 'mxnet'"


def case_one_framework(tmp):
    return [_weights(_config(tmp / "c")), "--frameworks", "pt"], "at least two frameworks"


def case_reference_not_run(tmp):
    return [_weights(_config(tmp / "c")), "--frameworks", "pt,tf", "--reference", "flax"], "reference 'flax'"


def case_negative_atol(tmp):
    return [_weights(_config(tmp / "c")), "--atol", "-1"], "--atol must be a finite non-negative"


def case_nan_rtol(tmp):
    return [_weights(_config(tmp / "c")), "--rtol", "nan"], "--rtol must be a finite non-negative"


def case_text_atol(tmp):
    return [_weights(_config(tmp / "c")), "--atol", "small"], "--atol must be a number"


def case_texts_file_missing(tmp):
    return [_weights(_config(tmp / "c")), "--texts-file", tmp / "none.txt"], "does not exist"


def case_texts_file_empty(tmp):
    (tmp / "t.txt").write_text("\n  \n")
    return [_weights(_config(tmp / "c")), "--texts-file", tmp / "t.txt"], "has no text"


def case_texts_file_not_utf8(tmp):
    (tmp / "t.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    return [_weights(_config(tmp / "c")), "--texts-file", tmp / "t.txt"], "not UTF-8"


def case_report_dir_unwritable(tmp):
    (tmp / "blocker").write_text("a file, not a folder")
    return [_weights(_config(tmp / "c")), "--report-dir", tmp / "blocker" / "sub"], "cannot be written"


def case_bad_batch_size(tmp):
    return [_weights(_config(tmp / "c")), "--batch-size", "0"], "--batch-size must be >= 1"


def case_unknown_output_group(tmp):
    return [_weights(_config(tmp / "c")), "--outputs", "logits,gradients"], "unknown output group"


def case_unknown_option(tmp):
    return [_weights(_config(tmp / "c")), "--tolerance", "1"], "unrecognized arguments"


CASES = {name[5:]: fn for name, fn in dict(globals()).items() if name.startswith("case_")}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_gives_one_line_and_exit_2(cli, tmp_path, name):
    args, expected = CASES[name](tmp_path)
    report_dir = tmp_path / "out"
    if "--report-dir" not in args:
        args = args + ["--report-dir", report_dir]
    r = cli("check", *args)
    assert r.code == 2, (r.out, r.err)
    lines = r.err.strip().splitlines()
    assert len(lines) == 1, r.err
    assert lines[0].startswith("parity: error: ") and "Note: " in lines[0], lines[0]
    assert expected in lines[0]
    assert "Traceback" not in r.err + r.out
    assert not report_dir.exists() or not any(report_dir.iterdir())  # nothing half-written


def test_debug_shows_the_traceback(cli, tmp_path):
    r = cli("--debug", "check", tmp_path / "nope", report=False)
    assert r.code != 0 and "Traceback" in r.err


def test_no_command_prints_help(cli):
    r = cli(report=False)
    assert r.code == 2 and "check" in r.out
