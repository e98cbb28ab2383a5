"""Cold init (GSLM): a randomly initialized Llama-style LM over the speech vocabulary."""

from __future__ import annotations

from transformers import LlamaForCausalLM

from speechlm.lm.model import build_model, model_config
from speechlm.lm.vocab import SpeechVocab


def cold_init(vocab: SpeechVocab, preset: str, seed: int, **overrides) -> LlamaForCausalLM:
    return build_model(model_config(preset, vocab, **overrides), seed)
