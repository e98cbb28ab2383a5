"""Configuration of :class:`~speechlm.lm.multistream.modeling_multistream.MultiStreamForCausalLM`.

``backbone_config`` is any HF decoder config (Llama by default; ``AutoModel.from_config`` builds
it), ``row_vocab_sizes`` the vocabulary of each model row (one per stream: specials + that
stream's codes, see :class:`speechlm.lm.streams.TokenSpace`), ``depth_config`` an optional small
decoder run over the rows of one step (Moshi's Depformer / the RQ-Transformer's depth stage),
``unread_rows`` the rows the model predicts but never reads back as input (a decision made anew
every step from the other rows, e.g. a duplex model's state, instead of copied from its own past).
"""

from __future__ import annotations

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec


class MultiStreamConfig(PreTrainedConfig):
    model_type = "speechlm_multistream"
    sub_configs_defaults = {
        "backbone_config": SubConfigSpec(config_class=AutoConfig, model_type="llama"),
        "depth_config": SubConfigSpec(config_class=AutoConfig, model_type="llama", optional=True),
    }

    backbone_config: dict | PreTrainedConfig | None = None
    depth_config: dict | PreTrainedConfig | None = None
    row_vocab_sizes: list[int] | None = None
    unread_rows: list[int] | None = None
    pad_token_id: int | None = 0
    bos_token_id: int | None = 1
    eos_token_id: int | None = 2
    tie_word_embeddings: bool = False
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs) -> None:
        super().__post_init__(**kwargs)
        sizes = list(self.row_vocab_sizes or [])
        if not sizes or min(sizes) < 1:
            raise ValueError(f"row_vocab_sizes={self.row_vocab_sizes}: need one size >= 1 per row")
        self.row_vocab_sizes = [int(s) for s in sizes]
        self.unread_rows = sorted(int(r) for r in self.unread_rows or ())
        if self.unread_rows and (not 0 < self.unread_rows[0] or self.unread_rows[-1] >= len(sizes)):
            raise ValueError(f"unread_rows={self.unread_rows}: rows 1..{len(sizes) - 1} only "
                             f"(row 0 is always read)")
        if self.depth_config is not None and self.depth_config.hidden_size != self.hidden_size:
            raise ValueError(f"depth_config.hidden_size={self.depth_config.hidden_size} must equal "
                             f"the backbone's hidden_size={self.hidden_size}")

    @property
    def hidden_size(self) -> int:
        return self.backbone_config.hidden_size

    @property
    def vocab_size(self) -> int:
        """Width of the (padded) logits: the largest row vocabulary."""
        return max(self.row_vocab_sizes)

    @property
    def max_position_embeddings(self) -> int:
        return self.backbone_config.max_position_embeddings

    @property
    def n_rows(self) -> int:
        return len(self.row_vocab_sizes)
