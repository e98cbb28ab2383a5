"""A causal LM over K parallel token rows: per-row embeddings summed, any HF decoder, per-row heads.

The model reads ``input_ids`` of shape ``(B, R, T)`` (R model rows, one per stream; see
:class:`speechlm.lm.streams.TokenSpace` for how a layout makes them) and returns logits
``(B, R, T, V)`` where ``V`` is the largest row vocabulary; the ids a row does not have get
``-inf``, so the same cross entropy and sampler work for every row. Rows in ``unread_rows`` are
predicted but have no input table: their past tokens never reach the backbone. The backbone is
any HF decoder built with ``AutoModel.from_config`` (Llama by default) and keeps its KV cache
(``cache``) as the HF causal LMs do.

With ``depth_config`` a small decoder runs over the rows of each step (Moshi's Depformer, the
RQ-Transformer's depth stage): row ``r`` of step ``t + 1`` is predicted from the backbone state at
``t`` plus the tokens of rows ``< r`` at ``t + 1``, instead of all rows independently. Training
feeds those tokens from the targets (``next_ids``, by default the inputs shifted by one step);
sampling feeds them row by row (:meth:`MultiStreamForCausalLM.row_logits`).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoModel, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from speechlm.lm.multistream.configuration_multistream import MultiStreamConfig


class MultiStreamPreTrainedModel(PreTrainedModel):
    config_class = MultiStreamConfig
    base_model_prefix = "backbone"
    _no_split_modules = ["LlamaDecoderLayer"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_attention_backend = True


class MultiStreamForCausalLM(MultiStreamPreTrainedModel):
    def __init__(self, config: MultiStreamConfig) -> None:
        super().__init__(config)
        dim, sizes = config.hidden_size, config.row_vocab_sizes
        # an unread row has no input table (None): nothing of it reaches the backbone
        self.embeddings = nn.ModuleList(None if row in config.unread_rows else nn.Embedding(v, dim)
                                        for row, v in enumerate(sizes))
        self.backbone = AutoModel.from_config(config.backbone_config)
        self.heads = nn.ModuleList(nn.Linear(dim, v, bias=False) for v in sizes)
        self.depth = None
        if config.depth_config is not None:
            self.depth = AutoModel.from_config(config.depth_config)
            self.depth_in = nn.Linear(dim, dim, bias=False)
            self.depth_embeddings = nn.ModuleList(nn.Embedding(v, dim) for v in sizes[:-1])
        self.post_init()
        # the decoders read inputs_embeds, so their own (one-row) tables never get a gradient:
        # frozen, every trainable parameter is used (DDP without find_unused_parameters)
        for decoder in (self.backbone, self.depth):
            if decoder is not None:
                decoder.get_input_embeddings().requires_grad_(False)

    def get_input_embeddings(self) -> nn.Module:
        """Row 0's table (the backbone's own table is unused and has one row)."""
        return self.embeddings[0]

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``(B, R, T)`` ids -> the backbone's inputs ``(B, T, D)``: the rows' embeddings summed."""
        embeds = self.embeddings[0](input_ids[:, 0])                    # (B, T, D)
        for row, table in enumerate(self.embeddings):
            if row and table is not None:
                embeds = embeds + table(input_ids[:, row])
        return embeds

    def hidden(self, input_ids: torch.Tensor, cache=None, use_cache: bool | None = None,
               **kwargs) -> tuple[torch.Tensor, object]:
        """``(B, R, T)`` ids -> backbone states ``(B, T, D)`` and the updated cache."""
        out = self.backbone(inputs_embeds=self.embed(input_ids), cache=cache, use_cache=use_cache,
                            **kwargs)
        return out.last_hidden_state, out.cache

    def row_logits(self, hidden: torch.Tensor, next_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Backbone states ``(B, T, D)`` -> logits ``(B, R, T, V)`` of the next step's rows.

        With a depth decoder, ``next_ids`` ``(B, R, T)`` are the next step's tokens; row ``r``
        only sees rows ``< r`` of it (causal over rows), so a sampler may pass placeholders for
        the rows it has not chosen yet.
        """
        if self.depth is None:
            states = [hidden] * len(self.heads)
        else:
            B, T, D = hidden.shape
            if next_ids is None:  # row 0 does not depend on them; later rows need real ones
                next_ids = torch.zeros((B, len(self.heads), T), dtype=torch.long, device=hidden.device)
            base = self.depth_in(hidden)                                # (B, T, D)
            inputs = [base] + [base + emb(next_ids[:, row])
                               for row, emb in enumerate(self.depth_embeddings)]
            rows = torch.stack(inputs, dim=2).reshape(B * T, len(inputs), D)  # (B*T, R, D)
            out = self.depth(inputs_embeds=rows, use_cache=False).last_hidden_state
            states = list(out.reshape(B, T, len(inputs), D).unbind(dim=2))
        width = self.config.vocab_size  # ids a row does not have: -inf
        logits = [nn.functional.pad(head(state), (0, width - head.out_features), value=float("-inf"))
                  for head, state in zip(self.heads, states)]
        return torch.stack(logits, dim=1)                               # (B, R, T, V)

    def forward(self, input_ids: torch.Tensor, cache=None, use_cache: bool | None = None,
                next_ids: torch.Tensor | None = None, **kwargs) -> CausalLMOutputWithPast:
        hidden, cache = self.hidden(input_ids, cache=cache, use_cache=use_cache, **kwargs)
        if self.depth is not None and next_ids is None:  # teacher forcing: the targets' tokens
            next_ids = torch.cat([input_ids[..., 1:], input_ids[..., -1:]], dim=-1)
        return CausalLMOutputWithPast(logits=self.row_logits(hidden, next_ids), cache=cache)
