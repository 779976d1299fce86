"""parity.planning.preflight: what the weights files tell before any worker starts (pickles scanned, never unpickled;
config.json against the shapes). The CLI's one line for each refusal is in the corpus (tests/test_corpus.py)."""

from __future__ import annotations

import io
import json
import pickle
import shutil
import struct

import pytest

from parity.planning import preflight
from parity.contracts.errors import UsageError


def _scan(data: bytes) -> set:
    return preflight.pickle_globals(io.BytesIO(data))


def test_stack_global_names_are_read_through_the_memo():
    """'os' and 'system' memoized, popped, fetched back: STACK_GLOBAL still names os.system."""
    data = (b"\x80\x04" + b"\x8c\x02os\x94" + b"\x8c\x06system\x94" + b"00"  # push, MEMOIZE, twice; POP POP
            + b"h\x00h\x01\x93" + b"N\x85R.")                                # BINGET 0, BINGET 1, STACK_GLOBAL
    assert _scan(data) == {"os.system"}


def test_stack_global_of_an_unknown_name_is_refused():
    """A name the scan cannot read (here: the top of the stack is not a string it saw pushed) is refused."""
    data = b"\x80\x04" + b"\x8c\x02os" + b"\x8c\x06system" + b"\x8c\x01x0" + b"\x93N\x85R."  # ..., POP, STACK_GLOBAL
    names = _scan(data)
    assert names == {"<STACK_GLOBAL of a name this scan cannot read>"}
    assert not any(preflight._allowed(n) for n in names)


def test_extension_codes_and_python2_names():
    assert _scan(b"\x80\x02\x82\x01N\x85R.") == {"<extension registry code 1>"}       # EXT1 1
    assert _scan(b"\x80\x02c__builtin__\nset\n)\x85R.") == {"builtins.set"}            # mapped as torch maps it
    assert preflight._allowed("builtins.set") and not preflight._allowed("builtins.exec")


def test_unreadable_pickle_is_refused(tmp_path):
    f = tmp_path / "weights.bin"
    f.write_bytes(pickle.dumps({"w": list(range(100))}, protocol=2)[:-20])
    assert preflight.pickle_globals_refused(f)[0].startswith("<unreadable pickle")


def test_fixture_written_by_torch_save_passes(tiny):
    f = tiny / "bert-pt-bin" / "pytorch_model.bin"
    assert preflight.pickle_globals_refused(f) == []
    cfg = json.loads((tiny / "bert-pt-bin" / "config.json").read_text())
    preflight.check_weights(tiny / "bert-pt-bin", cfg, [f.name])


@pytest.mark.slow
def test_allowlist_is_torchs_and_torch_save_files_pass(tmp_path):
    """The hard-coded allowlist is exactly torch's weights-only one (read from the installed torch here, never
    in parity); what torch.save writes for state dicts passes the scan and torch loads it weights-only."""
    from collections import OrderedDict

    import torch
    from torch._weights_only_unpickler import _get_allowed_globals

    ours = {f"{m}.{n}" for m, names in preflight.ALLOWED_GLOBALS.items() for n in names}
    assert ours == set(_get_allowed_globals()), (ours ^ set(_get_allowed_globals()))
    state = OrderedDict(w=torch.ones(3), h=torch.ones(2, dtype=torch.float16), b=torch.ones(2, dtype=torch.bfloat16),
                        i=torch.arange(4), p=torch.nn.Parameter(torch.zeros(2)))
    obj = {"state": state, "size": torch.Size([2, 3]), "device": torch.device("cpu"), "tags": {"a", "b"},
           "raw": b"\x00\x01", "dtype": torch.float32}
    for zipped in (True, False):
        f = tmp_path / f"w-{zipped}.bin"
        torch.save(obj, str(f), _use_new_zipfile_serialization=zipped)
        assert preflight.pickle_globals_refused(f) == []
        torch.load(str(f), weights_only=True)


def _st(path, tensors: dict) -> None:
    """A safetensors file of zeros with the given {name: shape} (header and bytes by hand)."""
    header, offset = {}, 0
    for name, shape in tensors.items():
        n = 4
        for s in shape:
            n *= s
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(offset))


@pytest.mark.parametrize("config, shape, wrong", [
    ({"vocab_size": 50, "hidden_size": 8}, [50, 8], None),
    ({"vocab_size": 50, "hidden_size": 8}, [51, 8], "vocab_size 50"),
    ({"vocab_size": 50, "hidden_size": 8, "embedding_size": 4}, [50, 4], None),            # ALBERT, ELECTRA
    ({"vocab_size": 50, "hidden_size": 8, "embedding_size": 4}, [50, 8], "embedding_size 4"),
    ({"vocab_size": 50, "hidden_size": 8, "input_embedding_size": 4}, [50, 4], None),      # RemBERT: not compared
    ({"hidden_size": 8}, [77, 8], None),                                                    # no vocab_size: not compared
])
def test_config_against_the_word_embeddings(tmp_path, config, shape, wrong):
    _st(tmp_path / "w.safetensors", {"roberta.embeddings.word_embeddings.weight": shape})
    found = preflight.config_contradiction(config, [tmp_path / "w.safetensors"])
    assert (found is None) if wrong is None else (wrong in found and "word_embeddings" in found), found


def test_config_is_not_compared_with_several_embedding_matrices(tmp_path):
    """An encoder-decoder pair (or any model with two such matrices): which one the config describes is unclear."""
    _st(tmp_path / "w.safetensors", {"encoder.embeddings.word_embeddings.weight": [60, 8],
                                     "decoder.embeddings.word_embeddings.weight": [70, 8]})
    assert preflight.config_contradiction({"vocab_size": 50, "hidden_size": 8}, [tmp_path / "w.safetensors"]) is None


def test_config_against_h5_weights(tiny, tmp_path):
    d = tmp_path / "bert-tf"
    shutil.copytree(tiny / "bert-tf", d)
    cfg = json.loads((d / "config.json").read_text())
    preflight.check_weights(d, cfg, ["tf_model.h5"])
    with pytest.raises(UsageError) as e:
        preflight.check_weights(d, {**cfg, "hidden_size": 64}, ["tf_model.h5"])
    assert "it says hidden_size 64" in e.value.one_line() and "word_embeddings/weight:0" in e.value.one_line()
