"""speechlm: train spoken language models (tokenizer -> LM -> vocoder) end to end."""

__version__ = "0.1.0"
