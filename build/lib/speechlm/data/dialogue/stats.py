"""Corpus statistics from dialogue events: counts, silence-mode share, turn-taking gaps."""

from __future__ import annotations

from collections import Counter

import numpy as np

from speechlm.data.dialogue.record import DIALOGUE_SPLITS, SYSTEM, USER, Dialogue

GAP_BINS = np.round(np.arange(-1.0, 2.01, 0.25), 2)  # seconds; negative = overlapped transition


def floor_transfers(dialogue: Dialogue) -> list[tuple[int, float]]:
    """(new speaker's channel, offset in s) for each change of speaker between consecutive
    turns with no non-query audio between them: next turn start minus previous turn end,
    negative when they overlap (an early reply or a barge-in)."""
    turns = sorted(dialogue.of("turn"), key=lambda e: e.start)
    non_query = dialogue.of("non_query")
    return [(b.channel, b.start - a.end) for a, b in zip(turns, turns[1:])
            if a.channel != b.channel and not any(a.end <= n.start < b.start for n in non_query)]


def summarize(values: list[float]) -> dict:
    """Count, mean, percentiles, share below zero and a histogram over :data:`GAP_BINS`
    (values beyond them are counted in the first or last bin)."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return {"n": 0}
    p5, p25, p50, p75, p95 = np.percentile(x, [5, 25, 50, 75, 95])
    counts, _ = np.histogram(np.clip(x, GAP_BINS[0], GAP_BINS[-1]), bins=GAP_BINS)
    return {"n": int(x.size), "mean": float(x.mean()), "p5": float(p5), "p25": float(p25),
            "median": float(p50), "p75": float(p75), "p95": float(p95),
            "overlapped_share": float((x < 0).mean()),
            "histogram": {"edges_s": GAP_BINS.tolist(), "counts": counts.tolist()}}


def corpus_stats(dialogues: list[Dialogue]) -> dict:
    """What a dialogue corpus holds; written to meta.json and printed by ``corpus info``."""
    splits = {}
    for split in DIALOGUE_SPLITS:
        rows = [d for d in dialogues if d.split == split]
        splits[split] = {"dialogues": len(rows), "hours": sum(d.duration for d in rows) / 3600,
                         "speakers": len({s for d in rows for s in d.speakers})}
    events = [e for d in dialogues for e in d.events]
    counts = Counter(f"{e.kind}:{e.label}" for e in events)
    by_kind = Counter(e.kind for e in events)
    stops = [1000 * e.duration for e in events if e.kind == "interruption"]
    query_s = sum(e.duration for e in events if e.kind == "turn" and e.channel == USER)
    non_query_s = sum(e.duration for e in events if e.kind == "non_query")
    transfers = [t for d in dialogues for t in floor_transfers(d)]
    hours = sum(d.duration for d in dialogues) / 3600
    return {
        "dialogues": len(dialogues), "hours": hours,
        "mean_duration_s": hours * 3600 / max(1, len(dialogues)),
        "speakers": len({s for d in dialogues for s in d.speakers}),
        "splits": splits,
        "turns": {"query": counts["turn:query"], "response": counts["turn:response"]},
        "pauses": by_kind["pause"],
        "backchannels": by_kind["backchannel"],
        "overlaps": {label: counts[f"overlap:{label}"]
                     for label in ("turn_start", "backchannel", "interruption")},
        "interruptions": by_kind["interruption"],
        "interruption_stop_ms": {"mean": float(np.mean(stops)), "max": float(np.max(stops))}
        if stops else {},
        "non_query": {label.split(":", 1)[1]: n for label, n in sorted(counts.items())
                      if label.startswith("non_query:")},
        "non_query_share": {
            "segments": by_kind["non_query"] / max(1, by_kind["non_query"] + counts["turn:query"]),
            "user_channel_seconds": non_query_s / max(1e-9, non_query_s + query_s)},
        "gaps_s": {"user_to_system": summarize([g for c, g in transfers if c == SYSTEM]),
                   "system_to_user": summarize([g for c, g in transfers if c == USER])},
        "words": [sum(len(d.words[c]) for d in dialogues) for c in (USER, SYSTEM)],
    }
