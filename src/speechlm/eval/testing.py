"""Tiny in-code fakes for eval tests (as lhotse.testing.dummies): a bigram LM with an inspectable
table, an oracle LM that prefers given sequences, and a training-free energy tokenizer. Not used
by the library itself."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch


class BigramModel(torch.nn.Module):
    """logits[b, t] = table[ids[b, t]]: p(next | current) is a fixed, inspectable table."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = table
        self.config = SimpleNamespace(max_position_embeddings=512)

    def forward(self, input_ids: torch.Tensor):
        return SimpleNamespace(logits=self.table[input_ids])  # (B, T, V)

    def logprob(self, seq: list[int]) -> float:
        lp = torch.log_softmax(self.table, dim=-1)
        return float(sum(lp[a, b] for a, b in zip(seq[:-1], seq[1:])))


class PreferenceModel(torch.nn.Module):
    """A causal LM that knows some sequences: after any prefix of one of them it puts (almost)
    all probability on their next tokens, and on nothing else. Those sequences score about 0 and
    any other sequence at least ``margin`` nats lower, in sum and in per-token mean alike, so a
    harness must rank them first: accuracy 1.0 when they are the good items, 0.0 when the bad."""

    def __init__(self, preferred: list[list[int]], vocab_size: int, margin: float = 30.0) -> None:
        super().__init__()
        self.follow: dict[tuple[int, ...], set[int]] = {}
        for seq in preferred:
            for t in range(1, len(seq)):
                self.follow.setdefault(tuple(seq[:t]), set()).add(int(seq[t]))
        self.vocab_size, self.margin = vocab_size, margin
        self.config = SimpleNamespace(max_position_embeddings=4096)

    def forward(self, input_ids: torch.Tensor):
        logits = torch.zeros(*input_ids.shape, self.vocab_size)  # (B, T, V)
        for b, row in enumerate(input_ids.tolist()):
            for t in range(len(row)):
                for token in self.follow.get(tuple(row[:t + 1]), ()):
                    logits[b, t, token] = self.margin
        return SimpleNamespace(logits=logits)


class FakeVocab:
    def __init__(self, n_units: int) -> None:
        self.n_units = n_units
        self.bos_id, self.eos_id = 0, 1

    def family(self, name: str):
        return SimpleNamespace(size=self.n_units)


def fake_speech_lm(n_units: int = 8, seed: int = 0, tokenizer_dir: str | None = None):
    """BOS=0, EOS=1, unit u -> id u + 2; a random bigram table."""
    g = torch.Generator().manual_seed(seed)
    model = BigramModel(torch.randn(n_units + 2, n_units + 2, generator=g))
    return SimpleNamespace(model=model, vocab=FakeVocab(n_units), kind="speech",
                           tokenizer_dir=tokenizer_dir,
                           encode_units=lambda units: [0] + [int(u) + 2 for u in units],
                           decode_units=lambda ids: [i - 2 for i in ids if i >= 2])


class EnergyTokenizer:
    """20 ms frames -> unit = quantized log energy (deterministic, no training)."""

    def __init__(self, vocab_size: int = 8) -> None:
        self.vocab_size = vocab_size
        self.frame_rate = 50

    def encode(self, samples: np.ndarray, dedup: bool = True):
        frames = samples[: len(samples) // 320 * 320].reshape(-1, 320)
        energy = np.log10(np.mean(frames ** 2, axis=1) + 1e-8)
        units = np.clip(((energy + 8) / 8 * self.vocab_size).astype(np.int64), 0,
                        self.vocab_size - 1)
        if not dedup:
            return units, np.ones_like(units)
        keep = np.r_[True, units[1:] != units[:-1]]
        starts = np.flatnonzero(keep)
        return units[keep], np.diff(np.r_[starts, len(units)]).astype(np.int64)
