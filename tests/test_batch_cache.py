"""Tokenized batches are cached (parity.planning.batch_cache): a re-check reads the same arrays back without
importing transformers; a changed tokenizer file, other texts or a damaged entry tokenize again."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from parity.planning import batch_cache, batch as inputs
from parity.planning.checkpoint import Checkpoint
from parity.contracts.worker_imports import scipy_unused
from parity.contracts.protocol import LoadSpec


def _build(folder, **kwargs):
    ckpt = Checkpoint.open(str(folder))
    return inputs.build(ckpt.path, ckpt.config, files=ckpt.fingerprint()["files"], **kwargs)


def test_second_build_reads_the_same_arrays_back(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("PARITY_CACHE_DIR", str(tmp_path / "cache"))
    first, second = _build(tiny / "bert-pt"), _build(tiny / "bert-pt")
    assert (first.cache, second.cache) == ("stored", "hit")
    assert list(first.arrays) == list(second.arrays) == ["input_ids", "token_type_ids", "attention_mask"]
    for name in first.arrays:
        assert first.arrays[name].dtype == second.arrays[name].dtype
        np.testing.assert_array_equal(first.arrays[name], second.arrays[name])
    assert second.tokenizer == first.tokenizer == "BertTokenizerFast"
    assert second.describe()["cache"] == "hit" and second.describe()["padded_positions"] > 0

    # Other texts or another max length are other batches.
    assert _build(tiny / "bert-pt", texts=["one text"]).cache == "stored"
    assert _build(tiny / "bert-pt", max_length=16).cache == "stored"
    assert _build(tiny / "bert-pt", max_length=16).arrays["input_ids"].shape[1] <= 16


def test_a_changed_tokenizer_file_tokenizes_again(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("PARITY_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "ckpt"
    shutil.copytree(tiny / "bert-pt", folder)
    before = _build(folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["do_lower_case"] = not config.get("do_lower_case", True)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    after = _build(folder)
    assert (before.cache, after.cache) == ("stored", "stored")
    # The weights are not part of the key: other weights, same tokenizer files, same batch.
    (folder / "model.safetensors").write_bytes(b"other weights")
    assert _build(folder).cache == "hit"


def test_damaged_entry_is_rebuilt_and_remote_code_is_never_cached(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("PARITY_CACHE_DIR", str(tmp_path / "cache"))
    first = _build(tiny / "bert-pt")
    (entry,) = (tmp_path / "cache" / "batches").glob("*.npz")
    entry.write_bytes(entry.read_bytes()[:100])
    again = _build(tiny / "bert-pt")
    assert again.cache == "stored"
    np.testing.assert_array_equal(again.arrays["input_ids"], first.arrays["input_ids"])
    assert _build(tiny / "bert-pt", trust_remote_code=True).cache is None

    monkeypatch.setenv("PARITY_CACHE_DIR", "off")
    off = _build(tiny / "bert-pt")
    assert off.cache is None
    np.testing.assert_array_equal(off.arrays["input_ids"], first.arrays["input_ids"])


def test_old_entries_are_pruned(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("PARITY_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(batch_cache, "KEEP", 2)
    for n in range(4):
        _build(tiny / "bert-pt", texts=[f"text number {n}"])
    assert len(list((tmp_path / "cache" / "batches").glob("*.npz"))) == 2


def test_a_hit_does_not_import_transformers(tiny, tmp_path):
    code = ("import sys; from tests.test_batch_cache import _build; "
            f"b = _build({str(tiny / 'bert-pt')!r}); print(b.cache, 'transformers' in sys.modules)")
    env = {"PARITY_CACHE_DIR": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    outs = [subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True,
                           timeout=300) for _ in range(2)]
    assert [o.stdout.split() for o in outs] == [["stored", "True"], ["hit", "False"]], [o.stderr[-500:] for o in outs]


@pytest.mark.parametrize("config, needed, remote, unused", [
    ({"model_type": "bert"}, {"pt"}, False, True),
    ({"model_type": "bert"}, {"tf"}, False, True),
    ({"model_type": "bert"}, {"flax"}, False, False),          # jax imports scipy
    ({"model_type": "bert"}, {"tf", "pt"}, True, False),        # remote code may use it
    ({"model_type": "fnet"}, {"pt"}, False, False),             # FNet's TPU Fourier matrices
    ({"model_type": "encoder-decoder", "encoder": {"model_type": "fnet"},
      "decoder": {"model_type": "bert"}}, {"pt"}, False, False),
    ({"model_type": "xlm-roberta"}, {"pt"}, False, True),       # hyphen -> models/xlm_roberta
    ({"model_type": "no-such-model"}, {"pt"}, False, False),    # unknown: keep it
])
def test_scipy_is_blocked_only_where_nothing_uses_it(tmp_path, config, needed, remote, unused):
    (tmp_path / "config.json").write_text(json.dumps(config))
    spec = LoadSpec(path=str(tmp_path), task="base", class_name="X", weights="model.safetensors",
                    trust_remote_code=remote)
    assert scipy_unused(needed, spec) is unused
