"""Output flattening and model order."""

from collections import OrderedDict

import numpy as np

from parity.contracts.outputs import flatten, group, model_order


def test_flatten_names_tuples_and_drops_none():
    out = OrderedDict(logits=np.ones((2, 3), np.float64), hidden_states=(np.zeros(1), np.zeros(1)),
                      attentions=None, past_key_values=((np.zeros(1), np.ones(1)),))
    flat = flatten(out)
    assert list(flat) == ["logits", "hidden_states.0", "hidden_states.1", "past_key_values.0.k",
                          "past_key_values.0.v"]
    assert flat["logits"].dtype == np.float32  # float64 is reported as float32


def test_flatten_keeps_integer_outputs_and_uses_converter():
    flat = flatten({"ids": [1, 2]}, to_numpy=lambda v: np.asarray(v) * 10)
    assert flat["ids.0"] == 10 and flat["ids.0"].dtype.kind == "i"


def test_groups():
    assert group("hidden_states.3") == "hidden_states"
    assert group("encoder_hidden_states.0") == "hidden_states"
    assert group("cross_attentions.1") == "attentions"
    assert group("logits") == group("last_hidden_state") == group("pooler_output") == "logits"


def test_model_order_interleaves_layers_then_heads():
    names = ["logits", "attentions.1", "hidden_states.2", "attentions.0", "hidden_states.0",
             "hidden_states.1", "last_hidden_state", "pooler_output"]
    assert model_order(names) == ["hidden_states.0", "attentions.0", "hidden_states.1", "attentions.1",
                                  "hidden_states.2", "logits", "last_hidden_state", "pooler_output"]


def test_model_order_runs_encoder_before_decoder():
    names = ["decoder_hidden_states.0", "cross_attentions.0", "decoder_attentions.0",
             "encoder_hidden_states.1", "encoder_hidden_states.0", "logits"]
    assert model_order(names) == ["encoder_hidden_states.0", "encoder_hidden_states.1",
                                  "decoder_hidden_states.0", "decoder_attentions.0", "cross_attentions.0", "logits"]


def test_cache_forms_get_one_name():
    k, v, ck, cv = (np.full((1, 2, 3, 4), i, np.float32) for i in range(4))
    legacy = flatten({"past_key_values": ((k, v), (k, v))})                     # DynamicCache.to_legacy_cache
    stacked = flatten({"past_key_values": (np.stack([k, v]), np.stack([k, v]))})  # TF GPT-2 presents
    assert list(legacy) == list(stacked) == ["past_key_values.0.k", "past_key_values.0.v",
                                             "past_key_values.1.k", "past_key_values.1.v"]
    assert (stacked["past_key_values.1.v"] == 1).all()
    seq2seq = flatten({"past_key_values": ((k, v, ck, cv),)})                 # EncoderDecoderCache legacy
    assert list(seq2seq) == ["past_key_values.0.k", "past_key_values.0.v", "past_key_values.0.cross_k",
                             "past_key_values.0.cross_v"]
    assert (seq2seq["past_key_values.0.cross_v"] == 3).all()
    assert group("past_key_values.0.cross_k") == "cache"


def test_nested_outputs_keep_their_path():
    flat = flatten({"text_model_output": {"hidden_states": (np.zeros(1),)}, "text_embeds": np.zeros(2)})
    assert list(flat) == ["text_model_output.hidden_states.0", "text_embeds"]


def test_model_order_runs_each_clip_tower_layer_by_layer():
    names = ["text_embeds", "text_model_output.hidden_states.1", "vision_model_output.attentions.0",
             "text_model_output.hidden_states.0", "vision_model_output.hidden_states.0", "text_model_output.attentions.0"]
    assert model_order(names) == ["vision_model_output.hidden_states.0", "vision_model_output.attentions.0",
                                  "text_model_output.hidden_states.0", "text_model_output.attentions.0",
                                  "text_model_output.hidden_states.1", "text_embeds"]
