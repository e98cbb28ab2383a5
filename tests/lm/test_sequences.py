"""Sequence builders, the one sequence-start convention, packing and the loss arithmetic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from speechlm.core.errors import ConfigError
from speechlm.lm import sequences
from speechlm.lm.layout import get_layout
from speechlm.lm.loop import lm_loss, loss_mass
from speechlm.lm.model import SpeechLM
from speechlm.lm.modeldir import ModelMeta
from speechlm.lm.packing import Batch, eval_blocks
from speechlm.lm.sequences import IGNORE, get_builder, register_builder
from speechlm.lm.streams import TokenSpace
from speechlm.lm.vocab import SpeechVocab

VOCAB = SpeechVocab.for_units(10)


def _lm() -> SpeechLM:
    return SpeechLM(model=None, vocab=VOCAB, spec=ModelMeta.single("speech"), path=Path("m"))


def test_training_utterances_start_like_scored_items_and_prompts():
    """Item 18.3: a training utterance is exactly a scored item / prompt plus <eos>."""
    units = [3, 3, 9, 0]
    example = get_builder("pretrain", TokenSpace.single(VOCAB)).example(np.array([units]), "t")
    assert example.input_ids[0].tolist() == _lm().encode_units(units) + [VOCAB.eos_id]
    assert example.input_ids[0, 0] == VOCAB.bos_id
    assert np.array_equal(example.labels, example.input_ids)


def test_training_and_scoring_call_the_one_convention(monkeypatch):
    """Both go through sequence_frame: change it and both change the same way."""
    monkeypatch.setattr(sequences, "sequence_frame",
                        lambda vocab, end=True: ([vocab.eos_id, 3], [vocab.pad_id] if end else []))
    example = get_builder("pretrain", TokenSpace.single(VOCAB)).example(np.array([[5]]), "t")
    assert example.input_ids[0].tolist() == [2, 3, 9, 0]
    assert _lm().encode_units([5]) == [2, 3, 9]


def test_multi_row_example_frames_every_row_and_masks_layout_padding():
    vocab = VOCAB.add_family("duration", 4, kind="prosody")
    space = TokenSpace(vocab, ("units", "duration"), get_layout("delay", 2, [0, 1]))
    codes = np.array([[1, 2, 3], [0, 3, 1]])
    ex = get_builder("pretrain", space, stream_weights=[1.0, 0.25]).example(codes, "t")
    # row vocabularies: specials 0..3, then the stream's codes from 4
    assert ex.input_ids.tolist() == [[1, 5, 6, 7, 0, 2], [1, 0, 4, 7, 5, 2]]
    assert ex.labels.tolist() == [[1, 5, 6, 7, IGNORE, 2], [1, IGNORE, 4, 7, 5, 2]]
    assert ex.loss_weights.tolist() == [[1, 1, 1, 1, 1, 1], [1, 1, 0.25, 0.25, 0.25, 1]]
    assert np.array_equal(space.decode(ex.input_ids[:, 1:-1], 3), codes)


def test_builders_register_by_name():
    with pytest.raises(ConfigError, match="not a registered builder"):
        get_builder("nope", TokenSpace.single(VOCAB))

    @register_builder("test-reversed")
    class Reversed(sequences.SequenceBuilder):
        def example(self, codes, source):
            ids, _ = self.space.encode(codes[:, ::-1], source)
            return sequences.Example(ids, np.full_like(ids, IGNORE))

    try:
        ex = get_builder("test-reversed", TokenSpace.single(VOCAB)).example(np.array([[1, 2]]), "t")
        assert ex.input_ids.tolist() == [[6, 5]] and (ex.labels == IGNORE).all()
        with pytest.raises(ConfigError, match="already registered"):
            register_builder("test-reversed")(Reversed)
    finally:
        sequences.BUILDERS.pop("test-reversed")


def test_eval_blocks_pad_with_ignored_labels_and_zero_weight():
    space = TokenSpace.single(VOCAB)
    examples = get_builder("pretrain", space, [2.0]).examples([np.array([[1, 2, 3]])], "t")
    batch = eval_blocks(examples, seq_len=4, pad_id=0)
    assert batch.input_ids.tolist() == [[1, 5, 6, 7], [2, 0, 0, 0]]
    assert batch.labels.tolist() == [[1, 5, 6, 7], [2, IGNORE, IGNORE, IGNORE]]
    assert batch.loss_weights.tolist() == [[1, 2, 2, 2], [1, 0, 0, 0]]


class _Fixed(torch.nn.Module):
    """Returns fixed logits whatever the input (for hand-computed losses)."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, input_ids, use_cache=False):
        return type("Out", (), {"logits": self.logits})()


def test_loss_arithmetic_on_a_hand_computed_case():
    # B=1, T=3, V=2: targets are labels[1:] = [0, 1]; log-probs from logits [0, ln 3] and [0, 0]
    logits = torch.tensor([[[0.0, np.log(3.0)], [0.0, 0.0], [5.0, 5.0]]])
    model = _Fixed(logits)
    labels = torch.tensor([[9, 0, 1]])
    nll = [np.log(4.0), np.log(2.0)]  # -log(1/4), -log(1/2)
    assert lm_loss(model, labels, labels).item() == pytest.approx(np.mean(nll), abs=1e-6)
    weights = torch.tensor([[1.0, 3.0, 1.0]])
    assert lm_loss(model, labels, labels, weights).item() == pytest.approx(
        (3 * nll[0] + 1 * nll[1]) / 4, abs=1e-6)
    masked = torch.tensor([[9, IGNORE, 1]])
    assert lm_loss(model, labels, masked, weights).item() == pytest.approx(nll[1], abs=1e-6)
    assert loss_mass(Batch(labels, masked, weights)).item() == 1.0
    # multi-row (B, R, T, V): the same mean over every row's scored targets
    rows = _Fixed(torch.stack([logits, logits], dim=1))
    two = torch.stack([labels, masked], dim=1)
    assert lm_loss(rows, two, two).item() == pytest.approx((nll[0] + 2 * nll[1]) / 3, abs=1e-6)
