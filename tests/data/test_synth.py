import json
import os

import numpy as np
import pytest

from speechlm.cli import main
from speechlm.data.corpus import Corpus
from speechlm.data.synth import (HELDOUT_VOICES, default_text_files, pick_voices, read_sentences,
                                 synthesize_corpus)


def test_tiny_corpus_has_voices_splits_and_aligned_words(tiny_corpus):
    corpus = Corpus(tiny_corpus)
    stats = corpus.validate()  # decodes every utterance and checks alignments
    assert stats["speakers"] == 4
    assert 35 <= stats["hours"] * 3600 <= 60
    heldout = {u.speaker for u in corpus.utterances("heldout")}
    train = {u.speaker for u in corpus.utterances("train")}
    assert len(heldout) == 1 and not heldout & train
    for utt in corpus:
        assert utt.words and utt.phones
        starts = [s for _, s, _ in utt.words]
        assert starts == sorted(starts)
        assert all(0 <= s <= e <= utt.duration for _, s, e in utt.words + utt.phones)
        spoken = [w.lower().strip(",.;:!?'") for w, _, _ in utt.words]
        text = [w.lower().strip(",.;:!?'") for w in utt.text.split()]
        assert set(spoken) <= set(text) and len(spoken) >= 0.7 * len(text)
        # speech energy lies inside the aligned words, not in the dither-only margins
        samples = utt.samples()
        first, last = utt.words[0][1], utt.words[-1][2]
        inside = samples[int(first * 16000):int(last * 16000)]
        assert np.sqrt(np.mean(inside ** 2)) > 5 * 3e-3


def test_synthesis_is_deterministic_for_a_seed(tmp_path):
    a = synthesize_corpus(tmp_path / "a", hours=8 / 3600, voices=2, heldout_voices=1, seed=7,
                          show_progress=False)
    b = synthesize_corpus(tmp_path / "b", hours=8 / 3600, voices=2, heldout_voices=1, seed=7,
                          workers=1, show_progress=False)
    c = synthesize_corpus(tmp_path / "c", hours=8 / 3600, voices=2, heldout_voices=1, seed=8,
                          show_progress=False)
    ua, ub, uc = list(a), list(b), list(c)
    assert [u.id for u in ua] == [u.id for u in ub]
    assert all(x.audio == y.audio and x.words == y.words for x, y in zip(ua, ub))
    assert [u.text for u in ua] != [u.text for u in uc]


def test_voices_are_distinct_and_heldout_disjoint():
    train, heldout = pick_voices(12, 3, seed=1)
    names = [v.name for v in train + heldout]
    assert len(set(names)) == 15
    assert {v.name for v in heldout} <= set(HELDOUT_VOICES)
    assert not {v.name for v in train} & set(HELDOUT_VOICES)  # never seen in training
    sentences = read_sentences(default_text_files())
    assert len(sentences) > 2000 and all(not any(ch.isdigit() for ch in s) for s in sentences)


def test_cli_info_json(tiny_corpus, capsys):
    assert main(["corpus", "info", str(tiny_corpus), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert {"utterances", "hours", "speakers"} <= stats.keys() and stats["speakers"] == 4


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["corpus", "info", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "corpus directory not found" in err
    assert "Traceback" not in err


def test_train_voices_are_split_into_train_valid_test():
    """Held-out voices stay in heldout; training voices go to valid and test by one draw each, so
    adding the test split left the valid split of a seed as it was."""
    from itertools import islice

    from speechlm.data.synth import _tasks

    train, heldout = pick_voices(4, 1, seed=0)
    sentences = [f"Sentence number {i} is here." for i in range(50)]

    def splits(test_fraction):
        return [t.split for t in islice(_tasks(sentences, train, heldout, 0, 0.1, test_fraction,
                                               0.0), 2000)]

    with_test, without = splits(0.1), splits(0.0)
    assert [s == "valid" for s in with_test] == [s == "valid" for s in without]
    assert "test" not in without
    counts = {s: with_test.count(s) for s in ("train", "valid", "test", "heldout")}
    assert counts["heldout"] == 400  # every 5th task: the one held-out voice
    assert 120 <= counts["valid"] <= 200 and 120 <= counts["test"] <= 200


def _exit_on_two(chunk: int) -> int:
    if chunk == 2:
        os._exit(1)   # a worker killed mid-chunk, as by a crash in libespeak-ng
    return chunk * 10


def test_a_dead_worker_is_an_error_not_a_hang():
    from speechlm.core.errors import SpeechLMError
    from speechlm.data.tts import in_fresh_processes

    assert list(in_fresh_processes(_exit_on_two, [0, 1], 2)) == [0, 10]
    with pytest.raises(SpeechLMError, match="_exit_on_two: a worker process died"):
        list(in_fresh_processes(_exit_on_two, [0, 1, 2, 3], 2))
