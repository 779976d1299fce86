"""Non-text and composite inputs: decoder ids, multiple choice, pixels, audio, CLIP.

Everything is built once, as numpy, from the config alone (no framework
import) and in the layout transformers' PyTorch classes take (pixels NCHW).
In transformers 4.57 the TF and Flax vision classes take NCHW too and
transpose to NHWC inside the model; a runner that ever needs channels-last
transposes its own copy and says so in its load report, never the batch.
"""

from __future__ import annotations

import numpy as np

from parity.contracts.errors import UsageError

DECODER_LENGTH = 7          # decoder positions; never equal to the encoder length (see decoder_ids)
CHOICES = 2                 # multiple choice: choices per example
DEFAULT_IMAGE_SIZE = 32     # conv nets (ResNet, RegNet) have no image_size in their config
AUDIO_SAMPLES = 800         # raw waveform length for wav2vec2-style models


def encoder_config(config: dict) -> dict:
    """The config that describes the encoder input (composite models nest it)."""
    return config.get("encoder") if isinstance(config.get("encoder"), dict) else config


def modality(config: dict) -> str:
    """What the encoder (or the only stack) reads: text, image, audio-features, audio-waveform, text+image."""
    if isinstance(config.get("text_config"), dict) and isinstance(config.get("vision_config"), dict):
        return "text+image"
    enc = encoder_config(config)
    if "num_mel_bins" in enc:
        return "audio-features"
    if "conv_dim" in enc and "feat_extract_norm" in enc:
        return "audio-waveform"
    if "num_channels" in enc and "vocab_size" not in enc:
        return "image"
    return "text"


# Encoder-decoder heads that take decoder_input_ids. Sequence classification and question
# answering (BART family) build them by shifting input_ids and pool at its eos positions;
# causal-lm on an encoder-decoder type is the decoder alone.
DECODER_INPUT_TASKS = {None, "base", "seq2seq-lm", "pretraining", "masked-lm", "speech-seq2seq", "vision2seq"}


def is_encoder_decoder(config: dict) -> bool:
    return bool(config.get("is_encoder_decoder"))


def takes_decoder_ids(config: dict, task: str | None) -> bool:
    return is_encoder_decoder(config) and task in DECODER_INPUT_TASKS


def pixel_values(config: dict, batch_size: int, seed: int) -> np.ndarray:
    """Seeded float32 pixels, NCHW, sized from the (vision) config."""
    cfg = config.get("vision_config") if isinstance(config.get("vision_config"), dict) else encoder_config(config)
    size = cfg.get("image_size") or DEFAULT_IMAGE_SIZE
    size = size[0] if isinstance(size, (list, tuple)) else size
    channels = int(cfg.get("num_channels") or 3)
    rng = np.random.default_rng(seed + 1)
    return rng.standard_normal((batch_size, channels, int(size), int(size))).astype(np.float32)


def input_features(config: dict, batch_size: int, seed: int) -> np.ndarray:
    """Log-mel-like features (batch, num_mel_bins, frames); Whisper's encoder needs exactly 2 x max_source_positions frames."""
    enc = encoder_config(config)
    frames = 2 * int(enc.get("max_source_positions") or 1500)
    rng = np.random.default_rng(seed + 2)
    return rng.standard_normal((batch_size, int(enc["num_mel_bins"]), frames)).astype(np.float32)


def input_values(config: dict, batch_size: int, seed: int) -> np.ndarray:
    """A raw waveform (batch, samples), zero mean and unit variance as wav2vec2's feature extractor gives."""
    rng = np.random.default_rng(seed + 3)
    wave = rng.standard_normal((batch_size, AUDIO_SAMPLES)).astype(np.float32)
    return (wave - wave.mean(axis=1, keepdims=True)) / wave.std(axis=1, keepdims=True)


def decoder_ids(config: dict, batch_size: int, seed: int, encoder_length: int | None) -> np.ndarray:
    """``decoder_start_token_id`` then seeded ids inside the decoder vocabulary.

    The length differs from the encoder's so that no decoder output can be
    mistaken for an encoder-aligned one.
    """
    start = config.get("decoder_start_token_id")
    dec = config.get("decoder") if isinstance(config.get("decoder"), dict) else config
    if start is None:
        start = dec.get("decoder_start_token_id", dec.get("bos_token_id"))
    if start is None:
        raise UsageError("config has no decoder_start_token_id for the decoder input",
                         "set decoder_start_token_id in config.json (the token generation starts with)")
    vocab = int(dec.get("vocab_size") or config.get("vocab_size") or 0)
    if vocab < 2:
        raise UsageError("config has no usable decoder vocab_size for decoder_input_ids",
                         "set vocab_size in config.json")
    length = DECODER_LENGTH if encoder_length != DECODER_LENGTH else DECODER_LENGTH + 1
    rng = np.random.default_rng(seed + 4)
    ids = rng.integers(min(5, vocab - 1), vocab, size=(batch_size, length), dtype=np.int64)
    ids[:, 0] = int(start)
    return ids


def to_choices(arrays: dict, choices: int = CHOICES) -> dict:
    """(batch x choices, length) token arrays -> (batch, choices, length)."""
    out = {}
    for key, value in arrays.items():
        rows = value.shape[0] - value.shape[0] % choices
        out[key] = np.ascontiguousarray(value[:rows].reshape((rows // choices, choices) + value.shape[1:]))
    return out
