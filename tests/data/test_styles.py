"""`corpus synth --styles`: per-utterance speaking styles, recorded, deterministic, audible in F0."""

import numpy as np
import pyarrow.parquet as pq
import pytest

from speechlm.cli import main
from speechlm.core.errors import DataError
from speechlm.data.corpus import Corpus, Utterance
from speechlm.data.synth import synthesize_corpus
from speechlm.data.tts import STYLES, Espeak, Voice

ALL = ("neutral", "excited", "sad", "question", "whisper")


def test_style_apply_changes_prosody_punctuation_and_variant():
    voice = Voice("en-us+f2", rate=160, pitch=50, range=50)
    excited, text = STYLES["excited"].apply(voice, "It was late.")
    assert text == "It was late!" and excited.pitch == 70 and excited.range == 90
    assert excited.rate == 192 and excited.name == "en-us+f2"
    assert STYLES["question"].apply(voice, "It was late!")[1] == "It was late?"
    assert STYLES["whisper"].apply(voice, "Hi.")[0].name == "en-us+whisperf"
    assert STYLES["whisper"].apply(Voice("en+m3"), "Hi.")[0].name == "en+whisper"
    assert STYLES["excited"].apply(Voice("en", pitch=95, range=90), "a")[0].pitch == 100


def test_styles_raise_or_lower_pitch_of_the_same_voice():
    espeak = Espeak()
    from speechlm.tokenizers.prosody import extract_f0

    voice, text = Voice("en-us+m3", rate=170, pitch=50, range=50), "The garden was quiet today."
    f0 = {}
    for name in ("excited", "neutral", "sad"):
        v, t = STYLES[name].apply(voice, text)
        track = extract_f0(espeak.synthesize(t, v).samples)
        f0[name] = np.log(track[track > 0])
    assert f0["excited"].mean() > f0["neutral"].mean() > f0["sad"].mean()
    assert f0["excited"].std() > f0["sad"].std()


def test_styled_corpus_records_styles_and_is_deterministic(tmp_path):
    kwargs = dict(hours=14 / 3600, voices=2, heldout_voices=1, seed=4, styles=ALL,
                  show_progress=False)
    a = list(synthesize_corpus(tmp_path / "a", **kwargs))
    b = list(synthesize_corpus(tmp_path / "b", workers=1, **kwargs))
    assert [u.to_dict() for u in a] == [u.to_dict() for u in b]  # byte-identical audio too
    assert all(u.style in ALL for u in a) and len({u.style for u in a}) >= 3
    assert {u.split for u in a} >= {"train", "heldout"}
    for u in a:
        assert u.text[-1] == STYLES[u.style].end
    meta = Corpus(tmp_path / "a").meta
    assert meta["params"]["styles"] == list(ALL)


def test_unstyled_corpus_is_unchanged_and_unlabelled(tmp_path):
    corpus = synthesize_corpus(tmp_path / "c", hours=6 / 3600, voices=1, heldout_voices=0, seed=4,
                               show_progress=False)
    assert all(u.style is None for u in corpus) and "styles" not in corpus.meta["params"]


def test_old_corpora_without_a_style_column_still_load(tiny_corpus, tmp_path):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(tiny_corpus, old)
    for shard in (old / "data").glob("*.parquet"):
        table = pq.read_table(shard)
        pq.write_table(table.drop_columns(["style"]), shard)
    assert "style" not in pq.read_schema(next((old / "data").glob("*.parquet"))).names
    corpus = Corpus(old)
    assert corpus.validate()["utterances"] == len(corpus)
    assert all(u.style is None for u in corpus)


def test_bad_styles_fail_with_one_line(tmp_path, capsys):
    with pytest.raises(DataError, match="unknown style"):
        synthesize_corpus(tmp_path / "x", hours=0.001, styles=["happy"], show_progress=False)
    assert main(["corpus", "synth", "--out", str(tmp_path / "y"), "--hours", "0.001",
                 "--styles", "neutral,happy"]) == 2
    assert "unknown style(s) happy" in capsys.readouterr().err
    with pytest.raises(DataError, match="empty style"):
        Utterance("u", "s", "t", 16000, 1.0, b"", style=" ").validate()
