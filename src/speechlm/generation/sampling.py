"""Autoregressive sampling with temperature, top-k, top-p (nucleus) and the HF KV cache.

The prompt runs through the model once; every new token then costs one forward over a single
position, reusing ``past_key_values``. Seeded with a private ``torch.Generator`` (no global state).
"""

from __future__ import annotations

import inspect

import torch
from transformers import PreTrainedModel

from speechlm.core.errors import ConfigError


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


@torch.no_grad()
def generate(model: PreTrainedModel, input_ids: list[int], max_new_tokens: int,
             temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
             eos_id: int | None = None, seed: int = 0) -> list[int]:
    """Continue ``input_ids``; returns only the new tokens (stops after ``eos_id``, included).

    ``temperature=0`` is greedy decoding.
    """
    if not input_ids:
        raise ConfigError("generate: the prompt is empty (it needs at least BOS)")
    if temperature < 0 or max_new_tokens < 0 or (top_p is not None and not 0 < top_p <= 1):
        raise ConfigError(f"generate: temperature={temperature} must be >= 0, max_new_tokens="
                          f"{max_new_tokens} >= 0, top_p={top_p} in (0, 1]")
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and len(input_ids) + max_new_tokens > limit:
        raise ConfigError(f"generate: prompt ({len(input_ids)}) + max_new_tokens ({max_new_tokens}) "
                          f"exceeds the model's context of {limit} tokens")
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    ids = torch.tensor([input_ids], dtype=torch.long, device=device)  # (1, T)
    # transformers >= 5.x renamed past_key_values -> cache; pass whichever forward() takes
    cache_kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    past = None
    out: list[int] = []
    for _ in range(max_new_tokens):
        result = model(input_ids=ids, use_cache=True, **{cache_kw: past})
        past = getattr(result, cache_kw)
        logits = result.logits[:, -1, :].float()  # (1, V)
        if temperature == 0:
            token = logits.argmax(-1, keepdim=True)
        else:
            logits = filter_logits(logits / temperature, top_k, top_p)
            token = torch.multinomial(logits.softmax(-1), 1, generator=gen)  # (1, 1)
        out.append(int(token))
        if eos_id is not None and out[-1] == eos_id:
            break
        ids = token
    return out
