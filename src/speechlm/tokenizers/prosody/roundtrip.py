"""Round trip audio -> prosody tokens -> F0 contour, scored in cents against the measured F0.

The reference is the mean voiced F0 of each 20 ms frame. Errors are taken over frames voiced in
both the reference and the decoded contour; the pitch VQ also reports how often it gets voicing
right. ``flat_median_cents`` is a zero-information baseline from the same run: every frame at the
offset the tokenizer subtracted (the speaker's or the utterance's mean F0).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from speechlm.core.errors import ConfigError
from speechlm.core.progress import progress_bar
from speechlm.core.threads import with_torch_threads
from speechlm.data.corpus import Corpus
from speechlm.tokenizers.prosody.common import FRAME_RATE
from speechlm.tokenizers.prosody.f0 import cents, extract_f0, unit_f0


def _summary(errors: list[np.ndarray]) -> dict:
    e = np.concatenate(errors) if errors else np.zeros(0)
    if not e.size:
        return {"median_cents": None, "mean_cents": None, "p90_cents": None, "frames": 0}
    return {"median_cents": float(np.median(e)), "mean_cents": float(e.mean()),
            "p90_cents": float(np.percentile(e, 90)), "frames": int(e.size)}


@with_torch_threads
def roundtrip_error(tokenizer_dir: str | Path, corpus_dir: str | Path, split: str = "heldout",
                    max_utterances: int | None = None, threads: int = 1,
                    show_progress: bool = True) -> dict:
    """Median/mean/p90 cents of the decoded contour on ``split`` (held-out voices by default)."""
    from speechlm.tokenizers.prosody import load_prosody_tokenizer

    tok = load_prosody_tokenizer(tokenizer_dir)
    if tok.kind == "style":
        raise ConfigError(f"{tokenizer_dir}: style tokens do not decode to an F0 contour")
    units_tok = tok.load_units() if tok.kind == "unit-prosody" else None
    corpus = Corpus(corpus_dir)
    total = corpus.table(split, ["id"]).num_rows
    if max_utterances is not None:
        total = min(total, max_utterances)
    rate = tok.frame_rate if units_tok is not None else FRAME_RATE
    contour, flat, unit, voicing = [], [], [], []
    with progress_bar(f"round trip {split}", total=total, unit="utts",
                      enabled=show_progress) as advance:
        for i, utt in enumerate(corpus.utterances(split)):
            if i >= total:
                break
            samples = utt.samples()
            f0 = extract_f0(samples, tok.f0_config)
            reference = unit_f0(f0, tok.f0_config.hop_s,
                                np.ones(int(f0.size * tok.f0_config.hop_s * rate + 1e-9)), rate)
            if units_tok is not None:
                p = tok.encode_f0(f0, *units_tok.encode(samples), speaker=utt.speaker)
                decoded = tok.contour(p.f0_tokens, p.durations, p.offset)[:reference.size]
                voiced = p.f0_hz > 0
                unit.append(cents(tok.decode_f0(p.f0_tokens, p.offset)[voiced], p.f0_hz[voiced]))
                offset = p.offset
            else:
                codes, offset = tok.encode_f0(f0, utt.speaker)
                decoded = tok.decode(codes, offset, n_frames=reference.size)
                voicing.append((decoded > 0) == (reference > 0))
            both = (reference[:decoded.size] > 0) & (decoded > 0)
            contour.append(cents(decoded[both], reference[:decoded.size][both]))
            flat.append(cents(np.full(both.sum(), np.exp(offset)), reference[:decoded.size][both]))
            advance()
    result = {"tokenizer": str(tok.path), "kind": tok.kind, "corpus": str(corpus.root),
              "split": split, "utterances": total, **_summary(contour),
              "flat_median_cents": _summary(flat)["median_cents"]}
    if unit:
        result["unit_median_cents"] = _summary(unit)["median_cents"]
    if voicing:
        result["voicing_accuracy"] = float(np.concatenate(voicing).mean())
    return result
