"""Preflight: what the weights files alone can tell, checked in the parent before any worker starts.

Bad input must cost one line and exit 2, not three framework imports: a
truncated or mislabelled file, a shard index naming shards that are not there,
a pickle that would run code, a config.json whose sizes contradict the
weights. Everything here reads bytes and JSON only; no framework is imported
and no pickle is ever unpickled (``pickletools.genops`` walks the opcodes).
"""

from __future__ import annotations

import io
import json
import pickletools
import re
import struct
import zipfile
from pathlib import Path

from parity.contracts.errors import UsageError

REREAD_NOTE = "re-save the checkpoint with save_pretrained(), or pass --source to load another framework's weights"
PICKLE_NOTE = ("re-save the weights as safetensors (save_pretrained(..., safe_serialization=True)) from a source "
               "you trust, or pass --source with another framework's weights")

# The globals torch's weights-only unpickler resolves by default, read from
# torch/_weights_only_unpickler.py (_get_allowed_globals, _tensor_rebuild_functions) of torch 2.13.0:
# module -> names. Anything else in a pickle (os.system, builtins.exec, ...) is refused here, unread.
_TYPES = ("BFloat16", "Bool", "Byte", "Char", "Double", "Float", "Half", "Int", "Long", "Short")
_DTYPES = ("bfloat16 bits16 bits1x8 bits2x4 bits4x2 bits8 bool complex128 complex32 complex64 float16 float32 "
           "float4_e2m1fn_x2 float64 float8_e4m3fn float8_e4m3fnuz float8_e5m2 float8_e5m2fnuz float8_e8m0fnu "
           "qint32 qint8 quint2x4 quint4x2 quint8 " + " ".join(f"int{n} uint{n}" for n in (1, 2, 3, 4, 5, 6, 7, 8,
                                                                                           16, 32, 64)))
ALLOWED_GLOBALS: dict[str, frozenset] = {k: frozenset(v.split()) for k, v in {
    "collections": "OrderedDict Counter",
    "builtins": "bytearray set complex",
    "_codecs": "encode",
    "torch": (f"Size Tensor device {_DTYPES} per_tensor_affine per_tensor_symmetric per_channel_affine "
              "per_channel_symmetric per_channel_affine_float_qparams ComplexDoubleStorage ComplexFloatStorage "
              "QInt32Storage QInt8Storage QUInt2x4Storage QUInt4x2Storage QUInt8Storage "
              + " ".join(f"{t}Storage {t}Tensor" for t in _TYPES)),
    "torch.cuda": ("ComplexDoubleStorage ComplexFloatStorage "
                   + " ".join(f"{t}Storage {t}Tensor" for t in _TYPES)),
    "torch.sparse": " ".join(f"{t}Tensor" for t in _TYPES if t != "Bool"),
    "torch.cuda.sparse": " ".join(f"{t}Tensor" for t in _TYPES if t != "Bool"),
    "torch.storage": "TypedStorage UntypedStorage",
    "torch.nn.parameter": "Parameter",
    "torch.serialization": "_get_layout",
    "torch._tensor": "_rebuild_from_type_v2",
    "torch._utils": ("_rebuild_parameter _rebuild_parameter_with_state _rebuild_qtensor _rebuild_tensor "
                     "_rebuild_tensor_v2 _rebuild_tensor_v3 _rebuild_sparse_tensor _rebuild_meta_tensor_no_storage "
                     "_rebuild_nested_tensor _rebuild_wrapper_subclass _rebuild_device_tensor_from_numpy "
                     "_rebuild_device_tensor_from_cpu_tensor"),
}.items()}
# Python 2 names a protocol-2 pickle writes (torch.save's default), as torch maps them back (torch._utils).
_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}
_STRING_OPS = {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "SHORT_BINUNICODE", "BINUNICODE",
               "BINUNICODE8"}
_MEMO_PUT = {"PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"}
_MEMO_GET = {"GET", "BINGET", "LONG_BINGET"}
_QUIET = {"PROTO", "FRAME", "STOP"}  # push nothing


def check_weights(folder: Path, config: dict, names) -> None:
    """Raise UsageError for the first weights file among ``names`` (relative to ``folder``) that is unsound."""
    for name in sorted(set(names)):
        files = shard_files(Path(folder), name)
        for f in files:
            problem = file_problem(f)
            if problem:
                raise UsageError(f"weights file {f} is unreadable: {problem}", REREAD_NOTE)
            if f.suffix == ".bin":
                refused = pickle_globals_refused(f)
                if refused:
                    raise UsageError(f"weights file {f} would run code if unpickled: its pickle names "
                                     f"{', '.join(refused)}, which torch's weights-only loader does not allow "
                                     "(nothing was unpickled)", PICKLE_NOTE)
        contradiction = config_contradiction(config, files)
        if contradiction:
            raise UsageError(f"config.json contradicts the weights in {folder}: {contradiction}",
                             "pass the config.json saved with these weights (save_pretrained() writes both)")


def shard_files(folder: Path, name: str) -> list[Path]:
    """The files one weights name stands for: itself, or every shard its ``.index.json`` maps to (all present)."""
    if not name.endswith(".index.json"):
        return [folder / name]
    index = folder / name
    try:
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        if not shards or not all(isinstance(s, str) and s for s in shards):
            raise ValueError
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise UsageError(f"weights index {index} is not a valid shard index",
                         "re-save the checkpoint with save_pretrained()") from None
    missing = [s for s in shards if not (folder / s).is_file()]
    if missing:
        raise UsageError(f"weights index {index} names {len(missing)} of {len(shards)} shard(s) that are not in "
                         f"the folder (file is missing: {', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})",
                         "copy every shard next to the index (or re-save the checkpoint with save_pretrained())")
    return [folder / s for s in shards]


def file_problem(f: Path) -> str | None:
    """Why a weights file cannot be read (from its header and size), or None when it looks sound."""
    if not f.is_file():
        return "file is missing"
    size = f.stat().st_size
    if size == 0:
        return "file is empty"
    reader = {".safetensors": _safetensors_problem, ".h5": _h5_problem, ".msgpack": _msgpack_problem,
              ".bin": _torch_problem}.get(f.suffix)
    return reader(f, size) if reader else None


def _head(f: Path, n: int) -> bytes:
    with open(f, "rb") as fh:
        return fh.read(n)


def safetensors_header(f: Path) -> tuple[int, dict]:
    """(header length, JSON header) of a safetensors file; ValueError saying why when there is none."""
    with open(f, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise ValueError("file is truncated")
        (n,) = struct.unpack("<Q", head)
        if n > f.stat().st_size - 8 or n > 100_000_000:
            raise ValueError("not a safetensors file (bad header length)")
        try:
            header = json.loads(fh.read(n))
        except ValueError:
            raise ValueError("not a safetensors file (header is not JSON)") from None
    if not isinstance(header, dict):
        raise ValueError("not a safetensors file (header is not a JSON object)")
    return n, header


def _safetensors_problem(f: Path, size: int) -> str | None:
    try:
        n, header = safetensors_header(f)
    except ValueError as e:
        return str(e)
    ends = []
    for key, v in header.items():
        if key == "__metadata__":
            continue
        offsets = v.get("data_offsets") if isinstance(v, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)
                and isinstance(v.get("shape"), list) and isinstance(v.get("dtype"), str)):
            return f"not a safetensors file (tensor {key!r} has no dtype, shape and data_offsets)"
        ends.append(offsets[1])
    if ends and 8 + n + max(ends) > size:
        return f"file is truncated ({size} bytes, header describes {8 + n + max(ends)})"
    return None


def _h5_problem(f: Path, size: int) -> str | None:
    if _head(f, 8) != b"\x89HDF\r\n\x1a\n":
        return "not an HDF5 file"
    try:
        import h5py
    except ImportError:
        return None
    try:
        with h5py.File(f, "r"):
            pass
    except OSError as e:
        return str(e).splitlines()[0]
    return None


def _msgpack_problem(f: Path, size: int) -> str | None:
    with open(f, "rb") as fh:
        head = fh.read(1)
        if not (0x80 <= head[0] <= 0x8F or head[0] in (0xDE, 0xDF)):
            return "not a msgpack file"
        try:
            import msgpack
        except ImportError:
            return None
        fh.seek(0)
        unpacker = msgpack.Unpacker(fh, raw=False, max_buffer_size=0)
        try:
            unpacker.skip()
        except (msgpack.OutOfData, ValueError) as e:
            return f"file is truncated or corrupt ({type(e).__name__})"
    return None


def _torch_problem(f: Path, size: int) -> str | None:
    head = _head(f, 4)
    if head == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(f) as z:
                bad = z.testzip()
                has_pickle = any(n.endswith("data.pkl") for n in z.namelist())
        except zipfile.BadZipFile as e:
            return f"file is truncated or corrupt ({e})"
        if bad:
            return f"corrupt member {bad}"
        return None if has_pickle else "not a PyTorch checkpoint (a zip without data.pkl)"
    if head[:1] == b"\x80":
        return None  # legacy format: a sequence of pickles, scanned by pickle_globals_refused
    return "not a PyTorch checkpoint (neither zip nor pickle)"


# --- pickles: every global named, none unpickled --------------------------------------------------------------

def pickle_globals_refused(f: Path) -> list[str]:
    """The globals a PyTorch pickle file names that torch's weights-only loader would refuse, sorted.

    The zip format holds one ``data.pkl``; the legacy format is up to five
    pickles in a row (magic number, protocol, system info, the object, storage
    keys) followed by raw storage bytes. A pickle that cannot be walked to its
    STOP is reported as a refused ``<unreadable pickle: ...>``.
    """
    named: set[str] = set()
    try:
        if _head(f, 4) == b"PK\x03\x04":
            with zipfile.ZipFile(f) as z:
                for member in z.namelist():
                    if member.endswith(".pkl"):
                        named |= pickle_globals(io.BytesIO(z.read(member)))
        else:
            with open(f, "rb") as fh:
                for _ in range(5):
                    if fh.read(1) != b"\x80":
                        break
                    fh.seek(-1, io.SEEK_CUR)
                    named |= pickle_globals(fh)
    except (ValueError, EOFError, zipfile.BadZipFile, UnicodeDecodeError, struct.error) as e:
        return [f"<unreadable pickle: {str(e).splitlines()[0] if str(e) else type(e).__name__}>"]
    return sorted(g for g in named if not _allowed(g))


def _allowed(name: str) -> bool:
    module, _, attr = name.rpartition(".")
    return attr in ALLOWED_GLOBALS.get(module, ())


def pickle_globals(fh) -> set[str]:
    """Every ``module.name`` one pickle (read from ``fh`` up to its STOP) imports, without unpickling it.

    GLOBAL and INST carry the names; STACK_GLOBAL takes the two strings on top
    of the stack, which are tracked through the memo (PUT / MEMOIZE, GET).
    Anything that makes a STACK_GLOBAL's names unknowable here (a string built
    by a call, stack tricks), or an EXT opcode (a registry lookup), is reported
    as a name no allowlist holds.
    """
    found: set[str] = set()
    recent: list = []           # the values pushed, in order: a str where the scan knows it, else None
    memo: dict = {}
    for op, arg, _ in pickletools.genops(fh):
        name = op.name
        if name in ("GLOBAL", "INST"):
            module, attr = arg.split(" ", 1)
            found.add(f"{_PY2_MODULES.get(module, module)}.{attr}")
            recent.append(None)
        elif name == "STACK_GLOBAL":
            module, attr = (recent[-2], recent[-1]) if len(recent) >= 2 else (None, None)
            if isinstance(module, str) and isinstance(attr, str):
                found.add(f"{module}.{attr}")
            else:
                found.add("<STACK_GLOBAL of a name this scan cannot read>")
            recent[-2:] = [None]
        elif name.startswith("EXT"):
            found.add(f"<extension registry code {arg}>")
            recent.append(None)
        elif name in _STRING_OPS:
            recent.append(arg if isinstance(arg, str) else None)
        elif name in _MEMO_PUT:
            memo[len(memo) if name == "MEMOIZE" else arg] = recent[-1] if recent else None
        elif name in _MEMO_GET:
            recent.append(memo.get(arg))
        elif name not in _QUIET:
            recent.append(None)
        if name == "STOP":
            break
    return found


# --- config.json against the weights' shapes ----------------------------------------------------------------

# The word-embedding matrix of BERT-like models, at the top or one module down (bert., roberta., ...);
# TF's h5 names it .../embeddings/word_embeddings/weight:0.
_WORD_EMBEDDINGS = re.compile(r"^(?:[A-Za-z0-9_]+\.)?embeddings\.word_embeddings\.weight$")
_TF_WORD_EMBEDDINGS = re.compile(r"(?:^|/)embeddings/word_embeddings/weight:0$")


def config_contradiction(config: dict, files) -> str | None:
    """A clear contradiction between config.json and the word-embedding matrix's shape, or None.

    Conservative: only when exactly one such matrix is found (safetensors headers, h5 dataset
    shapes; msgpack would need its arrays read). Rows are compared with ``vocab_size``; the width with
    ``embedding_size`` when the config has it (ALBERT, ELECTRA), else ``hidden_size``, and not at
    all when another ``*embedding_size`` / ``embed_dim`` key may set it (RemBERT's input_embedding_size).
    """
    found = []
    for f in files:
        for key, shape in _shapes(f).items():
            if _WORD_EMBEDDINGS.match(key) or _TF_WORD_EMBEDDINGS.search(key):
                found.append((f.name, key, shape))
    if len(found) != 1 or len(found[0][2]) != 2:
        return None
    fname, key, (rows, width) = found[0]
    if "embedding_size" in config:
        width_key = "embedding_size"
    elif any(("embedding_size" in k or "embed_dim" in k) for k in config):
        width_key = None
    else:
        width_key = "hidden_size"
    said = {k: config.get(k) for k in ("vocab_size", width_key) if k}
    wrong = [f"{k} {v}" for (k, v), actual in zip(said.items(), (rows, width))
             if isinstance(v, int) and not isinstance(v, bool) and v != actual]
    if not wrong:
        return None
    compared = " and ".join(said)
    return (f"it says {' and '.join(wrong)}, but {key} in {fname} has shape [{rows}, {width}] "
            f"(compared [rows, width] of the word-embedding matrix with {compared})")


def _shapes(f: Path) -> dict:
    """{tensor name: shape} from a header alone (safetensors) or the dataset index (h5); {} otherwise."""
    if f.suffix == ".safetensors":
        return {k: v["shape"] for k, v in safetensors_header(f)[1].items() if k != "__metadata__"}
    if f.suffix != ".h5":
        return {}
    try:
        import h5py
    except ImportError:
        return {}
    shapes = {}
    with h5py.File(f, "r") as h:
        h.visititems(lambda name, obj: shapes.__setitem__(name, list(obj.shape))
                     if isinstance(obj, h5py.Dataset) else None)
    return shapes


# --- the floating dtype the weights are stored in ----------------------------------------------------------

_SAFETENSORS_FLOATS = {"F16": "float16", "BF16": "bfloat16", "F32": "float32", "F64": "float64",
                       "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2"}
_STORAGE_FLOATS = {"torch.HalfStorage": "float16", "torch.BFloat16Storage": "bfloat16",
                   "torch.FloatStorage": "float32", "torch.DoubleStorage": "float64"}


def weights_dtype(folder: Path, name: str) -> str | None:
    """The floating dtypes a weights file (or its shards) stores, joined (``"float16"``), from headers alone:
    safetensors headers, a pickle's storage globals (torch.HalfStorage), h5 dataset dtypes. None when it
    cannot be told without reading the arrays (msgpack), or on any error (the runners check the model too)."""
    found: set[str] = set()
    try:
        for f in shard_files(Path(folder), name):
            if f.suffix == ".safetensors":
                found |= {_SAFETENSORS_FLOATS[v["dtype"]] for k, v in safetensors_header(f)[1].items()
                          if k != "__metadata__" and v.get("dtype") in _SAFETENSORS_FLOATS}
            elif f.suffix == ".bin" and _head(f, 4) == b"PK\x03\x04":
                with zipfile.ZipFile(f) as z:
                    for member in (m for m in z.namelist() if m.endswith("data.pkl")):
                        found |= {_STORAGE_FLOATS[g] for g in pickle_globals(io.BytesIO(z.read(member)))
                                  if g in _STORAGE_FLOATS}
            elif f.suffix == ".h5":
                found |= _h5_floats(f)
            else:
                return None
    except Exception:  # noqa: BLE001  an unreadable file was refused by check_weights already
        return None
    return ", ".join(sorted(found)) if found else None


def _h5_floats(f: Path) -> set:
    import h5py
    import numpy as np

    found = set()
    with h5py.File(f, "r") as h:
        h.visititems(lambda _, obj: found.add(str(obj.dtype)) if isinstance(obj, h5py.Dataset)
                     and np.issubdtype(obj.dtype, np.floating) else None)
    return found
