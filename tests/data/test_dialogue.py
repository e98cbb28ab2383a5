"""The two-channel dialogue corpus: events agree with the audio, determinism, errors, CLI."""

import dataclasses
import itertools
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from speechlm.cli import main
from speechlm.core.errors import ConfigError, DataError
from speechlm.data.audio import SAMPLE_RATE, encode_flac
from speechlm.data.corpus import Corpus
from speechlm.data.dialogue import (DIALOGUE_SPLITS, SYSTEM, USER, Dialogue, DialogueConfig,
                                    DialogueCorpus, Event, synthesize_dialogues)
from speechlm.data.dialogue.corpus import SCHEMA
from speechlm.data.dialogue.record import FRAME, active_frames, intersect, merge, subtract
from speechlm.data.dialogue.script import plan_dialogues, split_for
from speechlm.data.dialogue.text import group_of, instruction_pairs, text_pools
from speechlm.data.synth import pick_voices

# every scripted event is likely, so a two-minute corpus shows each kind several times
BUSY = DialogueConfig(interruption_prob=0.6, non_query_prob=0.9, backchannel_prob=0.8,
                      pause_prob=0.5, overlap_prob=0.4, interrupt_stop_ms=150.0)


@pytest.fixture(scope="module")
def busy_corpus(tmp_path_factory) -> DialogueCorpus:
    out = tmp_path_factory.mktemp("dialogue") / "busy"
    return synthesize_dialogues(out, hours=120 / 3600, voices=3, heldout_voices=3, seed=5,
                                config=BUSY, show_progress=False)


def frames(spans: list[tuple[float, float]], n: int, pad: int = 0) -> np.ndarray:
    """Boolean frame mask of time spans, widened by ``pad`` frames on each side."""
    mask = np.zeros(n, dtype=bool)
    for start, end in spans:
        a = max(0, int(start * SAMPLE_RATE) // FRAME - pad)
        mask[a:-(-int(end * SAMPLE_RATE) // FRAME) + pad] = True
    return mask


def test_energy_only_where_events_say_and_overlaps_exactly_where_declared(busy_corpus):
    for d in busy_corpus:
        audio = d.samples()
        active = np.stack([active_frames(channel) for channel in audio])
        n = active.shape[1]
        for channel in (USER, SYSTEM):
            declared = frames(d.sounding(channel), n, pad=1)
            assert not (active[channel] & ~declared).any(), (d.id, channel)
            for pause in d.of("pause", channel):  # a pause inside a turn is silent
                inner = frames([(pause.start + 0.02, pause.end - 0.02)], n)
                assert not active[channel, inner].any(), (d.id, pause)
        both = active[USER] & active[SYSTEM]
        overlaps = [(e.start, e.end) for e in d.of("overlap")]
        assert not (both & ~frames(overlaps, n, pad=1)).any(), d.id
        for start, end in overlaps:
            assert both[frames([(start, end)], n)].any(), (d.id, start, end)
        for channel in (USER, SYSTEM):  # words lie where the channel sounds
            spans = d.sounding(channel)
            assert all(any(a - 1e-6 <= s and e <= b + 1e-6 for a, b in spans)
                       for _, s, e in d.words[channel])


def test_interruptions_stop_the_system_within_the_configured_time(busy_corpus):
    dialogues = list(busy_corpus)
    interruptions = [(d, e) for d in dialogues for e in d.of("interruption")]
    assert len(interruptions) >= 3
    for d, event in interruptions:
        assert 0 < event.duration <= BUSY.interrupt_stop_ms / 1000 + 1e-9
        audio = d.samples()
        system = active_frames(audio[SYSTEM])
        # silent until it next says something (a backchannel to the new query, or its reply)
        quiet_until = min((a for a, _ in d.sounding(SYSTEM) if a > event.end), default=d.duration)
        stop_frame = -(-int(event.end * SAMPLE_RATE) // FRAME) + 1
        assert not system[stop_frame:int(quiet_until * SAMPLE_RATE) // FRAME].any(), d.id
        user = active_frames(audio[USER])
        onset = int(event.start * SAMPLE_RATE) // FRAME
        assert user[onset:onset + 10].any()  # the user really starts talking at the barge-in
        assert any(o.label == "interruption" and o.start == event.start for o in d.of("overlap"))
    stats = busy_corpus.stats()
    assert stats["interruptions"] == len(interruptions)
    assert stats["interruption_stop_ms"]["max"] <= BUSY.interrupt_stop_ms + 1e-6


def test_every_event_kind_and_silence_mode_labels(busy_corpus):
    dialogues = list(busy_corpus)
    labels = {(e.kind, e.label) for d in dialogues for e in d.events}
    kinds = {kind for kind, _ in labels}
    assert kinds == {"turn", "pause", "backchannel", "overlap", "interruption", "non_query"}
    non_query = {label for kind, label in labels if kind == "non_query"}
    assert {"third_voice", "side_talk"} <= non_query
    assert any(label.startswith("noise") for label in non_query)
    assert {label for kind, label in labels if kind == "overlap"} == \
        {"turn_start", "backchannel", "interruption"}
    for d in dialogues:
        segments = d.user_segments()
        assert {label for *_, label in segments} <= {"query", "non_query"}
        # silence mode target: the system says nothing from non-query audio to the next query
        for e in d.of("non_query"):
            next_query = min((t.start for t in d.of("turn", USER) if t.start >= e.end),
                             default=d.duration)
            assert not intersect(d.sounding(SYSTEM), [(e.start, next_query)])
        for b in d.of("backchannel"):  # in the listener's channel, during the other's turn
            assert any(t.start <= b.start < t.end for t in d.of("turn", 1 - b.channel))
            if b.channel == USER:      # by default only in the system's pauses: user sound over
                assert not intersect(d.sounding(SYSTEM), [(b.start, b.end)])  # it is a barge-in
    assert {d.split for d in dialogues} == {"train", "heldout"}
    voices = busy_corpus.meta
    heldout = {v.replace("+", "_") for v in voices["heldout_voices"]}
    for d in dialogues:
        assert (set(d.speakers) <= heldout) == (d.split == "heldout")


def test_user_backchannels_over_system_speech_are_an_option(tmp_path):
    config = dataclasses.replace(BUSY, user_backchannel_overlap=1.0, backchannel_prob=1.0,
                                 interruption_prob=0.0)
    corpus = synthesize_dialogues(tmp_path / "d", hours=90 / 3600, voices=3, heldout_voices=0,
                                  seed=1, config=config, show_progress=False)
    user = [(d, b) for d in corpus for b in d.of("backchannel", USER)]
    assert user and all(intersect(d.sounding(SYSTEM), [(b.start, b.end)]) for d, b in user)
    with pytest.raises(ConfigError, match="user_backchannel_overlap"):
        DialogueConfig(user_backchannel_overlap=1.5)


@pytest.mark.parametrize("early", [0.0, 1.0])
def test_early_barge_ins_come_in_the_responses_first_second(tmp_path, early):
    config = dataclasses.replace(BUSY, interruption_prob=1.0, early_interruption_prob=early,
                                 non_query_prob=0.0)
    corpus = synthesize_dialogues(tmp_path / "d", hours=60 / 3600, voices=3, heldout_voices=0,
                                  seed=2, config=config, show_progress=False)
    delays = [i.start - next(t.start for t in d.of("turn", SYSTEM) if t.start < i.start < t.end)
              for d in corpus for i in d.of("interruption")]
    assert len(delays) >= 2
    if early:   # in the response's first second, once it sounds
        assert all(0.15 <= x < 1.0 for x in delays), delays
    else:
        assert all(x >= 1.0 for x in delays), delays


def test_record_round_trip_and_stats(busy_corpus):
    d = next(iter(busy_corpus))
    assert Dialogue.from_dict(d.to_dict()) == d
    user, system = d.samples()
    assert user.size == system.size == round(d.duration * SAMPLE_RATE)
    stats = busy_corpus.meta["stats"]
    assert stats == busy_corpus.stats()
    assert stats["turns"]["query"] >= stats["turns"]["response"] > 0
    assert stats["backchannels"] > 0 and stats["pauses"] > 0
    gaps = stats["gaps_s"]["user_to_system"]
    assert gaps["n"] > 0 and sum(gaps["histogram"]["counts"]) == gaps["n"]
    assert 0 < stats["non_query_share"]["segments"] < 1
    assert len(busy_corpus) == stats["dialogues"] == sum(s["dialogues"] for s in
                                                         stats["splits"].values())


def test_synthesis_is_byte_identical_for_one_or_two_workers(tmp_path):
    kwargs = dict(hours=40 / 3600, voices=3, heldout_voices=0, seed=11, show_progress=False,
                  config=DialogueConfig(exchanges=(1, 1)), chunk_size=1)  # several processes
    a = synthesize_dialogues(tmp_path / "a", workers=1, **kwargs)
    b = synthesize_dialogues(tmp_path / "b", workers=2, **kwargs)
    da, db = list(a), list(b)
    assert len(da) >= 2 and da == db
    shards = sorted((tmp_path / "a" / "dialogues").glob("*.parquet"))
    assert shards and all(s.read_bytes() == (tmp_path / "b" / "dialogues" / s.name).read_bytes()
                          for s in shards)
    pools, (train, heldout) = text_pools(), pick_voices(3, 0, 11)
    first = [next(plan_dialogues(pools, train, heldout, DialogueConfig(), seed))
             for seed in (11, 12)]
    assert first[0].exchanges != first[1].exchanges


def test_scripts_spread_splits_and_keep_voices_and_text_apart():
    pools = text_pools()
    train, heldout = pick_voices(6, 3, seed=0)
    scripts = list(itertools.islice(plan_dialogues(pools, train, heldout, DialogueConfig(), 0), 60))
    assert {s.split for s in scripts} == set(DIALOGUE_SPLITS)
    assert scripts == list(itertools.islice(plan_dialogues(pools, train, heldout,
                                                           DialogueConfig(), 0), 60))
    names = {v.name.replace("+", "_") for v in heldout}
    for s in scripts:
        voices = {*s.speakers, s.other_speaker}
        assert len(voices) == 3 and (voices <= names) == (s.split == "heldout")
        group = {"train": "train", "valid": "valid"}.get(s.split, "eval")
        assert all(group_of(x.question) == group for x in s.exchanges)
    assert [split_for(k, DialogueConfig()) for k in range(10)].count("train") == 8


def test_text_pools_are_disjoint_and_clean():
    pools = text_pools()
    questions = [{p.question for p in pool.pairs} for pool in pools.values()]
    assert all(not a & b for a, b in itertools.combinations(questions, 2))
    assert len(instruction_pairs()) == 34
    for pool in pools.values():
        assert pool.pairs and pool.conversations and pool.lines
        assert all(not any(c.isdigit() for c in line) for line in pool.lines)
        assert all(sum(w.isupper() for w in line.split()) <= len(line.split()) // 2
                   for line in pool.lines)


def test_interval_helpers():
    assert merge([(3, 4), (0, 1), (0.5, 2)]) == [(0, 2), (3, 4)]
    assert intersect([(0, 2), (3, 5)], [(1, 4)]) == [(1, 2), (3, 4)]
    assert subtract([(0, 10)], [(2, 3), (5, 6)]) == [(0, 2), (3, 5), (6, 10)]


def _write_shard(root: Path, dialogue: Dialogue) -> Path:
    """A dialogue corpus with one (possibly malformed) record, bypassing the writer's checks."""
    (root / "dialogues").mkdir(parents=True)
    (root / "meta.json").write_text(json.dumps({"kind": "dialogue", "version": 1}))
    shard = root / "dialogues" / "train-00000.parquet"
    pq.write_table(pa.Table.from_pylist([dialogue.to_dict()], schema=SCHEMA), shard)
    return shard


def _malformed(d: Dialogue) -> dict[str, tuple[Dialogue, str]]:
    turn = d.of("turn", USER)[0]
    overlap = d.of("overlap")[0]
    other = [e for e in d.events if e is not overlap]
    silent = d.samples()
    silent[SYSTEM] = 0.0
    return {
        "unknown label": (dataclasses.replace(d, events=d.events + (
            Event("backchannel", "uh-oh", USER, 0.1, 0.2),)), "unknown backchannel label 'uh-oh'"),
        "outside audio": (dataclasses.replace(d, events=d.events + (
            Event("non_query", "noise_low", USER, d.duration + 1, d.duration + 2),)),
            "outside the audio"),
        "undeclared overlap": (dataclasses.replace(d, events=tuple(other)),
                               "but no overlap is declared"),
        "double claim": (dataclasses.replace(d, events=d.events + (
            Event("turn", "query", USER, turn.start + 0.1, turn.end + 0.1),)),
            "claim the same time"),
        "overlap in silence": (dataclasses.replace(d, channels=(d.channels[USER],
                                                                encode_flac(silent[SYSTEM]))),
                               "channel 1 is silent there"),
        "short channel": (dataclasses.replace(d, channels=(d.channels[USER],
                                                           encode_flac(silent[SYSTEM, :-800]))),
                          "channels have different lengths"),
        "corrupt audio": (dataclasses.replace(d, channels=(d.channels[USER], b"not flac")),
                          "cannot decode audio"),
    }


def test_malformed_dialogue_metadata_gives_one_line_error(busy_corpus, tmp_path, capsys):
    d = next(x for x in busy_corpus if x.of("overlap"))
    for name, (bad, message) in _malformed(d).items():
        shard = _write_shard(tmp_path / name.replace(" ", "-"), bad)
        assert main(["corpus", "info", str(shard.parent.parent)]) == 2, name
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "Traceback" not in err, err
        assert err.startswith(f"error: {shard}: dialogue {d.id!r}: ") and message in err, err
    with pytest.raises(DataError, match="unknown event kind 'laugh'"):
        dataclasses.replace(d, events=(Event("laugh", "x", 0, 0.0, 1.0),)).validate()


def test_cli_synth_dialogue_end_to_end(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["corpus", "synth-dialogue", "--out", str(out), "--hours", str(20 / 3600),
                 "--voices", "3", "--heldout-voices", "0", "--seed", "3", "--workers", "1",
                 "--interrupt-stop-ms", "120", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["dialogues"] >= 1 and printed["hours"] * 3600 >= 20
    meta = json.loads((out / "meta.json").read_text())
    assert meta["kind"] == "dialogue" and meta["params"]["interrupt_stop_ms"] == 120
    assert main(["corpus", "info", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == printed
    with pytest.raises(DataError, match="no parquet shards under data/"):
        Corpus(out)  # single-channel readers refuse a dialogue corpus
    assert main(["corpus", "synth-dialogue", "--out", str(tmp_path / "x"), "--voices", "2"]) == 2
    assert "voices >= 3" in capsys.readouterr().err
    assert main(["corpus", "synth-dialogue", "--out", str(tmp_path / "x"),
                 "--interruption-prob", "1.5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: dialogue options must lie in [0, 1]") and err.count("\n") == 1
    with pytest.raises(ConfigError):
        DialogueConfig(interrupt_stop_ms=5)
