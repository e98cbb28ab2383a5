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
    with pytest.raises(DataError, match="split 'test'"):
        writer.add(make_utt(1, split="test"))


def test_missing_or_unfinished_corpus(tmp_path):
    with pytest.raises(DataError, match="corpus directory not found"):
        Corpus(tmp_path / "none")
    (tmp_path / "empty" / "data").mkdir(parents=True)
    with pytest.raises(DataError, match="no parquet shards"):
        Corpus(tmp_path / "empty")
