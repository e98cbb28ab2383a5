"""Cross-modal evaluation of joint speech–text LMs (SUTLM, SpiRit-LM).

Every scored item is ``<bos> [M1] prefix [M2] item`` (one marker where the modality changes, as in
training; :func:`speechlm.lm.interleave.tokens.segments_to_ids`), scored from the item's first
token on. Directions (``--modality``): ``speech`` (all spoken), ``text`` (all written), ``s2t``
(prefix spoken, items written) and ``t2s`` (prefix written, items spoken). Spoken forms come from
the held-out voices and the model's tokenizer (the cached renderings of ``speechlm eval``);
written forms are the words as the corpus alignment labels them (no punctuation), each word
BPE-encoded as in training.

* ``crossmodal`` suite: StoryCloze (t and s) in the four directions, and the cross-modal word
  test (a spoken word then its text vs a distractor word of the same length; and the reverse);
* :func:`representation_similarity`: per layer, mean cosine similarity of the mean hidden state
  of a sentence given as speech and as text, against shuffled pairs (SpiRit-LM's analysis);
* :func:`few_shot_asr` (speech prompt -> forced text) and :func:`tts_wer` (text prompt -> forced
  speech -> vocoder -> Whisper).
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np

from speechlm.core.errors import ConfigError
from speechlm.eval.benchmarks import Benchmark, Pair, lexical_benchmark, storycloze_benchmarks
from speechlm.lm.interleave.tokens import (SPEECH, TEXT, Segment, segments_to_ids, text_words,
                                           word_encoder)

log = logging.getLogger(__name__)

DIRECTIONS = {"speech": (SPEECH, SPEECH), "text": (TEXT, TEXT), "s2t": (SPEECH, TEXT),
              "t2s": (TEXT, SPEECH)}
WORDTEST_VERSION = "crossword-1"


def check_direction(modality: str) -> tuple[str, str]:
    if modality not in DIRECTIONS:
        raise ConfigError(f"--modality {modality!r} must be one of {sorted(DIRECTIONS)}")
    return DIRECTIONS[modality]


def with_direction(bench: Benchmark, modality: str) -> Benchmark:
    """The same pairs scored in ``modality``; the name gains ``:modality`` (the results key)."""
    check_direction(modality)
    return replace(bench, params={**bench.params, "modality": modality,
                                  "label": f"{bench.name}:{modality}"})


def word_test(n: int | None = 200, seed: int = 0) -> Benchmark:
    """A word (prefix) then its own text vs a distractor word with as many letters (items):
    scored ``s2t`` it asks which written word was just spoken, ``t2s`` the reverse."""
    words = sorted({p.good.lower() for p in lexical_benchmark(None, seed).pairs})
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(words))[: n or len(words)]
    by_length: dict[int, list[str]] = {}
    for w in words:
        by_length.setdefault(len(w), []).append(w)
    pairs = []
    for k in order:
        word = words[k]
        others = [w for w in by_length[len(word)] if w != word]
        distractor = others[int(rng.integers(len(others)))]
        pairs.append(Pair(id=f"word-{k:04d}", good=word, bad=distractor, prefix=word))
    return Benchmark("wordtest", WORDTEST_VERSION, tuple(pairs), {"n": n, "seed": seed})


def crossmodal_suite(storycloze_n: int | None, word_n: int | None, seed: int) -> list[Benchmark]:
    t_cloze, s_cloze = storycloze_benchmarks(storycloze_n, seed)
    return ([with_direction(b, m) for b in (t_cloze, s_cloze) for m in DIRECTIONS]
            + [with_direction(word_test(word_n, seed), m) for m in ("s2t", "t2s")])


def text_ids(lm, text: str) -> tuple[int, ...]:
    """BPE ids of a sentence's words, each encoded as in training."""
    encode = word_encoder(lm.text_tokenizer)
    return tuple(i for w in text_words(text) for i in encode(w))


def item_ids(lm, prefix: Segment | None, item: Segment) -> tuple[list[int], int]:
    """``<bos> [M1] prefix [M2] item`` and the position of the item's first token."""
    ids, _ = segments_to_ids(lm.vocab, [prefix, item] if prefix else [item], end=False)
    return ids, len(ids) - len(item.tokens)


def direction_ids(lm, bench: Benchmark, spoken) -> tuple[list, list, list, list]:
    """``(good, bad, good_starts, bad_starts)`` of ``bench`` in its direction; ``spoken`` is
    ``(good units, bad units, prefix lengths)`` from :func:`speechlm.eval.spoken.encode_benchmark`
    (prefix units + item units per item) or None when nothing is spoken."""
    first, second = check_direction(bench.params["modality"])
    out: dict[str, list] = {"good": [], "bad": [], "good_start": [], "bad_start": []}
    for k, pair in enumerate(bench.pairs):
        prefix = None
        if pair.prefix:
            prefix = Segment(first, tuple(spoken[0][k][:spoken[2][k]].tolist()) if first == SPEECH
                             else text_ids(lm, pair.prefix))
        for which, units in (("good", spoken and spoken[0][k]), ("bad", spoken and spoken[1][k])):
            body = Segment(second, tuple(units[spoken[2][k]:].tolist()) if second == SPEECH
                           else text_ids(lm, pair.good if which == "good" else pair.bad))
            ids, start = item_ids(lm, prefix, body)
            out[which].append(ids)
            out[f"{which}_start"].append(start)
    return out["good"], out["bad"], out["good_start"], out["bad_start"]


def needs_speech(bench: Benchmark) -> bool:
    return SPEECH in DIRECTIONS[bench.params["modality"]]


# ---------------------------------------------------------------- representations and generation


def _mean_states(lm, sequences: list[tuple[list[int], int]]) -> np.ndarray:
    """``(N, L + 1, D)``: per sequence and layer, the mean hidden state over positions ``start..``."""
    import torch

    out = []
    with torch.inference_mode():
        for ids, start in sequences:
            states = lm.model(torch.tensor([ids]), output_hidden_states=True).hidden_states
            out.append(torch.stack([h[0, start:].mean(0) for h in states]).float().numpy())
    return np.stack(out)


def representation_similarity(lm, sentences: list[str], units: list[np.ndarray],
                              seed: int = 0) -> dict:
    """Per layer (0 = embeddings), mean cosine similarity between the mean hidden state of each
    sentence given as speech and as text, and the same for shuffled pairs (a derangement)."""
    if len(sentences) < 2:
        raise ConfigError("representation similarity needs at least 2 sentences")
    speech = _mean_states(lm, [item_ids(lm, None, Segment(SPEECH, tuple(u.tolist())))
                               for u in units])
    text = _mean_states(lm, [item_ids(lm, None, Segment(TEXT, text_ids(lm, s)))
                             for s in sentences])
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True).clip(1e-8)  # noqa: E731
    speech, text = unit(speech), unit(text)                        # (N, L + 1, D)
    shift = 1 + int(np.random.default_rng(seed).integers(len(sentences) - 1))
    matched = (speech * text).sum(-1)                               # (N, L + 1)
    shuffled = (speech * np.roll(text, shift, axis=0)).sum(-1)
    return {"n": len(sentences), "layers": list(range(matched.shape[1])),
            "matched": matched.mean(0).round(4).tolist(),
            "shuffled": shuffled.mean(0).round(4).tolist(),
            "gap": (matched - shuffled).mean(0).round(4).tolist()}


def few_shot_asr(lm, sentences: list[str], units: list[np.ndarray], shots: int = 1,
                 max_new_tokens: int = 48) -> dict:
    """Speech prompt -> forced text: each test utterance is preceded by ``shots`` complete
    ``[SPEECH] units [TEXT] words`` examples (the first sentences, not scored); greedy; WER."""
    from speechlm.eval.asr import wer
    from speechlm.generation.modality import generate_modality

    if len(sentences) <= shots:
        raise ConfigError(f"few-shot ASR: {len(sentences)} sentences for {shots} shots")
    context: list[int] = []
    for s, u in zip(sentences[:shots], units[:shots]):
        context += segments_to_ids(lm.vocab, [Segment(SPEECH, tuple(u.tolist())),
                                              Segment(TEXT, text_ids(lm, s))])[0]
    refs, hyps = [], []
    for s, u in zip(sentences[shots:], units[shots:]):
        out = generate_modality(lm, [Segment(SPEECH, tuple(u.tolist()))], TEXT, max_new_tokens,
                                context=context)
        refs.append(" ".join(text_words(s)))
        hyps.append(lm.text_tokenizer.decode(list(out.tokens)).strip())
    return {"n": len(refs), "shots": shots, "wer": wer(refs, hyps),
            "examples": [{"ref": r, "hyp": h} for r, h in list(zip(refs, hyps))[:5]]}


def tts_wer(lm, vocoder, sentences: list[str], max_units: int = 200, temperature: float = 0.8,
            top_k: int | None = 20, seed: int = 0, asr: str = "whisper") -> dict:
    """Text prompt -> forced speech -> vocoder -> ASR; WER against the prompt's words."""
    from speechlm.eval.asr import transcribe, wer
    from speechlm.generation.modality import generate_modality

    refs, hyps = [], []
    for k, s in enumerate(sentences):
        out = generate_modality(lm, [Segment(TEXT, text_ids(lm, s))], SPEECH, max_units,
                                temperature, top_k, seed=seed + k)
        audio = vocoder.synthesize(np.asarray(out.tokens, dtype=np.int64)) if out.tokens else \
            np.zeros(0, dtype=np.float32)
        refs.append(" ".join(text_words(s)))
        hyps.append(transcribe(audio, asr) if audio.size > 1600 else "")
    return {"n": len(refs), "wer": wer(refs, hyps), "asr": asr,
            "examples": [{"ref": r, "hyp": h} for r, h in list(zip(refs, hyps))[:5]]}


def analyses(lm, bench: Benchmark, spoken, vocoder=None, seed: int = 0, shots: int = 1,
             generate_n: int = 30) -> dict:
    """Similarity by layer (all true endings of a StoryCloze benchmark; ``spoken``: its units as
    for :func:`direction_ids`), few-shot ASR and, with a vocoder, TTS WER (``generate_n`` each)."""
    sentences = [p.good for p in bench.pairs]
    units = [good[context:] for good, context in zip(spoken[0], spoken[2])]
    out = {"sentences": bench.name,
           "similarity": representation_similarity(lm, sentences, units, seed),
           "asr": few_shot_asr(lm, sentences[:shots + generate_n], units[:shots + generate_n],
                               shots)}
    if vocoder is not None:
        out["tts"] = tts_wer(lm, vocoder, sentences[:generate_n], seed=seed)
    return out
