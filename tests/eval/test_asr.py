"""Evaluation ASR: Whisper (default) and pocketsphinx backends, normalisation, WER, bad models."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from speechlm.core.errors import CheckpointError, ConfigError, DataError
from speechlm.eval.asr import load_asr, normalize, token_error_rate, transcribe, transcribe_all, wer
from speechlm.tokenizers.semantic.whisper import (BUNDLED_SHA256, bundled_model_dir,
                                                  check_model_dir, load_whisper)


def test_normalize_treats_reference_and_hypothesis_alike():
    assert normalize("Hello, World!  It's 'fine'.") == "hello world it is fine"
    assert normalize("Twenty-one colours, Mr. Smith.") == normalize("21 colors mister smith")
    assert normalize("Uh, the CAT sat.") == "the cat sat"


def test_wer_known_answers():
    assert wer(["a b c"], ["a x c"]) == pytest.approx(1 / 3)
    assert wer(["The cat.", "sat on"], ["the cat", "sat on"]) == 0.0
    assert wer(["one two three four"], [""]) == 1.0
    assert wer(["She had twenty-one colours."], ["she had 21 colors"]) == 0.0
    with pytest.raises(DataError):
        wer(["a"], ["a", "b"])
    with pytest.raises(DataError):
        wer([""], ["a"])


def test_token_error_rate_counts_tokens_as_given():
    # a token holding a space ("h n") is one token; no case or punctuation normalisation
    assert token_error_rate([["h n", "a", "T"]], [["h", "n", "a", "t"]]) == 1.0   # 2 subs + 1 ins
    assert token_error_rate([["a", "|", "b"], []], [["a", "|", "b"], ["x"]]) == 0.0   # empty ref skipped
    assert token_error_rate([["a", "b"]], [[]]) == 1.0
    with pytest.raises(DataError):
        token_error_rate([["a"]], [])


@pytest.fixture(scope="module")
def speech(tiny_corpus):
    from speechlm.data.corpus import Corpus

    # the held-out voice: one of data/synth.py's HELDOUT_VOICES, chosen to be readable by Whisper
    utts = [u for _, u in zip(range(3), Corpus(tiny_corpus).utterances("heldout"))]
    return [u.text for u in utts], [u.samples() for u in utts]


def test_whisper_reads_espeak_speech_better_than_pocketsphinx(speech):
    refs, clips = speech
    whisper = transcribe_all(clips)  # the default backend: Whisper tiny.en
    sphinx = transcribe_all(clips, asr="pocketsphinx")
    assert wer(refs, whisper) < 0.7
    assert wer(refs, whisper) < wer(refs, sphinx) < 1.0
    assert transcribe(clips[0], "whisper") == whisper[0]  # fixed beam/temperature: same text again
    for asr in ("whisper", "pocketsphinx"):
        assert wer([refs[0]], [transcribe(np.zeros(16000, np.float32), asr)]) >= 0.9


def test_bad_input_and_bad_spec():
    with pytest.raises(DataError, match="empty"):
        transcribe(np.zeros(0, np.float32))
    with pytest.raises(DataError, match="NaN"):
        transcribe(np.full(1600, np.nan, np.float32))
    with pytest.raises(ConfigError, match="--asr 'vosk'"):
        load_asr("vosk")
    with pytest.raises(ConfigError, match="whisper:PATH"):
        load_asr("whisper:")


def test_missing_whisper_directory_is_one_line_error(tmp_path):
    with pytest.raises(CheckpointError) as err:
        load_asr(f"whisper:{tmp_path / 'nope'}")
    assert str(tmp_path / "nope") in str(err.value) and "\n" not in str(err.value)
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="missing model.bin, tokenizer.json"):
        load_asr(f"whisper:{tmp_path / 'half'}")


def _copy_with_bad_weights(tmp_path):
    bad = tmp_path / "corrupt"
    shutil.copytree(bundled_model_dir(), bad, ignore=shutil.ignore_patterns("model.bin"))
    (bad / "model.bin").write_bytes(b"not a CTranslate2 model" * 100)
    return bad


def test_corrupt_whisper_model_is_one_line_error(tmp_path):
    bad = _copy_with_bad_weights(tmp_path)
    with pytest.raises(CheckpointError) as err:
        load_whisper(f"whisper:{bad}")
    assert str(bad) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(CheckpointError, match="sha256 .* does not match"):
        check_model_dir(bad, BUNDLED_SHA256)  # how the bundled model is checked at load


def test_bundled_model_passes_its_checksum():
    assert check_model_dir(bundled_model_dir(), BUNDLED_SHA256) == bundled_model_dir()
