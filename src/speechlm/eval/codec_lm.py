"""Codec LM evaluation on held-out voices: zero-shot TTS, speech continuation and VioLA's speech ->
phonemes task (``speechlm eval --suite tts,continuation,asr``; ``benchmarks/codec_lm.py`` runs the
same functions over seeds and recipes).

Items: held-out utterances (voices never seen in training), round-robin over the speakers; item
i's voice prompt is the first ``prompt_seconds`` of *another* utterance of the same speaker.

* ``tts``: Whisper WER of the synthesized speech against the item's text; speaker similarity
  (Resemblyzer cosine) of the output to its own prompt vs the mean over the prompts of the other
  held-out speakers, with 95 % bootstrap intervals over items (the gap is the zero-shot claim);
  codec frames/s and real-time factor of the LMs. Baselines of the same run: the original audio
  and its codec resynthesis (the ceiling any codec LM can reach).
* ``continuation``: ``prompt_seconds`` of a held-out utterance (one at least prompt + half the
  continuation long), ``continue_seconds`` more: mel distance and WER against the utterance's true
  next seconds, similarity to the prompt, frames/s.
* ``asr``: phoneme error rate (greedy) against espeak's phonemes of the text, and the same
  hypotheses scored against the next item's phonemes (what a model that ignores the audio gets).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from speechlm.core.errors import ConfigError, DataError
from speechlm.eval.prosody import bootstrap_ci

SUITES = ("tts", "continuation", "asr")


@dataclass(frozen=True)
class CodecEvalConfig:
    corpus_dir: str | Path
    items: int = 10
    prompt_seconds: float = 3.0
    continue_seconds: float = 2.0
    temperature: float = 1.0
    top_k: int | None = 20

    def validate(self) -> None:
        if self.items < 1 or min(self.prompt_seconds, self.continue_seconds) <= 0:
            raise ConfigError(f"codec LM eval: items >= 1 and positive seconds, got {self}")


def heldout_items(corpus_dir: str | Path, n: int, min_seconds: float = 0.0) -> list[dict]:
    """Up to ``n`` held-out items (``text``, ``audio``, ``prompt``, ``speaker``, ``words``), round-robin
    over the speakers; targets at least ``min_seconds`` long."""
    from speechlm.data.audio import read_audio
    from speechlm.data.corpus import Corpus

    utts = [u for u in Corpus(corpus_dir).utterances("heldout") if u.duration >= min_seconds]
    if not utts:
        raise DataError(f"{corpus_dir}: no held-out utterance of at least {min_seconds:.1f} s")
    by_speaker: dict[str, list] = {}
    for u in utts:
        by_speaker.setdefault(u.speaker, []).append(u)
    speakers = sorted(by_speaker)
    out = []
    for i in range(min(n, len(utts))):
        group = by_speaker[speakers[i % len(speakers)]]
        j = i // len(speakers)
        target, prompt = group[j % len(group)], group[(j + 1) % len(group)]
        out.append({"text": target.text, "audio": read_audio(target.audio), "words": target.words,
                    "prompt": read_audio(prompt.audio), "speaker": target.speaker})
    return out


def continuation_items(cfg: CodecEvalConfig) -> list[dict]:
    """Held-out items long enough for the prompt and half the continuation."""
    return heldout_items(cfg.corpus_dir, cfg.items, cfg.prompt_seconds + cfg.continue_seconds / 2)


def similarity(outs: list[np.ndarray], items: list[dict], embed: Callable) -> dict:
    """Similarity of each output to its item's prompt vs the mean over the other speakers' prompts."""
    prompts = [embed(it["prompt"]) for it in items]
    own, other = [], []
    for i, (audio, it) in enumerate(zip(outs, items)):
        e = embed(audio)
        own.append(float(e @ prompts[i]))
        others = [e @ p for j, p in enumerate(prompts) if items[j]["speaker"] != it["speaker"]]
        other.append(float(np.mean(others)) if others else float("nan"))
    own, other = np.array(own), np.array(other)
    if np.isnan(other).all():
        return {"sim_prompt": float(own.mean()), "sim_prompt_ci": bootstrap_ci(own), "sim_other": None,
                "sim_gap": None, "skipped": "one held-out speaker: no other voice to compare with"}
    return {"sim_prompt": float(own.mean()), "sim_prompt_ci": bootstrap_ci(own),
            "sim_other": float(np.nanmean(other)), "sim_other_ci": bootstrap_ci(other),
            "sim_gap": float(np.nanmean(own - other)), "sim_gap_ci": bootstrap_ci(own - other)}


def wer_of(refs: list[str], clips: list[np.ndarray], transcribe: Callable) -> float:
    from speechlm.eval.asr import wer

    return wer(refs, [transcribe(c) for c in clips])


def baselines(generator, items: list[dict], embed: Callable, transcribe: Callable) -> dict:
    """The original audio and its codec resynthesis (the ceiling) on the TTS items."""
    codec = generator.codec
    original = [it["audio"] for it in items]
    resynth = [codec.decode(codec.encode(a)) for a in original]
    refs = [it["text"] for it in items]
    return {"original": {"wer": wer_of(refs, original, transcribe), **similarity(original, items, embed)},
            "codec_resynthesis": {"wer": wer_of(refs, resynth, transcribe),
                                  **similarity(resynth, items, embed)}}


def tts_metrics(generator, items: list[dict], cfg: CodecEvalConfig, embed: Callable,
                transcribe: Callable) -> dict:
    outs, lm_s, frames = [], 0.0, 0
    for i, it in enumerate(items):
        g = generator.tts(it["text"], it["prompt"], cfg.prompt_seconds, cfg.temperature, cfg.top_k,
                          seed=i)
        outs.append(g.audio)
        lm_s, frames = lm_s + g.lm_seconds, frames + g.codes.shape[1]
    return {"items": len(items), "wer": wer_of([it["text"] for it in items], outs, transcribe),
            **similarity(outs, items, embed), "frames_per_s": frames / lm_s,
            "rtf": lm_s / (frames / generator.codec.frame_rate)}


def continuation_metrics(generator, items: list[dict], cfg: CodecEvalConfig, embed: Callable,
                         transcribe: Callable) -> dict:
    from speechlm.eval.codec_metrics import mel_distance

    rate = 16000
    p, c = int(cfg.prompt_seconds * rate), int(cfg.continue_seconds * rate)
    chosen = [it for it in items if it["audio"].size >= p + c // 2]
    if not chosen:
        raise DataError("continuation: no item is long enough for the prompt and half the continuation")
    outs, mels, refs, lm_s, frames = [], [], [], 0.0, 0
    end = cfg.prompt_seconds + cfg.continue_seconds
    for i, it in enumerate(chosen):
        g = generator.continue_audio(it["audio"][:p], cfg.continue_seconds, cfg.prompt_seconds,
                                     cfg.temperature, cfg.top_k, seed=i)
        truth = it["audio"][p:p + c]
        mels.append(mel_distance(truth, g.audio[:truth.size]))
        refs.append(" ".join(w for w, s, e in it["words"] if s >= cfg.prompt_seconds and e <= end))
        outs.append(g.audio)
        lm_s, frames = lm_s + g.lm_seconds, frames + g.codes.shape[1]
    sims = np.array([float(embed(o) @ embed(it["audio"][:p])) for o, it in zip(outs, chosen)])
    return {"items": len(chosen), "mel_distance": float(np.mean(mels)),
            # items with no whole word in the window are skipped by wer(); None when none has one
            "wer_vs_truth": wer_of(refs, outs, transcribe) if any(refs) else None,
            "sim_prompt": float(sims.mean()),
            "sim_prompt_ci": bootstrap_ci(sims), "frames_per_s": frames / lm_s,
            "rtf": lm_s / (frames / generator.codec.frame_rate)}


def asr_metrics(generator, items: list[dict]) -> dict:
    """Phoneme error rate of the speech -> phonemes task; ``per_wrong_item``: the same hypotheses
    against the next item's phonemes (the floor of a model that does not read the audio)."""
    from speechlm.eval.asr import token_error_rate

    labels = generator.models["ar"].vocab.family("phonemes").labels
    refs = [[labels[i] for i in generator.phonemes(it["text"])] for it in items]
    outs = [generator.recognize(it["audio"]) for it in items]
    hyps = [o.phonemes for o in outs]
    return {"items": len(items), "per": token_error_rate(refs, hyps),
            "per_wrong_item": token_error_rate(refs[1:] + refs[:1], hyps),
            "hyp_len_ratio": sum(map(len, hyps)) / sum(map(len, refs)),
            "phonemes_per_s": sum(map(len, hyps)) / max(sum(o.lm_seconds for o in outs), 1e-9)}


def evaluate_codec_lm(model_dir: str | Path, suites: tuple[str, ...], cfg: CodecEvalConfig) -> dict:
    """The requested ``suites`` (``tts``, ``continuation``, ``asr``) for one codec LM run dir."""
    from speechlm.eval.asr import transcribe
    from speechlm.eval.speaker import speaker_encoder
    from speechlm.generation.codec_tts import CodecGenerator

    unknown = sorted(set(suites) - set(SUITES))
    if unknown or not suites:
        raise ConfigError(f"codec LM suites {unknown or '(none)'}: choose from {list(SUITES)}")
    cfg.validate()
    generator = CodecGenerator(model_dir)
    missing = sorted(set(suites) - generator.abilities)
    if missing:  # said before any work, not after the suites it can do
        raise ConfigError(f"{model_dir}: a {generator.kind} codec LM cannot be scored on {missing} "
                          f"(it does {sorted(generator.abilities)})")
    items = heldout_items(cfg.corpus_dir, cfg.items)
    out: dict = {"model": str(model_dir), "corpus": str(cfg.corpus_dir), "config": {
        k: getattr(cfg, k) for k in ("items", "prompt_seconds", "continue_seconds", "temperature", "top_k")}}
    embed = speaker_encoder().embed if {"tts", "continuation"} & set(suites) else None
    if "tts" in suites:
        out["tts"] = tts_metrics(generator, items, cfg, embed, transcribe)
        out["baselines"] = baselines(generator, items, embed, transcribe)
    if "continuation" in suites:
        out["continuation"] = continuation_metrics(generator, continuation_items(cfg), cfg, embed,
                                                   transcribe)
    if "asr" in suites:
        out["asr"] = asr_metrics(generator, items)
    return out
