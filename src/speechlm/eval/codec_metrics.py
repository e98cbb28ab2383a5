"""Codec quality at 1, 2, 4, ... all codebooks, against the unit vocoder and Griffin-Lim.

Per number of codebooks k (the first k of the residual stack):

* ``bitrate``: nominal bits/s, ``k * log2(V) * frame_rate``.
* ``mel_distance``: mean L1 between 80-band natural-log mel amplitudes of original and decoded
  audio (the vocoder's 100 Hz mel), frame by frame (codec output is sample-aligned).
* ``si_snr``: scale-invariant SNR in dB (needs sample alignment; unit resynthesis has none, so
  its SI-SNR is reported but not meaningful).
* ``wer`` / ``wer_ratio``: ASR word error rate of decoded audio, and its ratio to the WER of the
  original audio on the same utterances.
* ``speaker_similarity``: cosine of Resemblyzer speaker embeddings, original vs decoded.
* ``codebook_usage``: the smallest fraction of entries used on this split among the first k
  codebooks (``codebook_usage_per_codebook`` and ``codebook_perplexity`` list every codebook).
  Usage is counted over the *whole* split (encoding only, cheap) whatever ``limit`` is: with
  fewer frames than a few per entry it measures the sample size, not the codebook
  (``usage_frames`` says how many frames it saw).

With a unit tokenizer (``tokenizer_dir``): ABX and PNMI of codebook-1 tokens next to the
tokenizer's own units (the semantic-distillation check), and with a vocoder as well, the same
quality metrics for unit-vocoder and Griffin-Lim resynthesis. ``speaker_probe`` trains a logistic
regression to tell the split's speakers apart from utterance-level pooled code vectors of
codebook 1 vs the sum of the other codebooks (5-fold cross-validated accuracy).
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np
import torch

from speechlm.core.errors import ConfigError, DataError
from speechlm.core.progress import progress_bar
from speechlm.core.threads import with_torch_threads

log = logging.getLogger(__name__)


def codebook_counts(codecs_k: list[int], n_codebooks: int) -> list[int]:
    """1, 2, 4, ... and all codebooks (deduplicated, ascending)."""
    return sorted({k for k in codecs_k if 1 <= k <= n_codebooks} | {n_codebooks})


def mel_distance(reference: np.ndarray, decoded: np.ndarray) -> float:
    """Mean |log-mel(ref) - log-mel(dec)| over the frames both clips have (80 bands, 100 Hz)."""
    from speechlm.tokenizers.semantic.dsp import mel_filterbank
    from speechlm.vocoder.model import MEL_NFFT, N_MELS, mel_spectrogram

    fbank = mel_filterbank(N_MELS, MEL_NFFT)
    a = mel_spectrogram(torch.from_numpy(np.ascontiguousarray(reference, dtype=np.float32)), fbank)
    b = mel_spectrogram(torch.from_numpy(np.ascontiguousarray(decoded, dtype=np.float32)), fbank)
    n = min(a.shape[0], b.shape[0])
    if n == 0:
        raise DataError("mel_distance: a clip is shorter than one mel frame")
    return float((a[:n] - b[:n]).abs().mean())


def si_snr(reference: np.ndarray, estimate: np.ndarray, eps: float = 1e-8) -> float:
    """Scale-invariant signal-to-noise ratio in dB over the common length (both zero-meaned)."""
    n = min(reference.size, estimate.size)
    ref = reference[:n].astype(np.float64) - reference[:n].mean()
    est = estimate[:n].astype(np.float64) - estimate[:n].mean()
    target = (est @ ref) / (ref @ ref + eps) * ref
    noise = est - target
    return float(10 * np.log10((target @ target + eps) / (noise @ noise + eps)))


def _is_monotonic(values: list[float], higher_is_better: bool) -> bool:
    pairs = zip(values, values[1:])
    return all((b >= a) if higher_is_better else (b <= a) for a, b in pairs)


class _Quality:
    """Accumulates one system's per-utterance metrics (WER over the whole split at the end)."""

    def __init__(self) -> None:
        self.mel, self.snr, self.sim, self.hyps = [], [], [], []

    def add(self, original: np.ndarray, audio: np.ndarray, transcribe, embed, ref_embedding) -> None:
        self.mel.append(mel_distance(original, audio))
        self.snr.append(si_snr(original, audio))
        if transcribe is not None:
            self.hyps.append(transcribe(audio))
        if embed is not None:
            self.sim.append(float(np.dot(ref_embedding, embed(audio))))

    def summary(self, refs: list[str], wer_original: float | None) -> dict:
        from speechlm.eval.asr import wer

        out = {"mel_distance": float(np.mean(self.mel)), "si_snr": float(np.mean(self.snr))}
        if self.hyps:
            out["wer"] = wer(refs, self.hyps)
            out["wer_ratio"] = out["wer"] / max(wer_original, 1e-9)
        if self.sim:
            out["speaker_similarity"] = float(np.mean(self.sim))
        return out


def _abx_pnmi(streams: dict[str, list[np.ndarray]], phones: list, speakers: list[str], rate: float,
              vocab: dict[str, int], n_triplets: int, seed: int) -> dict:
    """ABX within/across and PNMI of each token stream (frame-level, one per utterance)."""
    from speechlm.eval.tokenizer_metrics import (Segment, abx_error, phone_frames, phone_segments, pnmi,
                                                 sample_triplets)

    out = {}
    for name, utterances in streams.items():
        eye = np.eye(vocab[name], dtype=np.float32)
        segments, frame_phones, frame_units = [], [], []
        for units, utt_phones, speaker in zip(utterances, phones, speakers):
            labels = phone_frames(utt_phones, units.size, rate)
            keep = [i for i, lab in enumerate(labels) if lab is not None]
            frame_phones.extend(labels[i] for i in keep)
            frame_units.extend(units[keep].tolist())
            for label, first, last in phone_segments(utt_phones, units.size, rate):
                segments.append(Segment(speaker, label, eye[units[first:last]]))
        result = {}
        for condition, across in (("within", False), ("across", True)):
            result[f"abx_{condition}"] = abx_error(segments, sample_triplets(segments, n_triplets, across, seed))
        ids = {p: i for i, p in enumerate(sorted(set(frame_phones)))}
        result["pnmi"] = pnmi(np.array([ids[p] for p in frame_phones]), np.array(frame_units))
        out[name] = result
    return out


def speaker_probe(features: dict[str, np.ndarray], speakers: list[str], seed: int = 0) -> dict:
    """5-fold cross-validated logistic-regression accuracy of speaker ID from each feature set."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = np.array(speakers)
    _, counts = np.unique(labels, return_counts=True)
    folds = int(min(5, counts.min()))
    if counts.size < 2 or folds < 2:
        raise DataError(f"speaker probe: need 2+ speakers with 2+ utterances each, got counts {counts.tolist()}")
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    out = {"speakers": int(counts.size), "utterances": int(labels.size), "folds": folds,
           "chance": float(counts.max() / labels.size)}
    for name, x in features.items():
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.1))
        out[name] = float(cross_val_score(clf, x, labels, cv=cv).mean())
    return out


def _pool(vectors: np.ndarray) -> np.ndarray:
    """(N, D) frames -> (2D,) mean and standard deviation over time."""
    return np.concatenate([vectors.mean(0), vectors.std(0)])


@with_torch_threads
def evaluate_codec(codec_spec: str | Path, corpus_dir: str | Path, split: str = "heldout",
                   limit: int | None = 30, codebooks: tuple[int, ...] = (1, 2, 4),
                   tokenizer_dir: str | Path | None = None, vocoder_dir: str | Path | None = None,
                   asr: str | None = "whisper", speaker: bool = True, semantic: bool = True, probe: bool = True,
                   n_triplets: int = 2000, seed: int = 0, threads: int = 1,
                   show_progress: bool = True) -> dict:
    """All codec metrics on the first ``limit`` utterances of ``split`` (None = all); see module doc.
    ``asr`` is a :mod:`speechlm.eval.asr` spec (Whisper tiny.en by default; None skips WER)."""
    from speechlm.data.corpus import Corpus
    from speechlm.eval.asr import transcribe, wer
    from speechlm.eval.speaker import speaker_encoder
    from speechlm.tokenizers import dedup
    from speechlm.tokenizers.codec import load_codec

    codec = load_codec(codec_spec)
    corpus = Corpus(corpus_dir)
    n = corpus.table(split, ["id"]).num_rows
    n = n if limit is None else min(n, limit)
    if n == 0:
        raise DataError(f"{corpus_dir}: split {split!r} is empty")
    ks = codebook_counts(list(codebooks), codec.n_codebooks)
    tok = voc = None
    if tokenizer_dir is not None:
        from speechlm.tokenizers import load_tokenizer

        tok = load_tokenizer(tokenizer_dir)
    if vocoder_dir is not None:
        from speechlm.vocoder import load_vocoder

        if tok is None:
            raise ConfigError("a vocoder baseline needs its tokenizer (--tokenizer)")
        voc = load_vocoder(vocoder_dir)
    transcriber = functools.partial(transcribe, asr=asr) if asr else None
    embed = speaker_encoder().embed if speaker else None
    systems = {str(k): _Quality() for k in ks}
    if voc is not None:
        systems.update(unit_vocoder=_Quality(), griffin_lim=_Quality())
    refs, orig_hyps, seconds = [], [], 0.0
    counts = np.zeros((codec.n_codebooks, codec.codebook_size), dtype=np.int64)
    cb1, tok_units, phones, speakers, probe_feats = [], [], [], [], {"codebook1": [], "rest": []}
    total = corpus.table(split, ["id"]).num_rows
    with progress_bar(f"codec eval on {split}", total=total, unit="utts", enabled=show_progress) as advance:
        for i, utt in enumerate(corpus.utterances(split)):
            samples = utt.samples()
            codes = codec.encode(samples, source=f"{corpus_dir}:{utt.id}")        # (K, N)
            for k in range(codec.n_codebooks):
                np.add.at(counts[k], codes[k], 1)
            if i >= n:          # beyond the limit: usage only
                advance()
                continue
            seconds += samples.size / 16000
            refs.append(utt.text)
            speakers.append(utt.speaker)
            if transcriber:
                orig_hyps.append(transcriber(samples))
            ref_embedding = embed(samples) if embed else None
            for k in ks:
                audio = codec.decode(codes[:k])[: samples.size]
                systems[str(k)].add(samples, audio, transcriber, embed, ref_embedding)
            if voc is not None:
                from speechlm.vocoder import resynthesize

                for name, gl in (("unit_vocoder", False), ("griffin_lim", True)):
                    audio = resynthesize(tok, voc, samples, griffin_lim_baseline=gl)
                    systems[name].add(samples, audio, transcriber, embed, ref_embedding)
            n_frames = samples.size // codec.hop
            cb1.append(codes[0, :n_frames])
            phones.append(utt.phones)
            if tok is not None:
                tok_units.append(tok.encode(samples, dedup=False)[0])
            if probe and codec.n_codebooks > 1 and hasattr(codec, "code_vectors"):
                vectors = codec.code_vectors(codes)                                 # (K, N, dim)
                probe_feats["codebook1"].append(_pool(vectors[0]))
                probe_feats["rest"].append(_pool(vectors[1:].sum(0)))
            advance()
    wer_original = wer(refs, orig_hyps) if transcriber else None
    summaries = {name: q.summary(refs, wer_original) for name, q in systems.items()}
    usage = (counts > 0).mean(axis=1)
    probs = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    perplexity = np.exp(-(np.where(probs > 0, probs * np.log(np.where(probs > 0, probs, 1)), 0)).sum(1))
    result: dict = {"codec": str(codec.path if getattr(codec, "path", None) else codec_spec),
                    "split": split, "utterances": n, "seconds": round(seconds, 1),
                    "frame_rate": codec.frame_rate, "codebook_size": codec.codebook_size,
                    "n_codebooks": codec.n_codebooks, "codebooks_evaluated": ks,
                    "asr": asr,
                    "speaker_encoder": "resemblyzer" if embed else None}
    if wer_original is not None:
        result["wer_original"] = wer_original
    result["bitrate"] = {str(k): codec.bitrate(k) for k in ks}
    for metric in ("mel_distance", "si_snr", "wer", "wer_ratio", "speaker_similarity"):
        if metric in summaries[str(ks[0])]:
            result[metric] = {str(k): summaries[str(k)][metric] for k in ks}
    result["codebook_usage"] = {str(k): float(usage[:k].min()) for k in ks}
    result["codebook_usage_per_codebook"] = usage.round(4).tolist()
    result["usage_utterances"], result["usage_frames"] = total, int(counts[0].sum())
    result["codebook_perplexity"] = perplexity.round(2).tolist()
    result["monotonic"] = {m: _is_monotonic([result[m][str(k)] for k in ks], m in ("si_snr", "speaker_similarity"))
                           for m in ("mel_distance", "si_snr", "wer_ratio", "speaker_similarity") if m in result}
    if voc is not None:
        from speechlm.eval.tokenizer_metrics import bitrate

        unit_bitrate = bitrate([dedup(u)[0] for u in tok_units], seconds)["bitrate"]
        result["baselines"] = {name: {**summaries[name], "bitrate": unit_bitrate}
                               for name in ("unit_vocoder", "griffin_lim")}
    if semantic:
        streams = {"codebook1": cb1}
        vocab = {"codebook1": codec.codebook_size}
        if tok is not None:
            streams["tokenizer_units"] = tok_units
            vocab["tokenizer_units"] = tok.vocab_size
        if all(phones):
            result["semantic"] = _abx_pnmi(streams, phones, speakers, codec.frame_rate, vocab, n_triplets, seed)
            if tok is not None:
                result["semantic"]["tokenizer"] = str(tok.path)
    if probe_feats["codebook1"]:
        try:
            result["speaker_probe"] = {"split": split, **speaker_probe(
                {name: np.stack(v) for name, v in probe_feats.items()}, speakers, seed)}
        except DataError as err:  # too few utterances per speaker: say so in the result
            result["speaker_probe"] = {"split": split, "skipped": str(err)}
    return result

