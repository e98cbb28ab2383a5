"""Pairwise log-likelihood scoring: the model should give the good item a higher likelihood.

Works for any causal LM whose forward returns ``.logits`` (B, T, V): speech LMs score unit
sequences, text LMs score BPE sequences. Sequences start with BOS. Every later token is scored,
or, for items with a shared context (StoryCloze), only the continuation after it: ``start`` is
the position of the first scored token, so sums and per-token means cover the ending alone.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

TIE_TOLERANCE = 1e-6  # absolute; batched float math can differ in the last bits


@dataclass(frozen=True)
class SequenceScore:
    total: float   # sum of log p(token | everything before it) over scored tokens (nats)
    n_tokens: int  # number of scored tokens (length - start)

    @property
    def mean(self) -> float:
        return self.total / max(self.n_tokens, 1)


def _windows(length: int, window: int | None) -> list[tuple[int, int, int]]:
    """(start, end, score_from) pieces covering a sequence: the first piece scores tokens
    1..window-1, later pieces score the next window/2 tokens with window/2 tokens of context."""
    if window is None or length <= window:
        return [(0, length, 1)]
    pieces, done, stride = [(0, window, 1)], window, max(1, window // 2)
    while done < length:
        end = min(done + stride, length)
        pieces.append((end - window, end, done - (end - window)))
        done = end
    return pieces


def _batches(lengths: list[int], max_batch_tokens: int) -> list[list[int]]:
    """Indices grouped into batches of similar length whose padded size fits the budget."""
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for k in sorted(range(len(lengths)), key=lengths.__getitem__):
        if current and (len(current) + 1) * max(longest, lengths[k]) > max_batch_tokens:
            batches.append(current)
            current, longest = [], 0
        current.append(k)
        longest = max(longest, lengths[k])
    if current:
        batches.append(current)
    return batches


def _score_batch(model, batch: list[tuple[int, list[int], int]], device: str
                 ) -> list[tuple[int, float, int]]:
    """(parent, summed log-prob, scored tokens) of each (parent, ids, score_from) piece."""
    import torch

    width = max(len(ids) for _, ids, _ in batch)
    ids = torch.zeros((len(batch), width), dtype=torch.long)     # (B, T)
    scored = torch.zeros((len(batch), width), dtype=torch.bool)  # targets to score
    for r, (_, seq, score_from) in enumerate(batch):
        ids[r, :len(seq)] = torch.tensor(seq, dtype=torch.long)
        scored[r, score_from:len(seq)] = True
    with torch.inference_mode():
        logits = model(ids.to(device)).logits.float().cpu()          # (B, T, V)
    logp = torch.log_softmax(logits[:, :-1], dim=-1)                 # (B, T-1, V)
    target = ids[:, 1:].unsqueeze(-1)                                # (B, T-1, 1)
    token_lp = logp.gather(-1, target).squeeze(-1) * scored[:, 1:]   # (B, T-1)
    sums, counts = token_lp.sum(dim=1).tolist(), scored[:, 1:].sum(dim=1).tolist()
    return [(parent, float(sums[r]), int(counts[r])) for r, (parent, _, _) in enumerate(batch)]


def sequence_logprobs(model, sequences: list[list[int]], max_batch_tokens: int = 16384,
                      window: int | None = None, device: str = "cpu",
                      starts: list[int] | None = None, threads: int = 1) -> list[SequenceScore]:
    """Log-likelihood of each sequence from position ``starts[i]`` on (default 1: all but BOS),
    in batches of similar length (right padding: a causal model never looks right, so padded
    positions cannot change the real ones).

    Sequences longer than ``window`` (the context the model was trained on) are scored with a
    sliding window: every token is scored once, with at least window/2 tokens of context.
    ``threads > 1`` scores whole batches in parallel, each on one torch thread: as fast as
    intra-op threads on idle cores, and not 2-5x slower than one thread on busy ones (intra-op
    threads wait on each other). Results are identical either way.
    """
    from speechlm.core.threads import torch_threads

    starts = [1] * len(sequences) if starts is None else list(starts)
    if len(starts) != len(sequences):
        raise ValueError(f"{len(starts)} starts for {len(sequences)} sequences")
    pieces = []  # (parent index, token ids, position of the first scored token in the piece)
    for i, seq in enumerate(sequences):
        if not 1 <= starts[i] <= len(seq):
            raise ValueError(f"sequence {i}: start {starts[i]} outside 1..{len(seq)}")
        for a, b, score_from in _windows(len(seq), window):
            score_from = max(score_from, starts[i] - a)
            if score_from < b - a:  # pieces that hold only unscored context are skipped
                pieces.append((i, list(seq[a:b]), score_from))
    batches = [[pieces[k] for k in batch]
               for batch in _batches([len(ids) for _, ids, _ in pieces], max_batch_tokens)]
    if threads > 1 and len(batches) > 1:
        with torch_threads(1), ThreadPoolExecutor(threads) as pool:
            scored = list(pool.map(lambda batch: _score_batch(model, batch, device), batches))
    else:
        scored = [_score_batch(model, batch, device) for batch in batches]
    totals = [0.0] * len(sequences)
    counts = [0] * len(sequences)
    for rows in scored:  # batch order, whatever the threads: the same sums
        for parent, total, count in rows:
            totals[parent] += total
            counts[parent] += count
    return [SequenceScore(t, c) for t, c in zip(totals, counts)]


def compare(good: list[SequenceScore], bad: list[SequenceScore], how: str = "sum",
            identical: list[bool] | None = None) -> np.ndarray:
    """Per-pair outcome: 1 if good scores higher, 0 if lower, 0.5 for a tie."""
    if how not in ("sum", "mean"):
        raise ValueError(f"how must be 'sum' or 'mean', got {how!r}")
    g = np.array([s.total if how == "sum" else s.mean for s in good], dtype=np.float64)
    b = np.array([s.total if how == "sum" else s.mean for s in bad], dtype=np.float64)
    outcome = np.where(g > b, 1.0, 0.0)
    tie = np.abs(g - b) <= TIE_TOLERANCE
    if identical is not None:
        tie |= np.asarray(identical, dtype=bool)
    outcome[tie] = 0.5
    return outcome


def accuracy_ci(outcomes: np.ndarray, n_boot: int = 1000, seed: int = 0,
                level: float = 0.95) -> tuple[float, tuple[float, float]]:
    """Mean accuracy and a percentile bootstrap interval over pairs."""
    outcomes = np.asarray(outcomes, dtype=np.float64)
    if outcomes.size == 0:
        return float("nan"), (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, outcomes.size, size=(n_boot, outcomes.size))
    boots = outcomes[idx].mean(axis=1)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(boots, [alpha, 1 - alpha])
    return float(outcomes.mean()), (float(lo), float(hi))


def summarize(outcomes: np.ndarray, groups: list[str] | None = None, seed: int = 0) -> dict:
    """``{accuracy, ci95, n, ties}`` plus the same per group when there are several groups."""
    acc, ci = accuracy_ci(outcomes, seed=seed)
    result = {"accuracy": acc, "ci95": list(ci), "n": int(len(outcomes)),
              "ties": int(np.sum(np.asarray(outcomes) == 0.5))}
    if groups is not None and len(set(groups)) > 1:
        per = {}
        arr = np.asarray(groups)
        for g in sorted(set(groups)):
            sub = np.asarray(outcomes)[arr == g]
            g_acc, g_ci = accuracy_ci(sub, seed=seed)
            per[g] = {"accuracy": g_acc, "ci95": list(g_ci), "n": int(sub.size)}
        result["groups"] = per
    return result


def score_pairs(model, good_ids: list[list[int]], bad_ids: list[list[int]],
                groups: list[str] | None = None, window: int | None = None,
                max_batch_tokens: int = 16384, seed: int = 0, device: str = "cpu",
                good_starts: list[int] | None = None, bad_starts: list[int] | None = None,
                threads: int = 1) -> dict:
    """Score pairs of token sequences; primary metric compares sums, ``mean`` compares per-token
    means, both over the scored tokens only (from ``*_starts``, default all but BOS).

    Returns the summary dict (see :func:`summarize`) with ``accuracy_mean``/``ci95_mean`` and
    ``mean_tokens`` (scored tokens per item)."""
    if len(good_ids) != len(bad_ids):
        raise ValueError(f"{len(good_ids)} good vs {len(bad_ids)} bad sequences")
    starts = None
    if good_starts is not None or bad_starts is not None:
        starts = list(good_starts or [1] * len(good_ids)) + list(bad_starts or [1] * len(bad_ids))
    scores = sequence_logprobs(model, list(good_ids) + list(bad_ids), max_batch_tokens, window,
                               device, starts, threads)
    good, bad = scores[:len(good_ids)], scores[len(good_ids):]
    identical = [list(g) == list(b) for g, b in zip(good_ids, bad_ids)]
    by_sum = compare(good, bad, "sum", identical)
    by_mean = compare(good, bad, "mean", identical)
    result = summarize(by_sum, groups, seed)
    mean_acc, mean_ci = accuracy_ci(by_mean, seed=seed)
    result.update({"accuracy_mean": mean_acc, "ci95_mean": list(mean_ci),
                   "mean_tokens": float(np.mean([s.n_tokens for s in scores])) if scores else 0.0})
    return result
