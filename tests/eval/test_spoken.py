"""Spoken benchmark audio depends only on the benchmark and the voices."""

from speechlm.data.synth import pick_voices
from speechlm.eval.benchmarks import Benchmark, Pair
from speechlm.eval.spoken import render_audio


def test_rendered_audio_is_reproducible_and_shares_clips(tmp_path):
    bench = Benchmark("t", "t-1", (
        Pair("p0", "The dog runs home.", "The dog run home."),
        Pair("p1", "cat", "nonword", good_speech="[[k'at]]", bad_speech="[[n'0nw3:d]]"),
        Pair("p2", "The dog runs home.", "The dogs runs home."),
    ))
    _, heldout = pick_voices(2, 2, seed=0)
    first = render_audio(bench, heldout, tmp_path / "a", chunk_size=2).to_pydict()
    second = render_audio(bench, heldout, tmp_path / "b", chunk_size=2, workers=1).to_pydict()
    assert first == second  # byte-identical FLAC, whatever the worker count
    assert first["voice"] == [heldout[0].name, heldout[1].name, heldout[0].name]
    assert first["good"][0] == first["good"][2]  # same text and voice: spoken once
    assert len({*first["good"], *first["bad"]}) == 5 and all(first["good"] + first["bad"])
    cached = tmp_path / "a"
    assert len(list(cached.glob("*.audio.parquet"))) == 1
    assert render_audio(bench, heldout, cached, chunk_size=2).to_pydict() == first  # the cache
