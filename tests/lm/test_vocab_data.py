from __future__ import annotations

import numpy as np
import pytest

from speechlm.core.errors import CheckpointError, DataError
from speechlm.lm.packing import PackedExamples, eval_blocks
from speechlm.lm.sequences import get_builder
from speechlm.lm.streams import TokenSpace
from speechlm.lm.vocab import SpeechVocab
from speechlm.tokenizers.tokens import TokenDataset


def _examples(seqs, n_units=20):
    """Pretrain examples of (1, T) unit records."""
    space = TokenSpace.single(SpeechVocab.for_units(n_units))
    return get_builder("pretrain", space).examples([np.asarray(s)[None] for s in seqs], "test")


def test_families_compose_and_roundtrip(tmp_path):
    v = SpeechVocab.for_units(10, tokenizer="t").add_family("text", 5, kind="text")
    v = v.add_family("markers", 2, kind="marker", labels=["<speech>", "<text>"])
    assert v.size == 4 + 10 + 5 + 2 and v.family("text").offset == 14
    assert v.encode("units", [0, 9]) == [4, 13] and v.family_of(19) == "markers"
    assert v.decode("units", [1, 4, 13, 14]) == [0, 9]
    v.save(tmp_path)
    assert SpeechVocab.load(tmp_path) == v
    with pytest.raises(DataError, match="different tokenizer"):
        v.encode("units", [10])
    with pytest.raises(DataError, match="already has"):
        v.add_family("text", 3)
    (tmp_path / "speech_vocab.json").write_text("{bad")
    with pytest.raises(CheckpointError, match="corrupt"):
        SpeechVocab.load(tmp_path)


def test_packing_is_deterministic_and_eos_separated():
    seqs = [np.arange(n) for n in (5, 7, 3, 9, 6)]
    a = PackedExamples(_examples(seqs), seq_len=8, seed=1)
    b = PackedExamples(_examples(seqs), seq_len=8, seed=1)
    assert a.blocks_per_epoch == (5 + 7 + 3 + 9 + 6 + 2 * 5) // 8  # BOS + units + EOS each
    assert np.array_equal(a.blocks(0, 7).input_ids, b.blocks(0, 7).input_ids)  # crosses into epoch 1
    epoch = a.blocks(0, a.blocks_per_epoch)
    flat = epoch.input_ids.flatten().tolist()
    assert flat.count(2) >= 3 and flat.count(1) >= 3 and 0 not in flat  # BOS/EOS, no padding
    assert np.array_equal(epoch.labels, epoch.input_ids) and epoch.loss_weights is None
    assert not np.array_equal(epoch.input_ids, a.blocks(a.blocks_per_epoch, a.blocks_per_epoch).input_ids)


def test_empty_and_mismatched_data(units_dir):
    with pytest.raises(DataError, match="empty or too small"):
        PackedExamples([], seq_len=8, seed=0)
    space = TokenSpace.single(SpeechVocab.for_units(5))  # the fake dataset has 20 units
    with pytest.raises(DataError, match="train: row 0: units id 1[0-9] outside 0..4.*different tokenizers"):
        get_builder("pretrain", space).examples(TokenDataset(units_dir).streams("train"), "train")
    batch = eval_blocks(_examples([[1, 2, 3]]), seq_len=8, pad_id=0)
    assert batch.input_ids.shape == (1, 8) and batch.labels[0].tolist() == [1, 5, 6, 7, 2] + [-100] * 3
