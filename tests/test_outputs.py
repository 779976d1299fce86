"""Output flattening and model order."""

from collections import OrderedDict

import numpy as np

from parity.outputs import flatten, group, model_order


def test_flatten_names_tuples_and_drops_none():
    out = OrderedDict(logits=np.ones((2, 3), np.float64), hidden_states=(np.zeros(1), np.zeros(1)),
                      attentions=None, past_key_values=((np.zeros(1), np.ones(1)),))
    flat = flatten(out)
    assert list(flat) == ["logits", "hidden_states.0", "hidden_states.1", "past_key_values.0.0",
                          "past_key_values.0.1"]
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


def test_decoding_cache_is_not_an_output_to_compare():
    from parity.outputs import is_cache

    assert is_cache("past_key_values.0.1") and not is_cache("logits") and not is_cache("hidden_states.0")
