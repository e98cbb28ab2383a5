"""A lean incremental forward of a one-stream Llama LM: one sequence, a preallocated KV cache.

Decoding a tiny model one token at a time is mostly per-call and per-op overhead, not
arithmetic: a step of ``LlamaForCausalLM`` (4 layers x 128 wide) took 4.2 ms of CPU in
``benchmarks/serve_frame_cost.py`` (``lm_step``, a loaded machine), most of it HF's Python
(kwargs plumbing, output objects, mask and position bookkeeping, a ``DynamicCache`` that
concatenates its tensors every step); this forward takes 1.7 ms for the same products.
:class:`IncrementalLlama` runs the same weights through the same torch ops in the same order
(RMSNorm, rotary, SDPA with the mask HF passes, SwiGLU), with fewer calls: q/k/v and gate/up as
one product each, rotary on q and k at once, keys and values written into a buffer that grows by
doubling instead of being concatenated. With one intra-op thread (how Sessions and the duplex
eval decode) the logits are the HF model's, bit for bit, so seeded sampling draws the same
tokens (``tests/lm/test_incremental.py``); with more threads the BLAS may split a stacked
product differently from the separate ones, and for some chunk sizes the logits differ in the
last bit (2 threads, a 5-token chunk: 2e-7). The head still runs on every
position of a chunk: on the last row alone the matrix product takes another BLAS kernel and the
logits differ in the last bit.

Only what was checked bit for bit qualifies (:func:`supports`: float32 on the CPU, SDPA
attention, no biases, SiLU, default rotary, as many key/value heads as query heads); anything
else (a GPU, bf16, a depth decoder) keeps HF's forward. A multi-stream model without a depth
decoder qualifies through its backbone: :meth:`IncrementalLlama.feed_embeds` takes the summed
row embeddings and returns the backbone's state, and the model's own heads make the logits
(a duplex session's silent frames: p95 8.3 ms of CPU with HF's forward, 5.5 ms with this one,
``benchmarks/duplex_frame_cost.py``).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import LlamaForCausalLM, LlamaModel, PreTrainedModel

from speechlm.core.errors import ConfigError


def _decoder(model: PreTrainedModel) -> tuple[LlamaModel, torch.Tensor | None] | None:
    """The Llama decoder a lean forward can run for ``model`` and its head (None: the model's
    own heads read the hidden states, as a multi-stream model without a depth decoder does)."""
    from speechlm.lm.multistream.modeling_multistream import MultiStreamForCausalLM

    if type(model) is LlamaForCausalLM:
        return model.model, model.lm_head.weight
    if type(model) is MultiStreamForCausalLM and model.depth is None \
            and type(model.backbone) is LlamaModel:
        return model.backbone, None
    return None


def supports(model: PreTrainedModel) -> bool:
    """True for a Llama LM (or a multi-stream model's Llama backbone) whose forward
    :class:`IncrementalLlama` reproduces exactly."""
    found = _decoder(model)
    if found is None or model.training or model.device.type != "cpu" \
            or model.dtype != torch.float32:
        return False
    cfg = found[0].config
    return (cfg._attn_implementation == "sdpa" and not cfg.attention_bias and not cfg.mlp_bias
            and cfg.hidden_act == "silu" and cfg.num_key_value_heads == cfg.num_attention_heads
            and (cfg.rope_parameters or {}).get("rope_type", "default") == "default"
            and getattr(cfg, "pretraining_tp", 1) == 1)


@dataclass
class _Layer:
    """A layer's weights, transposed views ready for ``x @ w`` (what ``F.linear`` multiplies)."""

    norm1: torch.Tensor
    qkv: torch.Tensor       # (D, 3 H Dh): q, k and v projections stacked, one product
    o: torch.Tensor
    norm2: torch.Tensor
    gate_up: torch.Tensor   # (D, 2 I): gate and up projections stacked
    down: torch.Tensor


@dataclass
class _Weights:
    """What every sequence of one model shares: stacked weights, rotary tables."""

    layers: list[_Layer]
    head: torch.Tensor | None  # (D, V); None: hidden states out (a multi-stream backbone)
    cos: torch.Tensor       # (max positions, Dh)
    sin: torch.Tensor       # its first half negated: rotate_half(x) * sin == x[..., swap] * sin
    swap: torch.Tensor      # (Dh,) index of the other half
    versions: tuple[int, ...] | None  # the source parameters' versions: stale once they change


_SHARED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> _Weights


def _weights(model: PreTrainedModel) -> _Weights:
    """The model's stacked weights, made once per model and again after its weights change
    (in-place optimizer steps bump their versions; weights made in inference mode have no
    versions and are stacked anew every time)."""
    params = list(model.parameters())
    versions = None if any(p.is_inference() for p in params) else tuple(p._version for p in params)
    shared = _SHARED.get(model)
    if shared is None or versions is None or shared.versions != versions:
        decoder, head = _decoder(model)
        with torch.inference_mode():
            layers = [_Layer(l.input_layernorm.weight,
                             torch.cat([l.self_attn.q_proj.weight, l.self_attn.k_proj.weight,
                                        l.self_attn.v_proj.weight]).t(),
                             l.self_attn.o_proj.weight.t(), l.post_attention_layernorm.weight,
                             torch.cat([l.mlp.gate_proj.weight, l.mlp.up_proj.weight]).t(),
                             l.mlp.down_proj.weight.t())
                      for l in decoder.layers[:decoder.config.num_hidden_layers]]
            rotary, embed = decoder.rotary_emb, decoder.embed_tokens.weight
            positions = torch.arange(decoder.config.max_position_embeddings, device=embed.device)
            cos, sin = rotary(embed, position_ids=positions[None])  # (1, P, Dh) each
            half = cos.shape[-1] // 2
            sin = torch.cat([-sin[0, :, :half], sin[0, :, half:]], dim=-1)
            swap = torch.arange(cos.shape[-1], device=embed.device).roll(half)
        shared = _SHARED[model] = _Weights(layers, None if head is None else head.t(), cos[0],
                                           sin, swap, versions)
    return shared


class IncrementalLlama:
    """Feed token ids of one sequence in chunks; each :meth:`feed` returns the logits after the
    chunk's last token. Sequences of one model share its stacked weights (:func:`_weights`);
    each keeps only its KV cache (``capacity`` positions to start with)."""

    def __init__(self, model: PreTrainedModel, capacity: int = 256) -> None:
        inner, _ = _decoder(model)
        cfg = inner.config
        self.shared = _weights(model)
        self.embed, self.norm = inner.embed_tokens.weight, inner.norm.weight
        self.eps = inner.norm.variance_epsilon
        self.heads = cfg.num_attention_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.heads
        self.inner = cfg.intermediate_size
        self.scaling = self.head_dim ** -0.5
        self.limit = cfg.max_position_embeddings
        self.initial, self.capacity, self.length = min(capacity, self.limit), 0, 0

    def reset(self) -> None:
        """Forget the sequence (the buffers are kept for the next one)."""
        self.length = 0

    def _grow(self, capacity: int) -> None:
        """Room for ``capacity`` positions, the entries so far kept."""
        shape = (len(self.shared.layers), self.heads, capacity, self.head_dim)  # (L, H, C, Dh)
        keys, values = (torch.empty(shape, dtype=self.embed.dtype, device=self.embed.device)
                        for _ in range(2))  # only positions < length are ever read
        if self.capacity:
            keys[:, :, :self.length] = self.keys[:, :, :self.length]
            values[:, :, :self.length] = self.values[:, :, :self.length]
        self.keys, self.values, self.capacity = keys, values, capacity
        # per layer (1, H, C, Dh) views: each step narrows them instead of indexing the stack
        self.layer_kv = list(zip(keys.split(1), values.split(1)))

    @torch.inference_mode()
    def feed(self, ids: torch.Tensor) -> torch.Tensor:
        """``ids`` ``(1, n)`` -> ``(1, V)`` logits of the next token (as ``model(ids, cache)``).
        Inference mode throughout: the buffers are made and written in it."""
        if self.shared.head is None:
            raise ConfigError("a multi-stream backbone has no LM head: feed it with feed_embeds")
        hidden = self._run(F.embedding(ids.reshape(-1), self.embed))
        return torch.mm(hidden, self.shared.head)[-1:]  # (1, V)

    @torch.inference_mode()
    def feed_embeds(self, embeds: torch.Tensor) -> torch.Tensor:
        """``embeds`` ``(n, D)`` -> ``(1, D)`` final-normed state of the chunk's last position (as
        the backbone's ``last_hidden_state[:, -1]`` with ``inputs_embeds`` and a cache)."""
        return self._run(embeds)[-1:]

    def _run(self, hidden: torch.Tensor) -> torch.Tensor:
        """``(n, D)`` inputs at the next ``n`` positions -> ``(n, D)`` final-normed states."""
        n, H = hidden.shape[0], self.heads
        start, end = self.length, self.length + n
        if end > self.limit:
            raise ConfigError(f"generate: {end} positions exceed the model's context of "
                              f"{self.limit}")
        if end > self.capacity:
            capacity = max(self.capacity, self.initial)
            while capacity < end:
                capacity *= 2
            self._grow(min(capacity, self.limit))
        cos, sin = self.shared.cos[start:end], self.shared.sin[start:end]  # (n, Dh)
        # HF's attention mask: causal in the first chunk, none for one token, else boolean
        mask = None
        if start and n > 1:
            q_pos = torch.arange(start, end, device=hidden.device)[:, None]
            keys_pos = torch.arange(end, device=hidden.device)
            mask = (keys_pos[None] <= q_pos)[None, None]                        # (1, 1, n, T)
        shared = self.shared
        for layer, (keys, values) in zip(shared.layers, self.layer_kv):
            x = _rms_norm(hidden, layer.norm1, self.eps)
            qkv = torch.mm(x, layer.qkv).view(n, 3 * H, self.head_dim).transpose(0, 1)  # (3H, n, Dh)
            qk = qkv[:2 * H]  # rotary on q and k at once, HF's rotate_half as a gather
            q, k = (qk * cos + qk.index_select(-1, shared.swap) * sin)[None].split(H, dim=1)
            keys.narrow(2, start, n).copy_(k)                                  # (1, H, n, Dh)
            values.narrow(2, start, n).copy_(qkv[None, 2 * H:])
            attn = F.scaled_dot_product_attention(
                q, keys.narrow(2, 0, end), values.narrow(2, 0, end), attn_mask=mask,
                is_causal=start == 0 and n > 1, scale=self.scaling)           # (1, H, n, Dh)
            hidden = hidden + torch.mm(attn[0].transpose(0, 1).reshape(n, -1), layer.o)
            gate, up = torch.mm(_rms_norm(hidden, layer.norm2, self.eps), layer.gate_up).split(
                self.inner, dim=-1)
            hidden = hidden + torch.mm(F.silu(gate) * up, layer.down)
        self.length = end
        return _rms_norm(hidden, self.norm, self.eps)


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """HF's ``LlamaRMSNorm`` of a float32 ``x``, op for op (its casts are no-ops in float32;
    ``pow(2)`` is ``x * x``; the statistics' add and rsqrt in place)."""
    return weight * (x * (x * x).mean(-1, keepdim=True).add_(eps).rsqrt_())

