"""The batch per modality: built from the config alone, once, as numpy."""

import numpy as np
import pytest

from parity.planning import batch as inputs, modalities
from parity.contracts.errors import UsageError

TEXT = {"model_type": "bert", "vocab_size": 50, "pad_token_id": 0}
SEQ2SEQ = {"model_type": "bart", "vocab_size": 50, "pad_token_id": 1, "eos_token_id": 2,
           "decoder_start_token_id": 2, "is_encoder_decoder": True}
VIT = {"model_type": "vit", "image_size": 16, "num_channels": 3}
RESNET = {"model_type": "resnet", "num_channels": 3}
WHISPER = {"model_type": "whisper", "vocab_size": 50, "num_mel_bins": 8, "max_source_positions": 16,
           "decoder_start_token_id": 3, "is_encoder_decoder": True}
WAV2VEC2 = {"model_type": "wav2vec2", "conv_dim": [16], "feat_extract_norm": "layer", "vocab_size": 32}
CLIP = {"model_type": "clip", "text_config": {"vocab_size": 50}, "vision_config": {"image_size": 16}}
VED = {"model_type": "vision-encoder-decoder", "is_encoder_decoder": True, "decoder_start_token_id": 2,
       "encoder": {"model_type": "vit", "image_size": 16, "num_channels": 3},
       "decoder": {"model_type": "gpt2", "vocab_size": 40}}


def _build(tmp_path, config, task=None, **kw):
    return inputs.build(tmp_path, config, max_length=9, seed=0, task=task, **kw)


def test_modality_from_config():
    assert [modalities.modality(c) for c in (TEXT, SEQ2SEQ, VIT, RESNET, WHISPER, WAV2VEC2, CLIP, VED)] == \
        ["text", "text", "image", "image", "audio-features", "audio-waveform", "text+image", "image"]


def test_encoder_decoder_gets_decoder_ids_from_the_start_token(tmp_path):
    b = _build(tmp_path, SEQ2SEQ, "seq2seq-lm")
    assert list(b.arrays) == ["input_ids", "attention_mask", "decoder_input_ids"] and b.seq2seq
    dec = b.arrays["decoder_input_ids"]
    assert dec.shape == (4, modalities.DECODER_LENGTH) and (dec[:, 0] == 2).all() and (dec[:, 1:] >= 5).all()
    # every encoder row ends with eos (BART pools at it), padded rows are padded after it
    ids, mask = b.arrays["input_ids"], b.arrays["attention_mask"]
    for row in range(4):
        n = int(mask[row].sum())
        assert ids[row, n - 1] == 2 and (ids[row, n:] == 1).all()
    # the same seed gives the same bytes
    assert all(np.array_equal(v, _build(tmp_path, SEQ2SEQ, "seq2seq-lm").arrays[k]) for k, v in b.arrays.items())


def test_classification_heads_of_encoder_decoders_shift_their_own_decoder_ids(tmp_path):
    assert "decoder_input_ids" not in _build(tmp_path, SEQ2SEQ, "sequence-classification").arrays
    assert "decoder_input_ids" not in _build(tmp_path, SEQ2SEQ, "question-answering").arrays


def test_decoder_length_never_equals_the_encoder_length(tmp_path):
    b = inputs.build(tmp_path, SEQ2SEQ, max_length=modalities.DECODER_LENGTH, seed=0, task="base")
    assert b.arrays["input_ids"].shape[1] != b.arrays["decoder_input_ids"].shape[1]


def test_multiple_choice_is_batch_by_choices_by_length(tmp_path):
    b = _build(tmp_path, TEXT, "multiple-choice", batch_size=3)
    assert b.arrays["input_ids"].shape == (3, modalities.CHOICES, 9)
    assert b.arrays["attention_mask"].shape == (3, modalities.CHOICES, 9)


def test_images_are_nchw_float32_sized_from_the_config(tmp_path):
    b = _build(tmp_path, VIT, "image-classification")
    assert list(b.arrays) == ["pixel_values"] and b.arrays["pixel_values"].shape == (4, 3, 16, 16)
    assert b.arrays["pixel_values"].dtype == np.float32 and b.describe()["layout"] == {"pixel_values": "NCHW"}
    assert _build(tmp_path, RESNET).arrays["pixel_values"].shape == (4, 3, 32, 32)  # no image_size: default
    with pytest.raises(UsageError, match="image model, so --text"):
        _build(tmp_path, VIT, texts=["hello"])


def test_audio_inputs(tmp_path):
    b = _build(tmp_path, WHISPER, "speech-seq2seq")
    assert list(b.arrays) == ["input_features", "decoder_input_ids"]
    assert b.arrays["input_features"].shape == (4, 8, 32)  # Whisper needs 2 x max_source_positions frames
    assert (b.arrays["decoder_input_ids"][:, 0] == 3).all()
    w = _build(tmp_path, WAV2VEC2).arrays["input_values"]
    assert w.shape == (4, modalities.AUDIO_SAMPLES) and abs(float(w.mean())) < 1e-6


def test_clip_gets_text_and_pixels_and_vision_decoder_gets_pixels(tmp_path):
    b = _build(tmp_path, CLIP, "base")
    assert list(b.arrays) == ["input_ids", "attention_mask", "pixel_values"]
    assert b.arrays["pixel_values"].shape == (4, 3, 16, 16) and b.modality == "text+image"
    v = _build(tmp_path, VED, "vision2seq")
    assert list(v.arrays) == ["pixel_values", "decoder_input_ids"] and v.arrays["decoder_input_ids"].max() < 40


def test_missing_decoder_start_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="decoder_start_token_id"):
        _build(tmp_path, {**SEQ2SEQ, "decoder_start_token_id": None, "bos_token_id": None}, "seq2seq-lm")
