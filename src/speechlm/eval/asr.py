"""Pocketsphinx transcription and WER: an intelligibility check that runs offline on CPU.

pocketsphinx 5 ships its US-English acoustic model, LM and dictionary in the wheel. It is a weak
recogniser (WER on clean espeak speech is high), so compare WERs *relative* to the original audio:
``resynthesis_report`` gives WER(resynthesised) / WER(original) on the same utterances.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from speechlm.core.errors import DataError
from speechlm.core.progress import progress_bar
from speechlm.core.threads import with_torch_threads

log = logging.getLogger(__name__)

_DECODERS: dict = {}  # one pocketsphinx Decoder per process (loading takes ~0.3 s)
NOISE_STD = 3e-3      # exact-zero silence (vocoder output) breaks pocketsphinx's CMN/VAD


def _decoder():
    if "default" not in _DECODERS:
        from pocketsphinx import Decoder

        _DECODERS["default"] = Decoder(cmn="batch", loglevel="FATAL")
    return _DECODERS["default"]


def transcribe(samples_16k: np.ndarray, seed: int = 0) -> str:
    """16 kHz float32 mono -> lower-case words (dithered with N(0, 3e-3) noise, fixed seed)."""
    samples = np.asarray(samples_16k, dtype=np.float32).reshape(-1)
    if samples.size == 0 or not np.isfinite(samples).all():
        raise DataError("transcribe: audio is empty or has NaN/Inf samples")
    noisy = samples + np.random.default_rng(seed).normal(0.0, NOISE_STD, samples.size)
    pcm = (np.clip(noisy, -1.0, 1.0) * 32767).astype(np.int16).tobytes()
    decoder = _decoder()
    decoder.start_utt()
    decoder.process_raw(pcm, full_utt=True)
    decoder.end_utt()
    hyp = decoder.hyp()
    return normalize(hyp.hypstr) if hyp is not None else ""


def normalize(text: str) -> str:
    """Lower case, apostrophes kept inside words, other punctuation dropped, single spaces."""
    text = re.sub(r"[^a-z' ]+", " ", text.lower().replace("-", " "))
    return " ".join(w.strip("'") for w in text.split() if w.strip("'"))


def wer(refs: list[str], hyps: list[str]) -> float:
    """Corpus word error rate (jiwer) after :func:`normalize`; empty references are skipped."""
    import jiwer

    if len(refs) != len(hyps):
        raise DataError(f"wer: {len(refs)} references but {len(hyps)} hypotheses")
    pairs = [(normalize(r), normalize(h)) for r, h in zip(refs, hyps) if normalize(r)]
    if not pairs:
        raise DataError("wer: no non-empty references")
    return float(jiwer.wer([r for r, _ in pairs], [h for _, h in pairs]))


@with_torch_threads
def resynthesis_report(tokenizer_dir: str | Path, vocoder_dir: str | Path, corpus_dir: str | Path,
                       split: str = "heldout", limit: int = 30, griffin_lim: bool = True,
                       threads: int = 1, show_progress: bool = True) -> dict:
    """WER of original vs resynthesised held-out speech (neural vocoder and Griffin-Lim baseline),
    their ratios, and mel-cepstral distortion; utterances are the first ``limit`` of ``split``."""
    from speechlm.data.corpus import Corpus
    from speechlm.tokenizers import load_tokenizer
    from speechlm.vocoder import load_vocoder, resynthesize
    from speechlm.vocoder.quality import mel_cepstral_distortion

    tok = load_tokenizer(tokenizer_dir)
    voc = load_vocoder(vocoder_dir)
    corpus = Corpus(corpus_dir)
    n = min(limit, corpus.table(split, ["id"]).num_rows)
    if n == 0:
        raise DataError(f"{corpus_dir}: split {split!r} is empty")
    refs, orig, neural, gl, mcd, mcd_gl = [], [], [], [], [], []
    with progress_bar(f"resynthesising {split}", total=n, unit="utts", enabled=show_progress) as advance:
        for k, utt in enumerate(corpus.utterances(split)):
            if k >= n:
                break
            samples = utt.samples()
            refs.append(utt.text)
            orig.append(transcribe(samples))
            wav = resynthesize(tok, voc, samples)
            neural.append(transcribe(wav))
            mcd.append(mel_cepstral_distortion(samples, wav))
            if griffin_lim:
                wav_gl = resynthesize(tok, voc, samples, griffin_lim_baseline=True)
                gl.append(transcribe(wav_gl))
                mcd_gl.append(mel_cepstral_distortion(samples, wav_gl))
            advance()
    w_orig, w_neural = wer(refs, orig), wer(refs, neural)
    report = {"split": split, "utterances": n, "wer_original": w_orig, "wer_resynth": w_neural,
              "wer_ratio": w_neural / max(w_orig, 1e-9), "mcd_db": float(np.mean(mcd)),
              "examples": [{"ref": r, "original": o, "resynth": h}
                           for r, o, h in list(zip(refs, orig, neural))[:3]]}
    if griffin_lim:
        w_gl = wer(refs, gl)
        report.update(wer_resynth_griffin_lim=w_gl, wer_ratio_griffin_lim=w_gl / max(w_orig, 1e-9),
                      mcd_db_griffin_lim=float(np.mean(mcd_gl)))
    return report
