"""One generation pipeline: audio -> tokens -> LM -> tokens -> audio.

:class:`SpeechPipeline` holds a loaded model directory with its speech tokenizer (the one the
model records, checked by :func:`speechlm.lm.modeldir.resolve_tokenizer`, or one given) and an
optional unit vocoder. ``speechlm generate``, the generation metrics of ``speechlm eval`` and the
streaming :class:`~speechlm.generation.session.Session` all continue prompts through it.

>>> pipe = SpeechPipeline.load("runs/twist-tiny", vocoder_dir="runs/voc")      # doctest: +SKIP
>>> c = pipe.continue_audio(samples, prompt_seconds=2.0, max_new_tokens=150)   # doctest: +SKIP
>>> c.units, c.audio.shape                                                     # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from speechlm.core.errors import ConfigError
from speechlm.data.audio import SAMPLE_RATE
from speechlm.generation.sampling import generate, generate_codes
from speechlm.lm.model import SpeechLM, load_speech_lm
from speechlm.lm.modeldir import check_units, resolve_tokenizer


@dataclass
class Sampling:
    """How new tokens are drawn (per-stream lists allowed for multi-stream models)."""

    max_new_tokens: int = 100
    temperature: float | list[float] = 1.0
    top_k: int | None | list[int | None] = None
    top_p: float | None = None
    stop_at_eos: bool = True


@dataclass
class Continuation:
    prompt_units: list[int]
    units: list[int]          # generated units only
    audio: np.ndarray         # vocoded prompt + continuation, 16 kHz (empty without a vocoder)
    prompt_audio: np.ndarray  # vocoded prompt alone (what the model heard, resynthesized)
    transcript: str = ""      # filled in by evaluation (ASR of the continuation)
    ended: bool = False       # the model emitted EOS


@dataclass
class SpeechPipeline:
    lm: SpeechLM
    tokenizer: Any = None     # SpeechTokenizer (speech LMs with audio prompts)
    vocoder: Any = None       # UnitVocoder (audio out)

    @classmethod
    def load(cls, model_dir: str | Path, tokenizer_dir: str | None = None,
             vocoder_dir: str | None = None, need_tokenizer: bool = False) -> SpeechPipeline:
        """Load a model directory; its tokenizer when asked for (``need_tokenizer``) or given, and
        the vocoder at ``vocoder_dir`` (checked against the model's units)."""
        lm = load_speech_lm(model_dir)
        tokenizer = None
        if lm.kind == "speech" and (need_tokenizer or tokenizer_dir):
            tokenizer, _ = resolve_tokenizer(lm, model_dir, tokenizer_dir)
        vocoder = None
        if vocoder_dir is not None:
            from speechlm.vocoder import load_vocoder

            vocoder = load_vocoder(vocoder_dir)
            check_units(lm, vocoder.config.vocab_size, model_dir, vocoder_dir, "vocoder")
        return cls(lm, tokenizer, vocoder)

    @property
    def sample_rate(self) -> int:
        return SAMPLE_RATE

    def encode_audio(self, samples: np.ndarray) -> list[int]:
        """16 kHz samples -> deduplicated units (the model's tokenizer)."""
        if self.tokenizer is None:
            raise ConfigError(f"{self.lm.path}: no speech tokenizer loaded; audio prompts need one")
        units, _ = self.tokenizer.encode(samples, dedup=True)
        return [int(u) for u in units]

    def continue_units(self, units: list[int], sampling: Sampling, seed: int = 0) -> tuple[list[int], bool]:
        """New units after ``units`` (one-stream models); returns them and whether EOS ended them."""
        new = generate(self.lm.model, self.lm.encode_units(units), sampling.max_new_tokens,
                       temperature=sampling.temperature, top_k=sampling.top_k, top_p=sampling.top_p,
                       eos_id=self.lm.vocab.eos_id if sampling.stop_at_eos else None, seed=seed)
        ended = bool(new) and new[-1] == self.lm.vocab.eos_id
        return self.lm.decode_units(new), ended

    def continue_codes(self, codes: np.ndarray, n_frames: int, sampling: Sampling,
                       seed: int = 0) -> np.ndarray:
        """New ``(K, n_frames)`` codes after ``(K, T)`` ``codes`` (any model, any layout)."""
        return generate_codes(self.lm.model, self.lm.space, codes, n_frames, sampling.temperature,
                              sampling.top_k, sampling.top_p, seed)

    def vocode(self, units: list[int], durations: list[int] | None = None) -> np.ndarray:
        """Units -> 16 kHz audio (empty without a vocoder)."""
        if self.vocoder is None or not units:
            return np.zeros(0, dtype=np.float32)
        audio = self.vocoder.synthesize(np.asarray(units, dtype=np.int64), durations)
        return np.asarray(audio, dtype=np.float32)

    def continue_audio(self, samples: np.ndarray, sampling: Sampling, prompt_seconds: float = 2.0,
                       seed: int = 0) -> Continuation:
        """Continue the first ``prompt_seconds`` of ``samples``; vocode prompt + continuation."""
        prompt = self.encode_audio(samples[: int(prompt_seconds * SAMPLE_RATE)])
        units, ended = self.continue_units(prompt, sampling, seed)
        return Continuation(prompt, units, self.vocode(prompt + units), self.vocode(prompt),
                            ended=ended)
