"""Acoustic tokens: a trainable neural codec with residual VQ (and HF Encodec/Mimi by path).

>>> from speechlm.tokenizers.codec import load_codec, train_codec   # doctest: +SKIP
>>> codec = load_codec("runs/codec"); codes = codec.encode(samples)  # doctest: +SKIP
"""

from speechlm.tokenizers.codec.codec import Codec, HFCodec, check_codes, load_codec

__all__ = ["Codec", "HFCodec", "check_codes", "load_codec"]
