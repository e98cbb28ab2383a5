"""Joint speech–text builders: decode back to the source, markers only at changes, loss masks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from speechlm.core.errors import ConfigError, DataError
from speechlm.lm.interleave import builders  # noqa: F401  (registers the builders)
from speechlm.lm.interleave.packing import EpochExamples
from speechlm.lm.interleave.tokens import (MODALITY, SPEECH, TEXT, AlignedUtterance, Segment,
                                           ids_to_segments, joint_vocab, marker_id, merge,
                                           segments_to_ids, unit_cuts)
from speechlm.lm.sequences import IGNORE, get_builder
from speechlm.lm.streams import TokenSpace
from speechlm.lm.vocab import SpeechVocab

VOCAB = joint_vocab(SpeechVocab.for_units(20), SpeechVocab.for_text(30))
SPACE = TokenSpace.single(VOCAB, "units")
MARKS = {marker_id(VOCAB, SPEECH), marker_id(VOCAB, TEXT)}


@st.composite
def utterances(draw) -> AlignedUtterance:
    """Random words, each 1-3 BPE ids and 0-4 units (a word may get no unit of its own)."""
    n = draw(st.integers(1, 12))
    word_ids = tuple(tuple(draw(st.lists(st.integers(0, 29), min_size=1, max_size=3)))
                     for _ in range(n))
    sizes = draw(st.lists(st.integers(0, 4), min_size=n, max_size=n))
    if sum(sizes) == 0:
        sizes[0] = 1
    units = tuple(draw(st.lists(st.integers(0, 19), min_size=sum(sizes), max_size=sum(sizes))))
    cuts = tuple(int(c) for c in np.concatenate([[0], np.cumsum(sizes)]))
    return AlignedUtterance("u", units, tuple(f"w{j}" for j in range(n)), word_ids, cuts)


@settings(max_examples=60, deadline=None)
@given(utterances(), st.integers(0, 2**31 - 1))
def test_speech_text_concat_decode_to_the_source(utt, seed):
    rng = np.random.default_rng(seed)
    n = len(utt.words)
    speech = ids_to_segments(VOCAB, get_builder("speech", SPACE).example(utt, rng).input_ids[0])
    assert speech == [Segment(SPEECH, utt.units)]
    text = ids_to_segments(VOCAB, get_builder("text", SPACE).example(utt, rng).input_ids[0])
    assert text == [Segment(TEXT, utt.text(0, n))]
    for order, want in (("speech_first", [SPEECH, TEXT]), ("text_first", [TEXT, SPEECH])):
        got = ids_to_segments(VOCAB, get_builder("concat", SPACE, options={"order": order})
                              .example(utt, rng).input_ids[0])
        assert [s.modality for s in got] == want
        assert {s.modality: s.tokens for s in got} == {SPEECH: utt.units, TEXT: utt.text(0, n)}


@settings(max_examples=150, deadline=None)
@given(utterances(), st.integers(0, 2**31 - 1), st.floats(0, 1), st.integers(1, 4))
def test_interleave_decodes_to_the_words_in_order_with_markers_only_at_changes(utt, seed, share, low):
    builder = get_builder("interleave", SPACE,
                          options={"speech_share": share, "span_words": [low, low + 2]})
    spans = builder.spans(len(utt.words), np.random.default_rng(seed))
    example = builder.example(utt, np.random.default_rng(seed))
    ids = example.input_ids[0].tolist()
    segments = ids_to_segments(VOCAB, ids)
    # the spans cover the words in order; merging spans of one modality gives the segments
    assert [a for a, _, _ in spans] == [0] + [b for _, b, _ in spans[:-1]]
    assert spans[-1][1] == len(utt.words)
    assert all(low <= b - a <= low + 2 for a, b, _ in spans[:-1])
    expected = [Segment(m, utt.speech(a, b) if m == SPEECH else utt.text(a, b)) for a, b, m in spans]
    assert segments == merge(expected)
    # decoding back: all units of the spoken words and all BPE of the written ones, in order
    assert [u for s in segments if s.modality == SPEECH for u in s.tokens] == \
        [u for a, b, m in spans if m == SPEECH for u in utt.speech(a, b)]
    assert [t for s in segments if s.modality == TEXT for t in s.tokens] == \
        [t for a, b, m in spans if m == TEXT for t in utt.text(a, b)]
    # one marker per segment, never two in a row, never the same modality twice in a row
    marks = [k for k, i in enumerate(ids) if i in MARKS]
    assert len(marks) == len(segments)
    assert all(b - a > 1 for a, b in zip(marks, marks[1:]))
    assert all(a.modality != b.modality for a, b in zip(segments, segments[1:]))
    assert np.array_equal(example.labels, example.input_ids)  # default: every position scored


def test_duplicated_marker_regression():
    """SpiRit-LM's reported bug: two adjacent spans of one modality must share one marker."""
    utt = AlignedUtterance("u", (1, 2, 3, 4), ("a", "b", "c"), ((5,), (6,), (7,)), (0, 1, 3, 4))
    ids, roles = segments_to_ids(VOCAB, [Segment(SPEECH, utt.speech(0, 1)),
                                         Segment(SPEECH, utt.speech(1, 2)),
                                         Segment(TEXT, utt.text(2, 3))])
    assert roles == ["bos", "marker:speech", SPEECH, SPEECH, SPEECH, "marker:text", TEXT, "eos"]
    assert ids.count(marker_id(VOCAB, SPEECH)) == 1


@pytest.mark.parametrize("loss_on", [["text"], ["speech"], ["speech", "text"]])
def test_loss_mask_covers_exactly_the_chosen_modality(loss_on):
    utt = AlignedUtterance("u", (1, 2, 3, 4), ("a", "b"), ((5, 8), (6,)), (0, 2, 4))
    builder = get_builder("concat", SPACE, options={"order": "speech_first", "loss_on": loss_on})
    ex = builder.example(utt, np.random.default_rng(0))
    _, roles = segments_to_ids(VOCAB, builder.segments(utt, np.random.default_rng(0)))
    want = [r in ("bos", "eos") or r.removeprefix("marker:") in loss_on for r in roles]
    assert ((ex.labels[0] != IGNORE).tolist()) == want
    assert np.array_equal(ex.labels[0][np.asarray(want)], ex.input_ids[0][np.asarray(want)])


def test_mix_weights_and_speech_share_are_honoured():
    utt = AlignedUtterance("u", tuple(range(10)), tuple("abcdefghij"),
                           tuple((i,) for i in range(10)), tuple(range(11)))
    mix = get_builder("mix", SPACE, options={"weights": {"speech": 1, "text": 3}})
    kinds = [tuple(s.modality for s in mix.segments(utt, np.random.default_rng(i)))
             for i in range(400)]
    assert set(kinds) == {(SPEECH,), (TEXT,)}
    assert 0.68 < kinds.count((TEXT,)) / 400 < 0.82
    inter = get_builder("interleave", SPACE, options={"speech_share": 0.8, "span_words": [1, 1]})
    spoken = [m == SPEECH for i in range(200)
              for _, _, m in inter.spans(10, np.random.default_rng(i))]
    assert 0.75 < np.mean(spoken) < 0.85


def test_spans_are_redrawn_every_epoch_and_resume_exactly():
    utts = [AlignedUtterance(f"u{k}", tuple(range(12)), tuple("abcdef"),
                             tuple((i,) for i in range(6)), (0, 2, 4, 6, 8, 10, 12))
            for k in range(20)]
    builder = get_builder("interleave", SPACE)
    e0, e1 = builder.draw(utts, 0, 0), builder.draw(utts, 0, 1)
    assert [e.input_ids.tolist() for e in e0] != [e.input_ids.tolist() for e in e1]
    assert [e.input_ids.tolist() for e in e0] == [e.input_ids.tolist() for e in builder.draw(utts, 0, 0)]
    packed = EpochExamples(lambda epoch: builder.draw(utts, 0, epoch), 16, seed=0)
    n = packed.blocks_per_epoch
    later = packed.blocks(n, 3).input_ids
    fresh = EpochExamples(lambda epoch: builder.draw(utts, 0, epoch), 16, seed=0)
    assert not np.array_equal(packed.blocks(0, 3).input_ids, later)
    assert np.array_equal(fresh.blocks(n, 3).input_ids, later)  # cursor alone fixes the data


def test_bad_options_fail_naming_the_key():
    with pytest.raises(ConfigError, match="unknown key"):
        get_builder("interleave", SPACE, options={"speech_shar": 0.5})
    with pytest.raises(ConfigError, match="speech_share"):
        get_builder("interleave", SPACE, options={"speech_share": 2})
    with pytest.raises(ConfigError, match="weights"):
        get_builder("mix", SPACE, options={"weights": {"dance": 1}})
    with pytest.raises(ConfigError, match="takes no sequence_options"):
        get_builder("pretrain", TokenSpace.single(SpeechVocab.for_units(5)), options={"x": 1})
    with pytest.raises(ConfigError, match="recipe: sutlm"):
        get_builder("speech", SPACE).examples([np.zeros((1, 3), dtype=np.int64)], "t")


def test_segments_reject_tokens_outside_their_modality():
    with pytest.raises(DataError, match="outside"):
        ids_to_segments(VOCAB, [VOCAB.bos_id, marker_id(VOCAB, TEXT), VOCAB.encode("units", [1])[0]])
    assert VOCAB.family(MODALITY).labels == ("[TEXT]", "[SPEECH]")


def test_unit_cuts_follow_word_starts():
    # units of 2, 3, 1, 4 frames; words start at frames 0, 5, 6
    assert unit_cuts(np.array([2, 3, 1, 4]), [0, 5, 6]) == [0, 2, 3, 4]
