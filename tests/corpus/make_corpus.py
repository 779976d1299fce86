"""Generate the bad-input corpus: ``python tests/corpus/make_corpus.py OUTDIR [TINY_FIXTURES]``.

Every case is built from code here (no binary is committed) into its own
folder under OUTDIR, and OUTDIR/manifest.json lists, per case, the
``parity check`` arguments, the exit code and a phrase the one-line error must
contain. Cases marked ``tiny`` copy a real tiny checkpoint from the fixtures
folder (tests' ``tiny`` fixture) and are skipped without one. results.json
cases (``kind: results``) are files for ``Results.load`` (and, once it exists,
``parity report``). tests/test_corpus.py runs them all; the pytest plugin's
tests can read the same manifest.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import struct
import sys
import zipfile
from pathlib import Path

CASES = {}


def case(exit_code=2, expect="", kind="check", tiny=False):
    def register(fn):
        CASES[fn.__name__] = {"fn": fn, "exit": exit_code, "expect": expect, "kind": kind, "tiny": tiny}
        return fn
    return register


def _config(d: Path, **kw) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps({"model_type": "bert", "vocab_size": 50, **kw}))
    return d


def _safetensors(n_floats: int = 100, name: str = "w", shape: list | None = None) -> bytes:
    """A valid safetensors file holding one float32 tensor of zeros (written by hand: no framework needed)."""
    header = json.dumps({name: {"dtype": "F32", "shape": shape or [n_floats],
                                "data_offsets": [0, 4 * n_floats]}}).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + bytes(4 * n_floats)


def _ckpt(d: Path, **kw) -> Path:
    _config(d, **kw)
    (d / "model.safetensors").write_bytes(_safetensors())
    return d


def _copy_tiny(tiny: Path, d: Path, name: str = "bert-pt") -> Path:
    shutil.copytree(tiny / name, d)
    return d


# --- the checkpoint path -------------------------------------------------------------------------------------

@case(expect="does not exist")
def missing_path(d, tiny):
    return [d / "nope"]


@case(expect="not a folder")
def file_not_folder(d, tiny):
    d.mkdir()
    (d / "f.txt").write_text("x")
    return [d / "f.txt"]


@case(expect="no config.json")
def empty_folder(d, tiny):
    d.mkdir()
    return [d]


# --- config.json ---------------------------------------------------------------------------------------------

@case(expect="not valid JSON")
def config_not_json(d, tiny):
    d.mkdir()
    (d / "config.json").write_text("{not json")
    return [d]


@case(expect="not valid JSON")
def config_empty(d, tiny):
    d.mkdir()
    (d / "config.json").write_text("")
    return [d]


@case(expect="not valid JSON")
def config_not_utf8(d, tiny):
    d.mkdir()
    (d / "config.json").write_bytes('{"model_type": "caf\xe9"}'.encode("latin-1"))
    return [d]


@case(expect="has no model_type")
def config_without_model_type(d, tiny):
    d.mkdir()
    (d / "config.json").write_text("{}")
    return [d]


@case(expect="has no model_type")
def config_is_a_list(d, tiny):
    d.mkdir()
    (d / "config.json").write_text('["bert"]')
    return [d]


@case(expect="does not know")
def config_unknown_model_type(d, tiny):
    return [_ckpt(d, model_type="not-a-model")]


@case(expect="trust_remote_code is off")
def config_needs_custom_code(d, tiny):
    _ckpt(d, model_type="evil", auto_map={"AutoConfig": "configuration_evil.EvilConfig",
                                          "AutoModel": "modeling_evil.EvilModel"})
    return [d]


@case(expect="longer than the model's 16 positions")
def max_length_beyond_positions(d, tiny):
    return [_ckpt(d, max_position_embeddings=16), "--max-length", "64"]


# --- weights -------------------------------------------------------------------------------------------------

@case(expect="no weights file")
def no_weights(d, tiny):
    return [_config(d)]


@case(expect="truncated")
def safetensors_truncated(d, tiny):
    _config(d)
    (d / "model.safetensors").write_bytes(_safetensors()[:-40])
    return [d]


@case(expect="empty")
def safetensors_zero_bytes(d, tiny):
    _config(d)
    (d / "model.safetensors").write_bytes(b"")
    return [d]


@case(expect="not a safetensors file")
def safetensors_holding_hdf5(d, tiny):
    _config(d)
    (d / "model.safetensors").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(1024))
    return [d]


@case(expect="not an HDF5 file")
def h5_holding_text(d, tiny):
    _config(d)
    (d / "tf_model.h5").write_text("this is not HDF5")
    return [d]


@case(expect="not an HDF5 file")
def h5_holding_safetensors(d, tiny):
    _config(d)
    (d / "tf_model.h5").write_bytes(_safetensors())
    return [d]


@case(expect="not a msgpack file")
def msgpack_holding_json(d, tiny):
    _config(d)
    (d / "flax_model.msgpack").write_text('{"params": {}}')
    return [d]


@case(expect="truncated or corrupt")
def msgpack_truncated(d, tiny):
    _config(d)
    # fixmap{"w": bin8 of 200 bytes}, cut short
    (d / "flax_model.msgpack").write_bytes(b"\x81\xa1w\xc4\xc8" + bytes(50))
    return [d]


@case(expect="neither zip nor pickle")
def bin_holding_text(d, tiny):
    _config(d)
    (d / "pytorch_model.bin").write_text("not a torch file")
    return [d]


@case(expect="truncated or corrupt")
def bin_zip_truncated(d, tiny):
    _config(d)
    with zipfile.ZipFile(d / "pytorch_model.bin", "w") as z:
        z.writestr("archive/data.pkl", bytes(4096))
        z.writestr("archive/data/0", bytes(4096))
    data = (d / "pytorch_model.bin").read_bytes()
    (d / "pytorch_model.bin").write_bytes(data[: len(data) // 2])
    return [d]


@case(expect="not a valid shard index")
def shard_index_not_an_index(d, tiny):
    _config(d)
    (d / "model.safetensors.index.json").write_text("{}")
    return [d]


@case(expect="file is missing")
def shard_missing(d, tiny):
    _config(d)
    (d / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"w": "model-00001-of-00002.safetensors"}}))
    return [d]


@case(expect="has no tf weights")
def source_without_weights(d, tiny):
    return [_ckpt(d), "--source", "tf"]


@case(expect="names 1 of 2 shard(s) that are not in the folder")
def shard_index_names_a_missing_shard(d, tiny):
    _config(d)
    (d / "model-00001-of-00002.safetensors").write_bytes(_safetensors())
    (d / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
        "w": "model-00001-of-00002.safetensors", "v": "model-00002-of-00002.safetensors"}}))
    return [d]


@case(expect="not a valid shard index")
def shard_index_maps_nothing(d, tiny):
    _config(d)
    (d / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {}}))
    return [d]


@case(expect="has no dtype, shape and data_offsets")
def safetensors_header_without_offsets(d, tiny):
    _config(d)
    header = json.dumps({"w": {"dtype": "F32", "shape": [4]}}).encode()
    (d / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + bytes(16))
    return [d]


@case(expect="not a safetensors file (header is not a JSON object)")
def safetensors_header_is_a_list(d, tiny):
    _config(d)
    (d / "model.safetensors").write_bytes(struct.pack("<Q", 8) + b"[1, 2]  " + bytes(16))
    return [d]


@case(expect="it says vocab_size 50, but bert.embeddings.word_embeddings.weight")
def config_vocab_size_contradicts_weights(d, tiny):
    _config(d, hidden_size=8)
    (d / "model.safetensors").write_bytes(_safetensors(60 * 8, "bert.embeddings.word_embeddings.weight", [60, 8]))
    return [d]


@case(expect="it says hidden_size 8, but bert.embeddings.word_embeddings.weight")
def config_hidden_size_contradicts_weights(d, tiny):
    _config(d, hidden_size=8)
    (d / "model.safetensors").write_bytes(_safetensors(50 * 16, "bert.embeddings.word_embeddings.weight", [50, 16]))
    return [d]


class _RunsCode:
    """Unpickling this calls os.system; pickle.dumps only records a reference to it, nothing runs here."""

    def __reduce__(self):
        return os.system, ("echo the corpus pickle ran code",)


class _Execs:
    def __reduce__(self):
        return exec, ("print('the corpus pickle ran code')",)


def _torch_zip(d: Path, data_pkl: bytes) -> None:
    """A file laid out as torch.save's zip format writes it (data.pkl beside the storages)."""
    with zipfile.ZipFile(d / "pytorch_model.bin", "w") as z:
        z.writestr("archive/data.pkl", data_pkl)
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/data/0", bytes(16))
        z.writestr("archive/version", "3\n")


@case(expect="system, which torch's weights-only loader does not allow")
def bin_pickle_runs_code(d, tiny):
    """The weights' pickle calls os.system: refused by a scan of its opcodes, never unpickled."""
    _config(d)
    _torch_zip(d, pickle.dumps({"w": _RunsCode()}, protocol=2))
    return [d]


@case(expect="names builtins.exec, which torch's weights-only loader does not allow")
def bin_legacy_pickle_runs_code(d, tiny):
    """The legacy (non-zip) format: pickles in a row; a Python 2 name (__builtin__.exec) mapped as torch does."""
    _config(d)
    (d / "pytorch_model.bin").write_bytes(pickle.dumps(119547037146038801333356, protocol=2)
                                          + pickle.dumps({"w": _Execs()}, protocol=2))
    return [d]


@case(expect="system, which torch's weights-only loader does not allow")
def bin_pickle_stack_global_memo(d, tiny):
    """Protocol 4: the names come as strings on the stack (STACK_GLOBAL), the second use from the memo."""
    _config(d)
    _torch_zip(d, pickle.dumps([_RunsCode(), _RunsCode()], protocol=4))
    return [d]


@case(expect="a zip without data.pkl")
def bin_zip_without_pickle(d, tiny):
    _config(d)
    with zipfile.ZipFile(d / "pytorch_model.bin", "w") as z:
        z.writestr("archive/data/0", bytes(16))
    return [d]


# --- the tokenizer and the texts -------------------------------------------------------------------------------

@case(expect="tokenizer", tiny=True)
def tokenizer_fails_to_load(d, tiny):
    """Found only after the workers started (they load while the batch is built): they must be stopped."""
    _copy_tiny(tiny, d)
    (d / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "NoSuchModel"}')
    return [d, "--frameworks", "pt,flax"]


@case(expect="has no tokenizer")
def text_without_tokenizer(d, tiny):
    return [_ckpt(d), "--text", "hello"]


@case(expect="does not exist")
def texts_file_missing(d, tiny):
    return [_ckpt(d), "--texts-file", d / "none.txt"]


@case(expect="has no text")
def texts_file_empty(d, tiny):
    _ckpt(d)
    (d / "t.txt").write_text("\n  \n")
    return [d, "--texts-file", d / "t.txt"]


@case(expect="not UTF-8")
def texts_file_not_utf8(d, tiny):
    _ckpt(d)
    (d / "t.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    return [d, "--texts-file", d / "t.txt"]


# --- options -------------------------------------------------------------------------------------------------

@case(expect="unknown task")
def unknown_task(d, tiny):
    return [_ckpt(d), "--task", "translation"]


@case(expect="no image-classification class")
def task_without_class(d, tiny):
    return [_ckpt(d), "--task", "image-classification"]


@case(expect="unknown framework 'mxnet'")
def unknown_framework(d, tiny):
    return [_ckpt(d), "--frameworks", "pt,mxnet"]


@case(expect="at least two frameworks")
def one_framework(d, tiny):
    return [_ckpt(d), "--frameworks", "pt"]


@case(expect="reference 'flax'")
def reference_not_run(d, tiny):
    return [_ckpt(d), "--frameworks", "pt,tf", "--reference", "flax"]


@case(expect="--atol must be a finite non-negative")
def atol_negative(d, tiny):
    return [_ckpt(d), "--atol", "-1"]


@case(expect="--rtol must be a finite non-negative")
def rtol_nan(d, tiny):
    return [_ckpt(d), "--rtol", "nan"]


@case(expect="--atol must be a finite non-negative")
def atol_inf(d, tiny):
    return [_ckpt(d), "--atol", "inf"]


@case(expect="--atol must be a number")
def atol_not_numeric(d, tiny):
    return [_ckpt(d), "--atol", "small"]


@case(expect="--batch-size must be >= 1")
def batch_size_zero(d, tiny):
    return [_ckpt(d), "--batch-size", "0"]


@case(expect="--max-length must be an integer")
def max_length_not_integer(d, tiny):
    return [_ckpt(d), "--max-length", "long"]


@case(expect="--seed must be >= 0")
def seed_negative(d, tiny):
    return [_ckpt(d), "--seed", "-1"]


@case(expect="unknown output group")
def unknown_output_group(d, tiny):
    return [_ckpt(d), "--outputs", "logits,gradients"]


@case(expect="--timeout must be a positive number")
def timeout_negative(d, tiny):
    return [_ckpt(d), "--timeout", "-5"]


@case(expect="--timeout must be a number")
def timeout_not_numeric(d, tiny):
    return [_ckpt(d), "--timeout", "soon"]


@case(expect="--timeout needs worker processes")
def timeout_inline(d, tiny):
    return [_ckpt(d), "--timeout", "5", "--inline"]


@case(expect="unrecognized arguments")
def unknown_option(d, tiny):
    return [_ckpt(d), "--tolerance", "1"]


@case(expect="invalid choice")
def unknown_device(d, tiny):
    return [_ckpt(d), "--device", "tpu"]


@case(expect="cannot be written")
def report_dir_under_a_file(d, tiny):
    _ckpt(d / "c")
    (d / "blocker").write_text("a file, not a folder")
    return [d / "c", "--report-dir", d / "blocker" / "sub"]


# --- declared checks (parity.toml / [tool.parity], read by the pytest plugin) ---------------------------------
# Each returns [folder holding the file]; the plugin must report one collection error, never collect nothing.

def _declare(d: Path, text: str, name: str = "parity.toml") -> list:
    _ckpt(d / "ckpt")
    (d / name).write_text(text)
    return [d]


@case(kind="declaration", expect="unknown table [[check]] in parity.toml")
def declared_table_misspelt(d, tiny):
    return _declare(d, '[[check]]\ncheckpoint = "ckpt"\n')


@case(kind="declaration", expect="unknown key 'chekpoint' in parity.toml")
def declared_key_misspelt(d, tiny):
    """A misspelt top-level key and no [[checks]]: it used to be a default no check read (zero items)."""
    return _declare(d, 'chekpoint = "ckpt"\n')


@case(kind="declaration", expect="declares no checks")
def declared_nothing(d, tiny):
    return _declare(d, "")


@case(kind="declaration", expect="unknown table [[tool.parity.check]] in [tool.parity]")
def pyproject_table_misspelt(d, tiny):
    return _declare(d, '[tool.parity]\natol = 1e-4\n\n[[tool.parity.check]]\ncheckpoint = "ckpt"\n',
                    "pyproject.toml")


@case(kind="declaration", expect="declares no checks, so nothing would be tested. Note: add one [[tool.parity.checks]]")
def pyproject_declares_nothing(d, tiny):
    return _declare(d, "[tool.parity]\natol = 1e-4\n", "pyproject.toml")


# --- results.json (read by Results.load; `parity report` once it exists) -------------------------------------

@case(kind="results", expect="not valid JSON")
def results_corrupt(d, tiny):
    d.mkdir()
    (d / "results.json").write_text('{"schema_version": 1, "passed": tr')
    return [d / "results.json"]


@case(kind="results", expect="newer than this parity understands")
def results_future_schema(d, tiny):
    d.mkdir()
    (d / "results.json").write_text(json.dumps({"schema_version": 99, "passed": True}))
    return [d / "results.json"]


@case(kind="results", expect="no schema_version")
def results_not_parity(d, tiny):
    d.mkdir()
    (d / "results.json").write_text(json.dumps([1, 2, 3]))
    return [d / "results.json"]


@case(kind="results", expect="is not valid")
def results_schema_zero(d, tiny):
    d.mkdir()
    (d / "results.json").write_text(json.dumps({"schema_version": "1"}))
    return [d / "results.json"]


@case(kind="results", expect="does not exist")
def results_missing(d, tiny):
    d.mkdir()
    return [d / "results.json"]


def generate(out: Path, tiny: Path | None = None) -> dict:
    """Build every case under ``out``; return (and write) the manifest."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = {}
    for name, c in CASES.items():
        if c["tiny"] and tiny is None:
            continue
        d = out / name
        if d.exists():
            shutil.rmtree(d)
        args = [str(a) for a in c["fn"](d, tiny)]
        manifest[name] = {"args": args, "exit": c["exit"], "expect": c["expect"], "kind": c["kind"],
                          "doc": (c["fn"].__doc__ or "").strip()}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    m = generate(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) == 3 else None)
    print(f"{len(m)} cases in {sys.argv[1]}")
