"""Speech tokenizers: audio -> discrete units (and back through :mod:`speechlm.vocoder`).

>>> from speechlm.tokenizers import load_tokenizer, train_tokenizer, tokenize_corpus  # doctest: +SKIP
"""

from speechlm.tokenizers.base import SpeechTokenizer
from speechlm.tokenizers.semantic.kmeans import dedup, undedup
from speechlm.tokenizers.semantic.tokenizer import UnitTokenizer, load_tokenizer, train_tokenizer
from speechlm.tokenizers.tokens import TokenDataset, tokenize_corpus

__all__ = ["SpeechTokenizer", "TokenDataset", "UnitTokenizer", "dedup", "load_tokenizer",
           "tokenize_corpus", "train_tokenizer", "undedup"]
