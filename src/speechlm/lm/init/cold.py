"""Cold init (GSLM): a randomly initialized Llama-style LM over a token space.

One model row (K = 1, or the flatten layout) is a plain ``LlamaForCausalLM`` over the joint
vocabulary; several rows get a ``MultiStreamForCausalLM`` with the same Llama as its backbone.
"""

from __future__ import annotations

from collections.abc import Sequence

from transformers import PreTrainedModel

from speechlm.lm.model import build_model, model_config
from speechlm.lm.multistream import multistream_config
from speechlm.lm.streams import TokenSpace


def cold_init(space: TokenSpace, preset: str, seed: int, depth_layers: int = 0,
              unread_rows: Sequence[int] = (), **overrides) -> PreTrainedModel:
    config = model_config(preset, space.vocab, **overrides)
    if space.n_rows > 1:
        config = multistream_config(config, space.row_sizes, depth_layers, unread_rows)
    return build_model(config, seed)
