"""Generation metrics: continue spoken prompts, vocode, transcribe, then GenPPL and diversity.

GenPPL-like: perplexity of the ASR transcripts under a text LM (lower = more text-like, but a
degenerate repetitive output can also score low, so read it with the diversity numbers).
distinct-n: unique word n-grams / all n-grams over the transcripts. auto-BLEU (GSLM): the share
of a transcript's n-grams that occur elsewhere in the same transcript (higher = more repetitive).
"""

from __future__ import annotations

import logging
import math
from collections import Counter

import numpy as np

from speechlm.generation.pipeline import Continuation, Sampling, SpeechPipeline

log = logging.getLogger(__name__)


def _ngrams(words: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]


def distinct_n(texts: list[str], n: int = 2) -> float:
    """Unique n-grams over all n-grams (word level, all texts together); NaN if there are none."""
    grams = [g for t in texts for g in _ngrams(t.lower().split(), n)]
    return len(set(grams)) / len(grams) if grams else float("nan")


def auto_bleu(texts: list[str], n: int = 2) -> float:
    """Share of n-grams that repeat inside their own text, pooled over texts; NaN if none."""
    hits = total = 0
    for text in texts:
        grams = _ngrams(text.lower().split(), n)
        counts = Counter(grams)
        hits += sum(1 for g in grams if counts[g] > 1)
        total += len(grams)
    return hits / total if total else float("nan")


def text_perplexity(text_lm, texts: list[str]) -> float:
    """exp(mean negative log-likelihood per token) of ``texts`` under a text LM."""
    from speechlm.eval.scoring import sequence_logprobs

    ids = [text_lm.encode_text(t) for t in texts if t.strip()]
    ids = [s for s in ids if len(s) > 1]
    if not ids:
        return float("nan")
    scores = sequence_logprobs(text_lm.model, ids)
    nll = -sum(s.total for s in scores) / sum(s.n_tokens for s in scores)
    return float(math.exp(nll))


def continue_prompts(lm, tokenizer, vocoder, prompts: list[np.ndarray], prompt_seconds: float = 2.0,
                     max_new_tokens: int = 100, temperature: float = 0.8, top_k: int | None = 50,
                     seed: int = 0, transcribe: bool = True,
                     stop_at_eos: bool = False) -> list[Continuation]:
    """Continue the first ``prompt_seconds`` of each prompt by ``max_new_tokens`` units (GSLM
    style: fixed length; tiny LMs trained on short utterances otherwise emit EOS within a few
    units) through the generation pipeline; vocode and (optionally) transcribe the continuation."""
    pipeline = SpeechPipeline(lm, tokenizer, vocoder)
    sampling = Sampling(max_new_tokens, temperature, top_k, stop_at_eos=stop_at_eos)
    out = [pipeline.continue_audio(samples, sampling, prompt_seconds, seed=seed + k)
           for k, samples in enumerate(prompts)]
    if transcribe:
        from speechlm.eval.asr import transcribe as asr

        for c in out:
            # transcribe only the generated part: the audio after the vocoded prompt
            tail = c.audio[len(c.prompt_audio):] if c.units else c.audio[:0]
            c.transcript = asr(tail) if tail.size > 1600 else ""  # < 0.1 s: nothing to hear
    return out


def generation_metrics(continuations: list[Continuation], text_lm=None) -> dict:
    """GenPPL (when a text LM is given), distinct-1/2, auto-BLEU-2 of transcripts, and units."""
    texts = [c.transcript for c in continuations]
    unit_texts = [" ".join(map(str, c.units)) for c in continuations]
    metrics = {"n": len(continuations),
               "words_per_sample": float(np.mean([len(t.split()) for t in texts])) if texts else 0.0,
               "distinct_1": distinct_n(texts, 1), "distinct_2": distinct_n(texts, 2),
               "auto_bleu_2": auto_bleu(texts, 2),
               "unit_distinct_2": distinct_n(unit_texts, 2),
               "unit_auto_bleu_2": auto_bleu(unit_texts, 2)}
    if text_lm is not None:
        metrics["gen_ppl"] = text_perplexity(text_lm, texts)
    return metrics
