"""Tokenizer quality: phone ABX (within/across speaker), PNMI and unit bitrate.

* **ABX** (Schatz et al. 2013; ZeroSpeech): for triplets of phone segments where A and X are the
  same phone and B a different one, count an error when DTW(A, X) > DTW(B, X) (ties count 1/2).
  *Within*: A, B, X from one speaker. *Across*: A, B from one speaker, X from another. Segments
  come from the corpus phone alignments; frame distance is the cosine distance (for discrete
  units that is 0 for the same unit and 1 otherwise, i.e. one-hot vectors), averaged along the
  DTW path. A fixed-size seeded sample of triplets keeps it fast; silence is excluded.
* **PNMI** (HuBERT paper): I(phone; unit) / H(phone) from frame-level co-occurrence counts.
* **Bitrate** (Nguyen et al. 2022): deduplicated units per second x unigram entropy of units.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from speechlm.core.errors import DataError
from speechlm.core.progress import progress_bar
from speechlm.core.threads import with_torch_threads

log = logging.getLogger(__name__)

SILENCES = frozenset({"sil", "sp", "spn", ";", "_", ""})


@dataclass(frozen=True)
class Segment:
    """One phone occurrence: who said it, which phone, and its frames (n, D)."""

    speaker: str
    phone: str
    frames: np.ndarray


def phone_frames(phones: list[tuple[str, float, float]], n_frames: int, rate: float) -> list[str | None]:
    """Label of the phone covering each frame centre ``(i + 0.5) / rate`` (None where none does)."""
    labels: list[str | None] = [None] * n_frames
    for label, start, end in phones:
        first = max(0, math.ceil(start * rate - 0.5))
        last = min(n_frames, math.ceil(end * rate - 0.5))
        for i in range(first, last):
            labels[i] = label
    return labels


def phone_segments(phones, n_frames: int, rate: float) -> list[tuple[str, int, int]]:
    """(label, first, last_exclusive) frame ranges; a phone shorter than a frame gets its nearest frame."""
    out = []
    for label, start, end in phones:
        first = max(0, math.ceil(start * rate - 0.5))
        last = min(n_frames, math.ceil(end * rate - 0.5))
        if last <= first:
            first = min(n_frames - 1, max(0, int((start + end) / 2 * rate)))
            last = first + 1
        if n_frames > 0:
            out.append((label, first, last))
    return out


def pnmi(phones: np.ndarray, units: np.ndarray) -> float:
    """Phone-normalised mutual information I(P; U) / H(P) of two aligned integer label arrays."""
    phones = np.asarray(phones)
    units = np.asarray(units)
    if phones.size == 0 or phones.shape != units.shape:
        raise DataError(f"pnmi: need equal non-empty label arrays, got {phones.shape} and {units.shape}")
    _, p_idx = np.unique(phones, return_inverse=True)
    _, u_idx = np.unique(units, return_inverse=True)
    joint = np.zeros((p_idx.max() + 1, u_idx.max() + 1))
    np.add.at(joint, (p_idx, u_idx), 1.0)
    joint /= joint.sum()
    p_p, p_u = joint.sum(axis=1), joint.sum(axis=0)
    nz = joint > 0
    mi = float((joint[nz] * np.log(joint[nz] / np.outer(p_p, p_u)[nz])).sum())
    h_p = float(-(p_p[p_p > 0] * np.log(p_p[p_p > 0])).sum())
    return mi / h_p if h_p > 0 else 0.0


def bitrate(unit_sequences: list[np.ndarray], seconds: float) -> dict:
    """Deduplicated units/s x unigram entropy (bits/unit) of the sequences given (already deduplicated)."""
    flat = np.concatenate([np.asarray(u) for u in unit_sequences]) if unit_sequences else np.zeros(0)
    if flat.size == 0 or seconds <= 0:
        raise DataError("bitrate: no units or zero duration")
    _, counts = np.unique(flat, return_counts=True)
    p = counts / counts.sum()
    entropy = float(-(p * np.log2(p)).sum())
    rate = flat.size / seconds
    return {"bitrate": rate * entropy, "tokens_per_second": rate, "unit_entropy_bits": entropy,
            "units_used": int(counts.size)}


def dtw_cost(dist: np.ndarray) -> float:
    """Average frame distance along the best DTW path (steps right, down, diagonal)."""
    n, m = dist.shape
    cost = np.full((n + 1, m + 1), np.inf)
    length = np.zeros((n + 1, m + 1))
    cost[0, 0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            options = ((cost[i - 1, j - 1], length[i - 1, j - 1]), (cost[i - 1, j], length[i - 1, j]),
                       (cost[i, j - 1], length[i, j - 1]))
            best = min(options, key=lambda o: o[0])
            cost[i, j] = best[0] + dist[i - 1, j - 1]
            length[i, j] = best[1] + 1
    return float(cost[n, m] / length[n, m])


def cosine_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, D), (m, D) -> (n, m) 1 - cos; zero vectors are at distance 1 from everything."""
    an = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-8)
    bn = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-8)
    return np.clip(1.0 - an @ bn.T, 0.0, 2.0)


def sample_triplets(segments: list[Segment], n: int, across: bool, seed: int) -> list[tuple[int, int, int]]:
    """Indices (A, B, X): A, X same phone, B another phone; A, B same speaker; X same speaker
    (within) or another speaker (across). Sampled uniformly over valid (speaker, A-phone, B-phone)."""
    rng = np.random.default_rng(seed)
    by_sp: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, seg in enumerate(segments):
        if seg.phone not in SILENCES:
            by_sp[(seg.speaker, seg.phone)].append(i)
    speakers = sorted({s for s, _ in by_sp})
    phones_of = {s: sorted(p for sp, p in by_sp if sp == s) for s in speakers}
    combos = []  # (speaker of A/B, phone a, phone b, speaker of X)
    for s in speakers:
        for a in phones_of[s]:
            x_speakers = [t for t in speakers if t != s and (t, a) in by_sp] if across else \
                ([s] if len(by_sp[(s, a)]) >= 2 else [])
            if x_speakers:
                combos.append((s, a, x_speakers))
    if not combos:
        return []
    out = []
    for _ in range(n):
        s, a, x_speakers = combos[rng.integers(len(combos))]
        others = [p for p in phones_of[s] if p != a]
        if not others:
            continue
        b = others[rng.integers(len(others))]
        t = x_speakers[rng.integers(len(x_speakers))]
        pool_a = by_sp[(s, a)]
        ia = pool_a[rng.integers(len(pool_a))]
        pool_x = [i for i in by_sp[(t, a)] if i != ia]
        ix = pool_x[rng.integers(len(pool_x))]
        pool_b = by_sp[(s, b)]
        out.append((ia, pool_b[rng.integers(len(pool_b))], ix))
    return out


def abx_error(segments: list[Segment], triplets: list[tuple[int, int, int]]) -> float:
    """Fraction of triplets where X is closer to B than to A (ties count 1/2)."""
    if not triplets:
        raise DataError("ABX: no valid triplets (need repeated phones per speaker, and 2+ speakers "
                        "for the across condition)")
    errors = 0.0
    for ia, ib, ix in triplets:
        a, b, x = segments[ia].frames, segments[ib].frames, segments[ix].frames
        d_ax = dtw_cost(cosine_distance(a, x))
        d_bx = dtw_cost(cosine_distance(b, x))
        errors += 1.0 if d_ax > d_bx else 0.5 if d_ax == d_bx else 0.0
    return errors / len(triplets)


@with_torch_threads
def evaluate_tokenizer(tokenizer_dir: str | Path, corpus_dir: str | Path, split: str = "heldout",
                       n_triplets: int = 2000, seed: int = 0, max_utterances: int | None = None,
                       threads: int = 1, show_progress: bool = True) -> dict:
    """ABX (on units and on continuous features), PNMI and bitrate on ``split`` of a corpus."""
    from speechlm.data.corpus import Corpus
    from speechlm.tokenizers import dedup, load_tokenizer

    tok = load_tokenizer(tokenizer_dir)
    corpus = Corpus(corpus_dir)
    rate = tok.frame_rate
    n_utts = corpus.table(split, ["id"]).num_rows
    if max_utterances is not None:
        n_utts = min(n_utts, max_utterances)
    if n_utts == 0:
        raise DataError(f"{corpus_dir}: split {split!r} is empty")
    unit_segments, feat_segments, frame_phones, frame_units, deduped = [], [], [], [], []
    seconds = 0.0
    eye = np.eye(tok.vocab_size, dtype=np.float32)
    with progress_bar(f"encoding {split}", total=n_utts, unit="utts", enabled=show_progress) as advance:
        for k, utt in enumerate(corpus.utterances(split)):
            if k >= n_utts:
                break
            if not utt.phones:
                raise DataError(f"{corpus_dir}: utterance {utt.id!r} has no phone alignment")
            samples = utt.samples()
            feats = tok.features(samples)
            units = tok.quantizer.assign_normalized(feats)
            seconds += samples.size / 16000
            deduped.append(dedup(units)[0])
            labels = phone_frames(utt.phones, units.size, rate)
            keep = [i for i, lab in enumerate(labels) if lab is not None]
            frame_phones.extend(labels[i] for i in keep)
            frame_units.extend(units[keep].tolist())
            for label, first, last in phone_segments(utt.phones, units.size, rate):
                unit_segments.append(Segment(utt.speaker, label, eye[units[first:last]]))
                feat_segments.append(Segment(utt.speaker, label, feats[first:last]))
            advance()
    result = {"tokenizer": str(Path(tokenizer_dir).resolve()), "features": tok.features_name,
              "layer": tok.extractor.layer, "units": tok.vocab_size, "split": split,
              "utterances": n_utts, "seconds": round(seconds, 1), "triplets": n_triplets}
    for name, across in (("within", False), ("across", True)):
        triplets = sample_triplets(unit_segments, n_triplets, across, seed)
        result[f"abx_{name}"] = abx_error(unit_segments, triplets)
        result[f"abx_{name}_features"] = abx_error(feat_segments, triplets)
    phone_ids = {p: i for i, p in enumerate(sorted(set(frame_phones)))}
    result["pnmi"] = pnmi(np.array([phone_ids[p] for p in frame_phones]), np.array(frame_units))
    result.update(bitrate(deduped, seconds))
    return result

