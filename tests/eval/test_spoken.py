"""Spoken benchmark audio depends only on the benchmark and the voices; both caches miss whenever
anything their content depends on changes."""

import os
from dataclasses import replace

import pytest

from speechlm.data.synth import pick_voices
from speechlm.eval import spoken
from speechlm.eval.benchmarks import Benchmark, Pair, lexical_benchmark
from speechlm.eval.spoken import (audio_cache_path, encode_benchmark, render_audio,
                                  tokenizer_fingerprint, units_cache_path)
from speechlm.eval.testing import EnergyTokenizer

BENCH = Benchmark("t", "t-1", (
    Pair("p0", "The dog runs home.", "The dog run home."),
    Pair("p1", "cat", "nonword", good_speech="[[k'at]]", bad_speech="[[n'0nw3:d]]"),
    Pair("p2", "The dog runs home.", "The dogs runs home."),
))
SHORT = Benchmark("s", "s-1", (Pair("q0", "A dog ran.", "A dog run."),))


@pytest.fixture(scope="module")
def voice_sets():
    _, heldout = pick_voices(2, 2, seed=0)
    _, other = pick_voices(2, 2, seed=1)
    return heldout, other


def test_rendered_audio_is_reproducible_and_shares_clips(tmp_path, voice_sets):
    heldout, _ = voice_sets
    first = render_audio(BENCH, heldout, tmp_path / "a", chunk_size=2).to_pydict()
    second = render_audio(BENCH, heldout, tmp_path / "b", chunk_size=2, workers=1).to_pydict()
    assert first == second  # byte-identical FLAC, whatever the worker count
    assert first["voice"] == [heldout[0].name, heldout[1].name, heldout[0].name]
    assert first["good"][0] == first["good"][2]  # same text and voice: spoken once
    assert len({*first["good"], *first["bad"]}) == 5 and all(first["good"] + first["bad"])
    cached = tmp_path / "a"
    assert len(list(cached.glob("*.audio.parquet"))) == 1
    assert render_audio(BENCH, heldout, cached, chunk_size=2).to_pydict() == first  # the cache


def test_good_and_bad_columns_hold_their_own_items(tmp_path, voice_sets):
    """A short good item against a long bad one: the good column must hold the shorter clip."""
    bench = Benchmark("len", "len-1", (
        Pair("a", "Yes.", "The old grey dog walked slowly along the river bank."),
        Pair("b", "The old grey dog walked slowly along the river bank.", "No.")))
    table = render_audio(bench, voice_sets[0], tmp_path).to_pydict()
    assert len(table["good"][0]) < len(table["bad"][0])
    assert len(table["good"][1]) > len(table["bad"][1])


def test_audio_cache_key_covers_everything_the_audio_depends_on(tmp_path, voice_sets,
                                                                monkeypatch):
    heldout, other = voice_sets
    base = audio_cache_path(BENCH, heldout, tmp_path, 32)
    assert audio_cache_path(BENCH, list(heldout), tmp_path, 32) == base  # same inputs: a hit
    texts = replace(BENCH, pairs=(replace(BENCH.pairs[0], bad="The dogs run home."),
                                  *BENCH.pairs[1:]))
    changed = {
        "voices": audio_cache_path(BENCH, other, tmp_path, 32),
        "one voice's pitch": audio_cache_path(
            BENCH, [replace(heldout[0], pitch=heldout[0].pitch + 1), *heldout[1:]], tmp_path, 32),
        "text": audio_cache_path(texts, heldout, tmp_path, 32),
        "benchmark version": audio_cache_path(replace(BENCH, version="t-2"), heldout, tmp_path, 32),
        "chunk size": audio_cache_path(BENCH, heldout, tmp_path, 16),
        "seed": audio_cache_path(lexical_benchmark(5, seed=1), heldout, tmp_path, 32),
    }
    assert audio_cache_path(lexical_benchmark(5, seed=0), heldout, tmp_path, 32) \
        != changed["seed"]
    monkeypatch.setattr(spoken, "RENDERER", "render-next")
    changed["renderer version"] = audio_cache_path(BENCH, heldout, tmp_path, 32)
    monkeypatch.undo()
    monkeypatch.setattr(spoken.importlib.metadata, "version", lambda name: "999")
    changed["espeak version"] = audio_cache_path(BENCH, heldout, tmp_path, 32)
    assert {name: path for name, path in changed.items() if path == base} == {}
    assert len(set(changed.values())) == len(changed)


def test_tokenizer_fingerprint_follows_content(tmp_path):
    tok = tmp_path / "tok"
    tok.mkdir()
    (tok / "centroids.bin").write_bytes(b"aaaa")
    before = tokenizer_fingerprint(tok)
    stat = (tok / "centroids.bin").stat()
    (tok / "centroids.bin").write_bytes(b"bbbb")  # retrained in place: same size and mtime
    os.utime(tok / "centroids.bin", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert tokenizer_fingerprint(tok) != before
    copy = tmp_path / "elsewhere"
    copy.mkdir()
    (copy / "centroids.bin").write_bytes(b"bbbb")
    assert tokenizer_fingerprint(copy) == tokenizer_fingerprint(tok)  # a copy is a hit


class CountingTokenizer(EnergyTokenizer):
    def __init__(self, vocab_size: int = 8) -> None:
        super().__init__(vocab_size)
        self.calls = 0

    def encode(self, samples, dedup=True):
        self.calls += 1
        return super().encode(samples, dedup)


def test_units_cache_misses_when_voices_tokenizer_or_dedup_change(tmp_path, voice_sets,
                                                                  monkeypatch):
    """The stale-units bug: another corpus' held-out voices with the same tokenizer must not
    reuse units of the first voices."""
    heldout, other = voice_sets
    cache = tmp_path / "cache"
    audio = render_audio(SHORT, heldout, cache)
    audio_other = render_audio(SHORT, other, cache)
    tok = CountingTokenizer()

    def encode(table, fingerprint, dedup=True):
        before = tok.calls
        units = encode_benchmark(SHORT, table, tok, fingerprint, dedup, cache)
        return units, tok.calls > before  # (units, was it a miss)

    first, miss = encode(audio, "tok-a")
    assert miss and len(list(cache.glob("*.units.parquet"))) == 1
    again, miss = encode(audio, "tok-a")
    assert not miss and [u.tolist() for u in again[0]] == [u.tolist() for u in first[0]]
    assert encode(audio_other, "tok-a")[1], "other voices reused cached units"
    assert encode(audio, "tok-b")[1], "another tokenizer reused cached units"
    assert encode(audio, "tok-a", dedup=False)[1], "frames reused deduplicated units"
    assert len({units_cache_path(SHORT, table, fp, d, cache) for table, fp, d in
                [(audio, "tok-a", True), (audio_other, "tok-a", True), (audio, "tok-b", True),
                 (audio, "tok-a", False)]}) == 4
    monkeypatch.setattr(spoken, "UNITS_FORMAT", "units-next")
    assert encode(audio, "tok-a")[1], "a new units format reused cached units"


def test_tokenizing_in_worker_processes_matches_this_process(tmp_path, voice_sets):
    import numpy as np

    from speechlm.tokenizers.semantic.extractors import MfccExtractor
    from speechlm.tokenizers.semantic.kmeans import KMeansQuantizer
    from speechlm.tokenizers.semantic.tokenizer import UnitTokenizer

    rng = np.random.default_rng(0)
    tokenizer = UnitTokenizer(MfccExtractor(), KMeansQuantizer(rng.normal(size=(16, 39)),
                                                                np.zeros(39), np.ones(39)))
    tok_dir = tokenizer.save(tmp_path / "tok")
    audio = render_audio(BENCH, voice_sets[0], tmp_path / "cache").to_pydict()
    clips = audio["good"] + audio["bad"]
    here = list(spoken._encode_clips(clips, tokenizer, None, True, 1, workers=1))
    there = list(spoken._encode_clips(clips, None, str(tok_dir), True, 1, workers=2, chunk_size=2))
    assert len(here) == len(clips) and [u.tolist() for u in here] == [u.tolist() for u in there]


def test_heldout_voices_are_the_ones_the_corpus_meta_records(tmp_path):
    import json

    from speechlm.data.tts import Voice
    from speechlm.eval.spoken import heldout_voices

    params = {"voices": 4, "heldout_voices": 2, "seed": 3}
    _, computed = pick_voices(4, 2, seed=3)
    meta = {"params": params, "heldout_voices": [computed[1].name, "en-us+m7"]}
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    voices = heldout_voices(tmp_path)
    assert voices == [computed[1], Voice("en-us+m7")]  # the recorded names, in their order;
    # prosody from the synth parameters where they give the name, espeak defaults otherwise
    (tmp_path / "meta.json").write_text(json.dumps({"params": {}}))  # an imported corpus
    assert heldout_voices(tmp_path) == heldout_voices() == pick_voices(12, 3, seed=0)[1]
