"""Whisper WER of a corpus' held-out voices (and, with --scan, of every catalogue voice).

1. Corpus: a corpus with the demo's voice settings (12 training voices, 3 held-out, seed 0;
   ``--corpus DIR`` to use an existing one) is read back per speaker: original-audio WER of each
   held-out voice, with the training voices of the same corpus as the baseline.
2. ``--scan``: each language x variant voice of ``data/synth.py`` reads the same ``--sentences``
   sentences (default prosody, the corpus' dither noise); Whisper tiny.en WER per voice. The
   corpus' ``HELDOUT_VOICES`` were chosen from such a scan (voices Whisper reads well, both
   sexes, several accents); training voices never come from that list. ~10 min of CPU.

    .venv/bin/python benchmarks/heldout_voices.py [--corpus DIR] [--per-speaker 12] [--scan]

Writes benchmarks/results/heldout_voices.json (value = held-out WER, baseline = training-voice WER
in the same corpus, both Whisper tiny.en).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402

import numpy as np  # noqa: E402

from speechlm.core.progress import progress_bar  # noqa: E402
from speechlm.data.corpus import Corpus  # noqa: E402
from speechlm.data.synth import (HELDOUT_VOICES, LANGUAGES, VARIANTS, default_text_files,  # noqa: E402
                                 read_sentences, synthesize_corpus)
from speechlm.data.tts import Espeak, Voice  # noqa: E402
from speechlm.eval.asr import transcribe, wer  # noqa: E402


def scan_catalogue(n_sentences: int, threads: int, seed: int = 0) -> dict[str, float]:
    """WER per catalogue voice on the same ``n_sentences`` sentences (default prosody)."""
    sentences = read_sentences(default_text_files())
    picks = [sentences[i] for i in np.random.default_rng(seed).choice(len(sentences), n_sentences,
                                                                       replace=False)]
    espeak = Espeak()
    voices = [f"{lang}+{var}" for lang, var in itertools.product(LANGUAGES, VARIANTS)]
    out = {}
    with progress_bar("catalogue scan", total=len(voices), unit="voices") as advance:
        for k, name in enumerate(voices):
            hyps = []
            for j, text in enumerate(picks):
                samples = espeak.synthesize(text, Voice(name)).samples
                noise = np.random.default_rng(1000 * k + j).normal(0.0, 3e-3, samples.size)
                hyps.append(transcribe((samples + noise).astype(np.float32), threads=threads))
            out[name] = wer(picks, hyps)
            advance()
    return out


def per_speaker_wer(corpus_dir: Path, split: str, per_speaker: int, threads: int) -> dict[str, dict]:
    """Whisper WER of the first ``per_speaker`` utterances of each speaker of ``split``."""
    refs: dict[str, list[str]] = defaultdict(list)
    hyps: dict[str, list[str]] = defaultdict(list)
    utts = [u for u in Corpus(corpus_dir).utterances(split)]
    with progress_bar(f"{split} speakers", total=len(utts), unit="utts") as advance:
        for utt in utts:
            if len(refs[utt.speaker]) < per_speaker:
                refs[utt.speaker].append(utt.text)
                hyps[utt.speaker].append(transcribe(utt.samples(), threads=threads))
            advance()
    return {s: {"wer": wer(refs[s], hyps[s]), "utterances": len(refs[s]),
                "example": {"ref": refs[s][0], "hyp": hyps[s][0]}} for s in sorted(refs)}


def pooled_wer(per_speaker: dict[str, dict]) -> float:
    """Utterance-weighted mean of per-speaker WERs (each speaker reads the same number here)."""
    n = sum(v["utterances"] for v in per_speaker.values())
    return sum(v["wer"] * v["utterances"] for v in per_speaker.values()) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scan", action="store_true", help="also scan all catalogue voices")
    parser.add_argument("--sentences", type=int, default=5, help="sentences per catalogue voice")
    parser.add_argument("--per-speaker", type=int, default=12, help="corpus utterances per speaker")
    parser.add_argument("--corpus", default=None, help="existing corpus (default: synthesize one)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    start = time.perf_counter()
    catalogue = scan_catalogue(args.sentences, args.threads) if args.scan else None
    if catalogue:
        ranked = sorted(catalogue, key=catalogue.get)
        print("best catalogue voices:", ", ".join(f"{v} {catalogue[v]:.2f}" for v in ranked[:12]))
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(args.corpus) if args.corpus else Path(tmp) / "corpus"
        if args.corpus is None:
            synthesize_corpus(corpus, hours=0.2, voices=12, heldout_voices=3, seed=0)
        heldout = per_speaker_wer(corpus, "heldout", args.per_speaker, args.threads)
        train = per_speaker_wer(corpus, "train", args.per_speaker, args.threads)
    value, baseline = pooled_wer(heldout), pooled_wer(train)
    for name, row in heldout.items():
        print(f"held-out {name:24s} WER {row['wer']:.3f}")
    print(f"held-out WER {value:.3f} vs training voices {baseline:.3f}")
    path = write_result(
        "heldout_voices", {"asr": "whisper", "scan_sentences_per_voice": args.scan and args.sentences,
                           "per_speaker": args.per_speaker, "threads": args.threads,
                           "corpus": args.corpus or "synth hours=0.2 voices=12 heldout=3 seed=0"},
        value, baseline, "WER of held-out voices (Whisper tiny.en); baseline = training voices of the "
        "same corpus", heldout=heldout, train=train, catalogue=catalogue,
        heldout_catalogue=list(HELDOUT_VOICES), seconds=round(time.perf_counter() - start, 1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
