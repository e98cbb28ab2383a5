from __future__ import annotations

import numpy as np
import pytest

from speechlm.core.errors import CheckpointError, DataError
from speechlm.lm.data import PackedBlocks, to_token_ids, valid_blocks
from speechlm.tokenizers.tokens import TokenDataset
from speechlm.lm.vocab import SpeechVocab


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
    seqs = [np.arange(4, 4 + n) for n in (5, 7, 3, 9, 6)]
    a = PackedBlocks(seqs, seq_len=8, eos_id=2, seed=1)
    b = PackedBlocks(seqs, seq_len=8, eos_id=2, seed=1)
    assert a.blocks_per_epoch == (5 + 7 + 3 + 9 + 6 + 5) // 8
    assert np.array_equal(a.blocks(0, 7), b.blocks(0, 7))  # crosses into epoch 1
    flat = a.blocks(0, a.blocks_per_epoch).flatten().tolist()
    assert flat.count(2) >= 3 and 0 not in flat  # EOS between utterances, no padding
    assert not np.array_equal(a.blocks(0, a.blocks_per_epoch),
                              a.blocks(a.blocks_per_epoch, a.blocks_per_epoch))  # reshuffled


def test_empty_and_mismatched_data(units_dir):
    with pytest.raises(DataError, match="empty or too small"):
        PackedBlocks([], seq_len=8, eos_id=2, seed=0)
    vocab = SpeechVocab.for_units(5)  # the fake dataset has 20 units
    with pytest.raises(DataError, match="different tokenizers"):
        to_token_ids(TokenDataset(units_dir).units("train"), vocab, "units", "train")
    ids, labels = valid_blocks([np.array([5, 6, 7])], seq_len=8, eos_id=2, pad_id=0)
    assert ids.shape == (1, 8) and labels[0].tolist() == [5, 6, 7, 2] + [-100] * 4
