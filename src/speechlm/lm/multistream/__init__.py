"""The K > 1 multi-stream causal LM, registered with ``AutoConfig`` / ``AutoModelForCausalLM``.

Importing any ``speechlm.lm`` module registers it, so ``AutoModelForCausalLM.from_pretrained(dir)``
loads a multi-stream model directory once speechlm is imported (K = 1 models are plain HF causal
LMs and need no registration).
"""

import copy
from collections.abc import Sequence

from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig, PreTrainedConfig

from speechlm.lm.multistream.configuration_multistream import MultiStreamConfig
from speechlm.lm.multistream.modeling_multistream import MultiStreamForCausalLM

AutoConfig.register(MultiStreamConfig.model_type, MultiStreamConfig, exist_ok=True)
AutoModelForCausalLM.register(MultiStreamConfig, MultiStreamForCausalLM, exist_ok=True)



def multistream_config(backbone: PreTrainedConfig, row_vocab_sizes: Sequence[int],
                       depth_layers: int = 0, unread_rows: Sequence[int] = ()) -> MultiStreamConfig:
    """A multi-row model around a copy of decoder config ``backbone`` (its own token table shrinks
    to one unused row); ``depth_layers > 0`` adds a Llama depth decoder of the backbone's width;
    ``unread_rows`` are predicted, never read (see :class:`MultiStreamConfig`)."""
    inner = copy.deepcopy(backbone)
    inner.vocab_size = 1
    inner.pad_token_id = inner.bos_token_id = inner.eos_token_id = None
    inner.tie_word_embeddings = False
    depth = None
    if depth_layers:
        depth = LlamaConfig(vocab_size=1, hidden_size=inner.hidden_size,
                            num_hidden_layers=depth_layers,
                            num_attention_heads=inner.num_attention_heads,
                            intermediate_size=getattr(inner, "intermediate_size", 4 * inner.hidden_size),
                            max_position_embeddings=max(2, len(row_vocab_sizes)),
                            pad_token_id=None, bos_token_id=None, eos_token_id=None)
    return MultiStreamConfig(backbone_config=inner, depth_config=depth,
                             row_vocab_sizes=list(row_vocab_sizes), unread_rows=list(unread_rows),
                             initializer_range=getattr(inner, "initializer_range", 0.02))


__all__ = ["MultiStreamConfig", "MultiStreamForCausalLM", "multistream_config"]
