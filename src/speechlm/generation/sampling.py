"""Autoregressive sampling with temperature, top-k, top-p (nucleus) and the HF KV cache.

:class:`Decoder` is the one incremental-decoding primitive: it feeds model ids (one row for a
plain causal LM, ``R`` rows for a multi-stream model) and keeps the KV cache between calls, so a
prompt runs through the model once and every new step costs one forward over a single position.
:func:`generate` (one token stream, stops at EOS) and :func:`generate_codes` (any layout, K
streams, per-stream temperature/top-k) are built on it, and so is the streaming
:class:`~speechlm.generation.session.Session`. Seeded with a private ``torch.Generator`` (no
global state).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from transformers import PreTrainedModel

from speechlm.core.errors import ConfigError
from speechlm.lm.incremental import IncrementalLlama, supports
from speechlm.lm.sequences import sequence_frame
from speechlm.lm.streams import TokenSpace


def filter_logits(logits: torch.Tensor, top_k: int | None, top_p: float | None) -> torch.Tensor:
    """Mask (set -inf) all but the top-k tokens and the smallest set with mass >= top_p. (B, V)."""
    if top_k is not None and top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = sorted_logits.softmax(-1)
        # drop a token when the mass *before* it already reaches top_p (the first always stays)
        drop = probs.cumsum(-1) - probs >= top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return logits


def sample(logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float | None,
           gen: torch.Generator) -> int:
    """One token id from ``(1, V)`` logits; ``temperature=0`` is greedy."""
    if temperature == 0:
        return int(logits.argmax(-1))
    logits = filter_logits(logits / temperature, top_k, top_p)
    return int(torch.multinomial(logits.softmax(-1), 1, generator=gen))


def check_sampling(temperature: float, max_new: int, top_p: float | None) -> None:
    if temperature < 0 or max_new < 0 or (top_p is not None and not 0 < top_p <= 1):
        raise ConfigError(f"generate: temperature={temperature} must be >= 0, max new tokens="
                          f"{max_new} >= 0, top_p={top_p} in (0, 1]")


class NextStep:
    """The model's prediction for the next step, row by row.

    Without a depth decoder every row's logits come from one forward; with one, row ``r`` depends
    on the tokens chosen for rows ``< r`` of the same step (``chosen``).
    """

    def __init__(self, model: PreTrainedModel, hidden: torch.Tensor | None, logits: torch.Tensor) -> None:
        self.model, self.hidden, self.logits = model, hidden, logits  # logits (R, V)

    def row(self, row: int, chosen: Sequence[int] | None = None) -> torch.Tensor:
        """``(1, V)`` float logits of ``row``."""
        if self.hidden is None or getattr(self.model, "depth", None) is None or row == 0:
            return self.logits[row:row + 1]
        next_ids = torch.tensor(list(chosen), device=self.hidden.device)[None, :, None]  # (1, R, 1)
        return self.model.row_logits(self.hidden, next_ids)[0, row, -1:].float()


class Decoder:
    """Incremental decoding with the KV cache kept between :meth:`feed` calls.

    A plain Llama LM, or a multi-stream model's Llama backbone when it has no depth decoder,
    runs through :class:`~speechlm.lm.incremental.IncrementalLlama` (the same logits, bit for
    bit, for a fraction of HF's per-call overhead); ``lean=False``, or any other model, runs the
    HF forward with its ``DynamicCache``."""

    def __init__(self, model: PreTrainedModel, lean: bool = True) -> None:
        self.model = model
        self.rows = len(getattr(model.config, "row_vocab_sizes", None) or [0])
        self.limit = getattr(model.config, "max_position_embeddings", None)
        self.device = next(model.parameters()).device
        self.lean = IncrementalLlama(model) if lean and supports(model) else None
        self.reset()

    def reset(self) -> None:
        """Forget everything fed so far (a new utterance or a new session)."""
        self.cache = None
        self.length = 0
        if self.lean is not None:
            self.lean.reset()

    @torch.no_grad()
    def feed(self, ids: Sequence[int] | np.ndarray) -> NextStep:
        """Append ``ids`` (``(n,)`` for one row, ``(R, n)`` for R rows); returns the next step."""
        ids = torch.as_tensor(np.asarray(ids, dtype=np.int64), device=self.device)
        ids = ids.reshape(self.rows, -1) if self.rows > 1 else ids.reshape(1, -1)
        n = ids.shape[-1]
        if n == 0:
            raise ConfigError("generate: nothing to feed (the prompt needs at least its start token)")
        if self.limit is not None and self.length + n > self.limit:
            raise ConfigError(f"generate: {self.length + n} positions exceed the model's context "
                              f"of {self.limit}")
        self.length += n
        if self.rows == 1:
            if self.lean is not None:
                return NextStep(self.model, None, self.lean.feed(ids).float())     # (1, V)
            out = self.model(input_ids=ids, use_cache=True, cache=self.cache)
            self.cache = out.cache
            return NextStep(self.model, None, out.logits[:, -1, :].float())        # (1, V)
        if self.lean is not None:
            hidden = self.lean.feed_embeds(self.model.embed(ids[None])[0])[None]   # (1, 1, D)
        else:
            hidden, self.cache = self.model.hidden(ids[None], cache=self.cache, use_cache=True)
            hidden = hidden[:, -1:]                                                 # (1, 1, D)
        return NextStep(self.model, hidden, self.model.row_logits(hidden)[0, :, -1].float())


@torch.no_grad()
def generate(model: PreTrainedModel, input_ids: list[int], max_new_tokens: int,
             temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
             eos_id: int | None = None, seed: int = 0,
             banned: torch.Tensor | None = None) -> list[int]:
    """Continue ``input_ids`` (one token stream); returns only the new tokens (stops after
    ``eos_id``, included). ``temperature=0`` is greedy decoding. ``banned`` (a ``(V,)`` bool
    mask) ids are never sampled (e.g. the other modality's family)."""
    if not input_ids:
        raise ConfigError("generate: the prompt is empty (it needs at least BOS)")
    check_sampling(temperature, max_new_tokens, top_p)
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and len(input_ids) + max_new_tokens > limit:
        raise ConfigError(f"generate: prompt ({len(input_ids)}) + max_new_tokens ({max_new_tokens}) "
                          f"exceeds the model's context of {limit} tokens")
    decoder = Decoder(model)
    gen = torch.Generator(device=decoder.device).manual_seed(seed)
    out: list[int] = []
    step = decoder.feed(input_ids)
    for _ in range(max_new_tokens):
        logits = step.row(0) if banned is None else step.row(0).masked_fill(banned, float("-inf"))
        out.append(sample(logits, temperature, top_k, top_p, gen))
        if (eos_id is not None and out[-1] == eos_id) or len(out) == max_new_tokens:
            break
        step = decoder.feed([out[-1]])
    return out


def _per_stream(value, n: int, name: str) -> list:
    values = list(value) if isinstance(value, (list, tuple)) else [value] * n
    if len(values) != n:
        raise ConfigError(f"generate: {name}={values} needs one value per stream ({n})")
    return values


@torch.no_grad()
def generate_codes(model: PreTrainedModel, space: TokenSpace, prompt: np.ndarray, n_frames: int,
                   temperature: float | Sequence[float] = 1.0,
                   top_k: int | None | Sequence[int | None] = None, top_p: float | None = None,
                   seed: int = 0, prefix: np.ndarray | None = None) -> np.ndarray:
    """Continue ``prompt`` ``(K, Tp)`` codes by ``n_frames`` frames of all K streams, through the
    model's layout; returns the new ``(K, n_frames)`` codes. Temperature and top-k may be given
    per stream. Positions the layout fills from the prompt are fed, not sampled; each sampled
    token is restricted to its stream's codes. ``prefix`` ``(R, n)`` model ids are fed after
    ``<bos>`` and before the codes (conditioning, :meth:`TokenSpace.prefix_ids`)."""
    K = space.n_streams
    temps, ks = _per_stream(temperature, K, "temperature"), _per_stream(top_k, K, "top_k")
    for t in temps:
        check_sampling(t, n_frames, top_p)
    prompt = space.check(prompt, "prompt")
    total = prompt.shape[1] + n_frames
    codes = np.zeros((K, total), dtype=np.int64)
    codes[:, :prompt.shape[1]] = prompt
    ids, stream = space.encode(codes)                                # (R, S)
    frame = np.where(stream >= 0, space.layout.positions(total) % max(total, 1), -1)
    todo = (stream >= 0) & (frame >= prompt.shape[1])                # positions to sample
    ranges = space.code_ranges()
    decoder = Decoder(model)
    gen = torch.Generator(device=decoder.device).manual_seed(seed)
    before, _ = sequence_frame(space.vocab, end=False)
    first = int(np.argmax(todo.any(axis=0))) if todo.any() else ids.shape[1]
    start = np.tile(np.asarray(before, dtype=np.int64), (ids.shape[0], 1))
    if prefix is not None:
        start = np.concatenate([start, np.asarray(prefix, dtype=np.int64).reshape(ids.shape[0], -1)],
                               axis=1)
    step = decoder.feed(np.concatenate([start, ids[:, :first]], axis=1))
    for s in range(first, ids.shape[1]):
        for r in np.nonzero(todo[:, s])[0]:
            k = stream[r, s]
            lo, hi = ranges[k]
            logits = step.row(int(r), ids[:, s]).clone()
            logits[:, :lo] = float("-inf")
            logits[:, hi:] = float("-inf")
            ids[r, s] = sample(logits, temps[k], ks[k], top_p, gen)
        if s + 1 < ids.shape[1]:
            step = decoder.feed(ids[:, s:s + 1])
    return space.decode(ids, total)[:, prompt.shape[1]:]
