"""Resynthesis round trip: audio -> units -> vocoder -> audio, judged by ASR and spectral distance.

For each of the first ``limit`` utterances of a split (the held-out voices by default) the report
holds the ASR word error rate of the original audio, of the neural vocoder's resynthesis and of
the Griffin-Lim baseline on the same predicted mel, their ratios to the original (the
intelligibility the round trip keeps, independent of how well the ASR reads these voices), the
mel-cepstral distortion (DTW-aligned, dB) and the log-mel L1 distance (same frame grid: the round
trip keeps the length). Several ASR backends can judge in one run (``asr="whisper,pocketsphinx"``):
when the units themselves come from the Whisper encoder, a second judge that shares no model with
the tokenizer keeps the figure honest.

>>> report = resynthesis_report("runs/tok", "runs/voc", "runs/corpus", asr="whisper")  # doctest: +SKIP
>>> report["wer_ratio"]                                                                # doctest: +SKIP
1.21
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from speechlm.core.errors import ConfigError, DataError
from speechlm.core.progress import progress_bar
from speechlm.core.threads import with_torch_threads
from speechlm.eval.asr import DEFAULT_ASR, transcribe_all, wer
from speechlm.tokenizers.prosody.f0 import extract_f0

log = logging.getLogger(__name__)

SPEAKER_MODES = ("source", "average")


def log_mel_distance(reference: np.ndarray, synthesized: np.ndarray) -> float:
    """Mean absolute difference of natural-log mel amplitudes (80 bands, 100 Hz) over the frames
    both clips have; the vocoder's own mel, so 0 means identical spectra."""
    from speechlm.tokenizers.semantic.dsp import mel_filterbank
    from speechlm.vocoder.model import MEL_NFFT, N_MELS, mel_spectrogram

    fbank = mel_filterbank(N_MELS, MEL_NFFT)
    a = mel_spectrogram(torch.from_numpy(np.asarray(reference, np.float32)), fbank)
    b = mel_spectrogram(torch.from_numpy(np.asarray(synthesized, np.float32)), fbank)
    n = min(len(a), len(b))
    return float((a[:n] - b[:n]).abs().mean())


def _speaker(mode: str, samples: np.ndarray):
    """``source``: the input clip as the reference voice; ``average``: None; else a name."""
    if mode == "source":
        return samples
    return None if mode == "average" else mode


@with_torch_threads
def resynthesis_report(tokenizer_dir: str | Path, vocoder_dir: str | Path, corpus_dir: str | Path,
                       split: str = "heldout", limit: int = 30, griffin_lim: bool = True,
                       threads: int = 1, show_progress: bool = True, asr: str = DEFAULT_ASR,
                       speaker: str = "source", out_dir: str | Path | None = None,
                       copy_synthesis: bool = True) -> dict:
    """WER (per ASR in the comma-separated ``asr``), WER ratios, MCD and log-mel distance of
    original vs resynthesised speech; the first ASR's figures are also the top-level keys.
    ``speaker``: ``source`` (each clip's own d-vector), ``average`` or a training speaker's name.
    ``out_dir``: also write ``report.json`` and the first three examples as WAV files there.
    ``copy_synthesis``: also vocode the *original* audio's mel (generator and Griffin-Lim): what
    the vocoder loses by itself, apart from what the units lose (``wer_resynth_copy_*``)."""
    from speechlm.data.corpus import Corpus
    from speechlm.tokenizers import load_tokenizer
    from speechlm.vocoder import load_vocoder, resynthesize
    from speechlm.tokenizers.semantic.dsp import mel_filterbank
    from speechlm.vocoder.model import MEL_HOP, MEL_NFFT, N_MELS, mel_spectrogram
    from speechlm.vocoder.quality import mel_cepstral_distortion

    judges = [a.strip() for a in asr.split(",") if a.strip()]
    if not judges:
        raise ConfigError(f"--asr {asr!r}: name at least one ASR backend")
    start = time.monotonic()
    tok = load_tokenizer(tokenizer_dir)
    voc = load_vocoder(vocoder_dir)
    if speaker not in SPEAKER_MODES and speaker not in voc.speakers:
        raise ConfigError(f"--speaker {speaker!r}: expected source, average or one of the "
                          f"vocoder's training speakers {voc.speakers}")
    if voc.config.speaker_dim == 0:  # trained without speaker conditioning: one voice
        speaker = "average"
    corpus = Corpus(corpus_dir)
    n = min(limit, corpus.table(split, ["id"]).num_rows)
    if n == 0:
        raise DataError(f"{corpus_dir}: split {split!r} is empty")
    refs, voices = [], []
    clips: dict[str, list[np.ndarray]] = {"original": [], "neural": [], "griffin_lim": [],
                                          "copy_neural": [], "copy_griffin_lim": []}
    fbank = mel_filterbank(N_MELS, MEL_NFFT)
    with progress_bar(f"resynthesising {split}", total=n, unit="utts", enabled=show_progress) as advance:
        for k, utt in enumerate(corpus.utterances(split)):
            if k >= n:
                break
            samples = utt.samples()
            refs.append(utt.text)
            voices.append(utt.speaker)
            clips["original"].append(samples)
            clips["neural"].append(resynthesize(tok, voc, samples, _speaker(speaker, samples)))
            if griffin_lim:
                clips["griffin_lim"].append(resynthesize(tok, voc, samples, _speaker(speaker, samples),
                                                         griffin_lim_baseline=True))
            if copy_synthesis:
                mel = mel_spectrogram(torch.from_numpy(samples[: samples.size // MEL_HOP * MEL_HOP]), fbank)
                f0 = extract_f0(samples) if voc.config.source else None  # one per mel frame
                clips["copy_neural"].append(voc.vocode(mel, f0=f0))
                if griffin_lim:
                    clips["copy_griffin_lim"].append(voc.vocode(mel, griffin_lim_baseline=True))
            advance()
    systems = [s for s in ("neural", "griffin_lim", "copy_neural", "copy_griffin_lim") if clips[s]]
    spectral = {s: {"mcd_db": float(np.mean([mel_cepstral_distortion(a, b) for a, b in
                                             zip(clips["original"], clips[s])])),
                    "mel_l1": float(np.mean([log_mel_distance(a, b) for a, b in
                                             zip(clips["original"], clips[s])]))}
                for s in systems}
    by_asr = {}
    for judge in judges:
        hyps = {s: transcribe_all(clips[s], judge, threads=threads,
                                  show_progress=show_progress) for s in ["original", *systems]}
        w_orig = wer(refs, hyps["original"])
        entry = {"wer_original": w_orig}
        for s in systems:
            w = wer(refs, hyps[s])
            suffix = "" if s == "neural" else f"_{s}"
            entry[f"wer_resynth{suffix}"] = w
            entry[f"wer_ratio{suffix}"] = w / max(w_orig, 1e-9)
        entry["per_voice"] = {v: {"utterances": sum(1 for x in voices if x == v),
                                  "wer_original": wer(*_select(refs, hyps["original"], voices, v)),
                                  "wer_resynth": wer(*_select(refs, hyps["neural"], voices, v))}
                              for v in sorted(set(voices))}
        entry["examples"] = [{"ref": r, "original": o, "resynth": h} for r, o, h in
                             list(zip(refs, hyps["original"], hyps["neural"]))[:3]]
        by_asr[judge] = entry
    first = by_asr[judges[0]]
    report = {"asr": judges[0], "split": split, "utterances": n, "speaker": speaker,
              "tokenizer": str(Path(tokenizer_dir).resolve()),
              "vocoder": str(Path(vocoder_dir).resolve()),
              "vocoder_training": voc.info.get("training", {}),
              **{k: v for k, v in first.items() if k not in ("per_voice", "examples")},
              "mcd_db": spectral["neural"]["mcd_db"], "mel_l1": spectral["neural"]["mel_l1"],
              **{f"{key}_{s}": spectral[s][key] for s in systems[1:] for key in ("mcd_db", "mel_l1")},
              "per_voice": first["per_voice"], "examples": first["examples"],
              "by_asr": by_asr, "seconds": round(time.monotonic() - start, 1)}
    if out_dir is not None:
        _write(report, clips, Path(out_dir))
    return report


def _select(refs: list[str], hyps: list[str], voices: list[str], voice: str) -> tuple[list, list]:
    keep = [i for i, v in enumerate(voices) if v == voice]
    return [refs[i] for i in keep], [hyps[i] for i in keep]


def _write(report: dict, clips: dict[str, list[np.ndarray]], out: Path) -> None:
    """report.json, ``example<i>_<system>.wav`` for the first three utterances and
    ``spectrograms.png`` (log-mel of the first one, one row per system)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from speechlm.data.audio import write_wav
    from speechlm.tokenizers.semantic.dsp import mel_filterbank
    from speechlm.vocoder.model import MEL_NFFT, N_MELS, mel_spectrogram

    out.mkdir(parents=True, exist_ok=True)
    systems = [s for s, waves in clips.items() if waves]
    for system in systems:
        for i, wav in enumerate(clips[system][:3]):
            write_wav(out / f"example{i}_{system}.wav", wav)
    fbank = mel_filterbank(N_MELS, MEL_NFFT)
    fig, axes = plt.subplots(len(systems), 1, figsize=(9, 2.2 * len(systems)), squeeze=False)
    for ax, system in zip(axes[:, 0], systems):
        mel = mel_spectrogram(torch.from_numpy(np.asarray(clips[system][0], np.float32)), fbank)
        ax.imshow(mel.T.numpy(), origin="lower", aspect="auto", vmin=-11, vmax=2)
        ax.set_title(system.replace("_", " "), fontsize=9)
        ax.set_ylabel("mel band")
    axes[-1, 0].set_xlabel("frame (10 ms)")
    fig.suptitle(f"{report['examples'][0]['ref']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "spectrograms.png", dpi=90)
    plt.close(fig)
    tmp = out / ".report.json.tmp"
    tmp.write_text(json.dumps(report, indent=2), encoding="utf-8")
    tmp.replace(out / "report.json")
