"""Batch: the numpy arrays every framework receives, built once.

Texts are tokenized with the checkpoint's own tokenizer (``padding=True,
truncation=True``) and exactly the keys it returns are passed on: nothing
such as token_type_ids is invented. Without a tokenizer, seeded random ids
inside the vocabulary with a padded attention mask. Images, audio, decoder
ids and multiple-choice shapes come from parity.planning.modalities.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from parity.planning import modalities
from parity.numerics.compare import empty_rows
from parity.contracts.batch import has_tokenizer
from parity.contracts.errors import UsageError

# Varied on purpose: short and long (truncated at the default max length),
# accents, CJK and emoji, and different lengths so that padding happens.
DEFAULT_TEXTS = [
    "Hello world.",
    "The quick brown fox jumps over the lazy dog near the riverbank on a cold morning.",
    "Unicode check: café, naïve, Zürich, 東京, and a few emoji 🤗🚀✨.",
    "Short.",
    "Parity testing compares one checkpoint across PyTorch, TensorFlow and Flax: the same tokens go in, "
    "and logits, hidden states and attentions must agree within tolerance. This sentence is long on "
    "purpose so that the tokenizer has to truncate it at the default maximum length of sixty-four "
    "tokens, which exercises the truncation path of every tokenizer we meet.",
    "Numbers like 3.14159, 2026-11-23 and $1,000,000 tokenize into many pieces.",
]


@dataclass
class Batch:
    arrays: dict                      # input name -> numpy array, passed unchanged to every framework
    source: str                       # "tokenizer" or "random-ids"
    seed: int
    texts: list | None = None
    tokenizer: str | None = None      # tokenizer class name when one was used
    extra: dict = field(default_factory=dict)
    modality: str = "text"            # what the encoder reads (see modalities.modality)
    seq2seq: bool = False             # decoder_input_ids present: non-encoder outputs are decoder-aligned
    cache: str | None = None          # tokenized batch from the cache: "hit", "stored", or None (parity.planning.batch_cache)

    @property
    def attention_mask(self) -> np.ndarray | None:
        return self.arrays.get("attention_mask")

    @property
    def masks(self) -> dict:
        """Padding masks per stack, for compare.valid_mask (None = no padding)."""
        return {"encoder": self.attention_mask, "decoder": self.arrays.get("decoder_attention_mask")}

    def describe(self) -> dict:
        """JSON form for results.json: shapes and dtypes, the seed, the texts."""
        return {
            "source": self.source, "seed": self.seed, "texts": self.texts, "tokenizer": self.tokenizer,
            "cache": self.cache,
            "keys": list(self.arrays),
            "shapes": {k: list(v.shape) for k, v in self.arrays.items()},
            "dtypes": {k: str(v.dtype) for k, v in self.arrays.items()},
            "padded_positions": int((self.attention_mask == 0).sum()) if self.attention_mask is not None else 0,
            # Rows that are all padding: excluded from every comparison (compare.rows_kept).
            "empty_rows": empty_rows(self.masks),
            # Per row and token, so reports can mark padded positions (the heat map).
            "attention_mask": (np.asarray(self.attention_mask).astype(int).tolist()
                               if self.attention_mask is not None else None),
            "modality": self.modality, "seq2seq": self.seq2seq,
            "layout": {"pixel_values": "NCHW"} if "pixel_values" in self.arrays else {},
        }

    def save(self, path: Path) -> None:
        """Write npz atomically (workers poll for the final name)."""
        from parity.contracts.atomic import write_npz_atomic

        write_npz_atomic(path, self.arrays)



def read_texts(texts, texts_file) -> list[str]:
    out = list(texts or [])
    if texts_file:
        try:
            raw = Path(texts_file).read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise UsageError(f"texts file {texts_file} is not UTF-8", "save it as UTF-8, one text per line") from None
        except OSError as e:
            raise UsageError(f"cannot read texts file {texts_file} ({e.strerror})",
                             "--texts-file takes a readable UTF-8 file") from None
        lines = [line for line in raw.splitlines() if line.strip()]
        if not lines:
            raise UsageError(f"texts file {texts_file} has no text", "put one text per line in it")
        out.extend(lines)
    return out



def build(path, config: dict, *, texts=None, texts_file=None, batch_size=None,
          max_length=64, seed=0, task=None, trust_remote_code=False, files: dict | None = None) -> Batch:
    """Build the one batch of a check: the encoder input for the config's modality,
    then decoder ids for encoder-decoder models. ``files`` (the checkpoint's
    fingerprint, name -> {sha256}) turns on the tokenized-batch cache."""
    given = read_texts(texts, texts_file)
    kind = modalities.modality(config)
    choices = modalities.CHOICES if task == "multiple-choice" else 1
    if kind in ("text", "text+image"):
        batch = _text(path, config, given, batch_size, max_length, seed, choices, trust_remote_code, files)
    else:
        if given:
            raise UsageError(f"{path} is a {kind} model, so --text / --texts-file cannot be used",
                             "leave out --text: parity feeds seeded inputs of the right shape")
        n = batch_size or 4
        make = {"image": ("pixel_values", modalities.pixel_values),
                "audio-features": ("input_features", modalities.input_features),
                "audio-waveform": ("input_values", modalities.input_values)}[kind]
        batch = Batch({make[0]: make[1](config, n, seed)}, f"seeded-{kind}", seed)
    if kind == "text+image":
        n = batch.arrays["input_ids"].shape[0]
        batch.arrays["pixel_values"] = modalities.pixel_values(config, n, seed)
    batch.modality = kind
    if modalities.takes_decoder_ids(config, task):
        first = next(iter(batch.arrays.values()))
        enc_len = batch.arrays["input_ids"].shape[-1] if "input_ids" in batch.arrays else None
        batch.arrays["decoder_input_ids"] = modalities.decoder_ids(config, first.shape[0], seed, enc_len)
        batch.seq2seq = True
    return batch


def _text(path, config, given, batch_size, max_length, seed, choices, trust_remote_code=False,
          files=None) -> Batch:
    if has_tokenizer(path):
        chosen = given or list(DEFAULT_TEXTS)
        rows = (batch_size or max(1, len(chosen) // choices)) * choices
        chosen = [chosen[i % len(chosen)] for i in range(rows)] if (batch_size or choices > 1) else chosen
        if files is not None and not trust_remote_code:
            batch = _tokenize_cached(path, chosen, max_length, seed, files)
        else:
            batch = _tokenize(path, chosen, max_length, seed, trust_remote_code)
    else:
        if given:
            raise UsageError(f"{path} has no tokenizer, so --text / --texts-file cannot be used",
                             "save the tokenizer into the checkpoint folder, or leave out --text to use seeded "
                             "token ids")
        text_cfg = config.get("text_config") if isinstance(config.get("text_config"), dict) \
            else modalities.encoder_config(config)
        batch = random_ids(text_cfg, (batch_size or 4) * choices, max_length, seed)
    if choices > 1:
        batch.arrays = modalities.to_choices(batch.arrays, choices)
    return batch


def _tokenize_cached(path, texts, max_length, seed, files: dict) -> Batch:
    """_tokenize through parity.planning.batch_cache: a re-check skips importing transformers here."""
    from parity.planning import batch_cache

    entry = batch_cache.key(files, texts, max_length)
    found = batch_cache.load(entry)
    if found is not None:
        arrays, tokenizer = found
        return Batch(arrays, "tokenizer", seed, texts=list(texts), tokenizer=tokenizer, cache="hit")
    batch = _tokenize(path, texts, max_length, seed)
    if batch_cache.store(entry, batch.arrays, batch.tokenizer):
        batch.cache = "stored"
    return batch


def _tokenize(path, texts, max_length, seed, trust_remote_code=False) -> Batch:
    try:
        from transformers import AutoTokenizer
        tok = AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    except Exception as e:  # tokenizer code raises anything from OSError to TypeError
        raise UsageError(f"the tokenizer in {path} failed to load ({type(e).__name__}: "
                         f"{str(e).strip().splitlines()[0] if str(e).strip() else 'no message'})",
                         "fix or remove the tokenizer files; without them parity uses seeded token ids") from None
    if tok.pad_token is None:
        # Decoder-only tokenizers often lack a pad token; padding needs one.
        tok.pad_token = tok.eos_token or tok.unk_token
    enc = tok(texts, padding=True, truncation=True, max_length=max_length, return_tensors="np")
    arrays = {k: np.ascontiguousarray(v) for k, v in enc.items()}
    return Batch(arrays, "tokenizer", seed, texts=list(texts), tokenizer=type(tok).__name__)


def random_ids(config: dict, batch_size: int, length: int, seed: int) -> Batch:
    """Seeded ids in [first non-special id, vocab) with a mask that pads later rows."""
    vocab = int(config.get("vocab_size") or 0)
    if vocab < 2:
        raise UsageError("config has no usable vocab_size for random token ids",
                         "save a tokenizer with the checkpoint")
    rng = np.random.default_rng(seed)
    low = min(5, vocab - 1)
    ids = rng.integers(low, vocab, size=(batch_size, length), dtype=np.int64)
    mask = np.ones((batch_size, length), dtype=np.int64)
    pad = config.get("pad_token_id")
    pad = 0 if pad is None else int(pad)
    eos = config.get("eos_token_id")
    eos = eos[0] if isinstance(eos, list) and eos else eos
    for row in range(batch_size):
        keep = max(1, length - (row * length) // (2 * batch_size))
        mask[row, keep:] = 0
        ids[row, keep:] = pad
        if isinstance(eos, int) and 0 <= eos < vocab:
            # End every row with eos as a tokenizer would: BART-style sequence
            # classification pools the last eos and needs one per row.
            ids[row, keep - 1] = eos
    return Batch({"input_ids": ids, "attention_mask": mask}, "random-ids", seed)

