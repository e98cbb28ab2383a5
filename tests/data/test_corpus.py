import json
import logging

import pytest

from speechlm.core.errors import DataError
from speechlm.data.audio import encode_flac
from speechlm.data.corpus import Corpus, CorpusWriter, Utterance
from tests.conftest import tone


def make_utt(i: int, split: str = "train", words=None) -> Utterance:
    samples = tone(0.5)
    return Utterance(f"u{i}", f"spk{i % 2}", "hello there", 16_000, samples.size / 16_000,
                     encode_flac(samples), words or [("hello", 0.0, 0.2), ("there", 0.2, 0.45)],
                     [("h", 0.0, 0.1)], split)


def test_writer_reader_round_trip(tmp_path):
    writer = CorpusWriter(tmp_path / "c", {"name": "c"}, shard_size=2)
    utts = [make_utt(i, "heldout" if i == 4 else "train") for i in range(5)]
    for utt in utts:
        writer.add(utt)
    corpus = writer.close()
    assert len(corpus) == 5
    assert len(list((tmp_path / "c" / "data").glob("train-*.parquet"))) == 2
    assert sorted(u.id for u in corpus) == sorted(u.id for u in utts)
    assert [u.id for u in corpus.utterances("heldout")] == ["u4"]
    read_back = {u.id: u for u in Corpus(tmp_path / "c")}
    assert read_back["u1"] == utts[1]
    stats = corpus.validate()
    assert stats["utterances"] == 5 and stats["speakers"] == 2
    assert stats["splits"]["heldout"]["utterances"] == 1


def test_non_monotone_alignment_is_rejected(tmp_path):
    writer = CorpusWriter(tmp_path / "c", {})
    with pytest.raises(DataError, match="not monotone"):
        writer.add(make_utt(0, words=[("b", 0.3, 0.4), ("a", 0.1, 0.2)]))
    with pytest.raises(DataError, match="not monotone or not inside"):
        writer.add(make_utt(1, words=[("a", 0.1, 0.9)]))


def test_duplicate_ids_and_bad_split(tmp_path):
    writer = CorpusWriter(tmp_path / "c", {})
    writer.add(make_utt(0))
    with pytest.raises(DataError, match="duplicate utterance id"):
        writer.add(make_utt(0))
    with pytest.raises(DataError, match="split 'dev'"):
        writer.add(make_utt(1, split="dev"))


def test_missing_or_unfinished_corpus(tmp_path):
    with pytest.raises(DataError, match="corpus directory not found"):
        Corpus(tmp_path / "none")
    (tmp_path / "empty" / "data").mkdir(parents=True)
    with pytest.raises(DataError, match="no parquet shards"):
        Corpus(tmp_path / "empty")


def test_test_split_round_trip(tmp_path, caplog):
    writer = CorpusWriter(tmp_path / "c", {"name": "c"})
    for i, split in enumerate(("train", "valid", "test", "heldout")):
        writer.add(make_utt(i, split))
    corpus = writer.close()
    assert corpus.meta["version"] == 2
    assert [u.id for u in corpus.utterances("test")] == ["u2"]
    assert {s: v["utterances"] for s, v in corpus.stats()["splits"].items()} == \
        {"train": 1, "valid": 1, "test": 1, "heldout": 1}
    with caplog.at_level(logging.WARNING, logger="speechlm.data.corpus"):
        Corpus(tmp_path / "c")
    assert caplog.text == ""


def test_corpus_without_test_split_loads_with_a_warning(tmp_path, caplog):
    """A version-1 corpus (made before the test split existed) keeps working: its test split
    is empty and opening it says so."""
    writer = CorpusWriter(tmp_path / "old", {"name": "old"})
    for i, split in enumerate(("train", "train", "valid", "heldout")):
        writer.add(make_utt(i, split))
    writer.close()
    meta_path = tmp_path / "old" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["version"] = 1
    del meta["stats"]["splits"]["test"]
    meta_path.write_text(json.dumps(meta))
    with caplog.at_level(logging.WARNING, logger="speechlm.data.corpus"):
        corpus = Corpus(tmp_path / "old")
    assert "has no 'test' split" in caplog.text and str(tmp_path / "old") in caplog.text
    assert len(corpus) == 4 and list(corpus.utterances("test")) == []
    assert corpus.table("test", ["id"]).num_rows == 0
    assert corpus.validate()["splits"]["test"]["utterances"] == 0
