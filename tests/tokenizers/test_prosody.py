"""F0 extraction, per-unit alignment, speaker normalisation, bins and the pGSLM unit-prosody
tokenizer (save/load, errors, CLI)."""

import json

import numpy as np
import pytest

from speechlm.cli import main
from speechlm.core.errors import CheckpointError, ConfigError
from speechlm.data.corpus import Corpus
from speechlm.tokenizers import train_tokenizer
from speechlm.tokenizers.prosody import (F0Config, SpeakerNorm, UnitProsodyTokenizer, extract_f0,
                                         load_prosody_tokenizer, train_unit_prosody)
from speechlm.tokenizers.prosody.bins import duration_bins, fit_quantiles
from speechlm.tokenizers.prosody.f0 import cents, interpolate_unvoiced, unit_f0

RATE = 16_000


def harmonic(f0_hz: np.ndarray, seed: int = 0) -> np.ndarray:
    """A buzzy harmonic signal following ``f0_hz`` (one value per sample; 0 = silence + noise)."""
    phase = 2 * np.pi * np.cumsum(f0_hz) / RATE
    voiced = f0_hz > 0
    x = sum(np.sin(k * phase) / k for k in range(1, 15)) * voiced * 0.1
    return (x + np.random.default_rng(seed).normal(0, 3e-3, f0_hz.size)).astype(np.float32)


def test_extract_f0_follows_a_known_contour_and_finds_silence():
    t = np.arange(2 * RATE) / RATE
    truth = 140 * 2 ** (0.5 * np.sin(2 * np.pi * 0.7 * t))      # +- half an octave
    truth[RATE // 2: RATE // 2 + 4000] = 0                       # a 250 ms pause
    f0 = extract_f0(harmonic(truth))
    assert f0.shape == (2 * RATE // 160,)
    centres = ((np.arange(f0.size) + 0.5) * 160).astype(int)
    ref = truth[centres]
    both = (f0 > 0) & (ref > 0)
    assert np.median(cents(f0[both], ref[both])) < 15 and np.mean(cents(f0[both], ref[both]) > 100) < 0.01
    pause = slice(RATE // 2 // 160 + 4, (RATE // 2 + 4000) // 160 - 4)
    assert np.all(f0[pause] == 0) and np.mean(f0[ref > 0] > 0) > 0.9


def test_extract_f0_short_clip_is_unvoiced_and_bad_audio_is_one_line():
    assert np.all(extract_f0(np.zeros(600, dtype=np.float32) + 0.01) == 0)
    with pytest.raises(Exception, match="NaN|finite|nan"):
        extract_f0(np.full(4000, np.nan, dtype=np.float32))
    with pytest.raises(ConfigError):
        F0Config(floor=300, ceiling=100)


def test_unit_f0_is_the_mean_of_voiced_frames_per_unit():
    # 10 ms F0 frames, 50 Hz units: two F0 frames per unit frame
    f0 = np.array([100, 0, 120, 140, 0, 0, 200, 220, 0, 0], dtype=float)
    # units of 1, 2 and 2 frames hold F0 frames [0, 1], [2..5], [6..9]
    assert unit_f0(f0, 0.01, np.array([1, 2, 2]), 50.0).tolist() == [100.0, 130.0, 210.0]
    assert unit_f0(f0[:4], 0.01, np.array([1, 1]), 50.0).tolist() == [100.0, 130.0]
    assert unit_f0(np.array([0.0, 0, 0, 0]), 0.01, np.array([2]), 50.0).tolist() == [0.0]
    assert interpolate_unvoiced(np.zeros(3), np.zeros(3, bool)) is None


def test_speaker_norm_falls_back_to_the_utterance_mean():
    a, b = np.array([100.0, 0, 100.0]), np.array([200.0, 200.0])
    norm = SpeakerNorm.fit([("a", a), ("b", b)])
    assert norm.offset("a", np.array([300.0])) == pytest.approx(np.log(100))
    assert norm.offset("new", np.array([0, 400.0, 0])) == pytest.approx(np.log(400))
    assert norm.offset("new", np.zeros(3)) == pytest.approx(np.log([100, 100, 200, 200]).mean())
    assert SpeakerNorm.from_dict(json.loads(json.dumps(norm.to_dict()))) == norm


def test_quantile_bins_have_equal_mass_and_decode_inside_their_bin():
    values = np.random.default_rng(0).normal(size=32_000)
    bins = fit_quantiles(values, 32)
    counts = np.bincount(bins.encode(values), minlength=32)
    assert bins.n == 32 and counts.min() >= 950 and counts.max() <= 1050
    assert np.array_equal(bins.encode(bins.decode(np.arange(32))), np.arange(32))


def test_duration_bins_are_exact_then_logarithmic_and_clip():
    bins = duration_bins(np.arange(1, 200), exact=20, max_frames=100, n_bins=32)
    assert bins.encode(np.arange(1, 21)).tolist() == list(range(20))
    assert bins.encode([150, 1000]).tolist() == [31, 31]
    long = bins.encode(np.arange(21, 101))
    assert np.all(np.diff(long) >= 0) and long.min() == 20 and long.max() <= 31
    with pytest.raises(ConfigError):
        duration_bins(np.ones(3), exact=40, n_bins=32)


@pytest.fixture(scope="module")
def unit_tok(tiny_corpus, tmp_path_factory):
    return train_tokenizer(tiny_corpus, tmp_path_factory.mktemp("units") / "mfcc", features="mfcc",
                           units=16, show_progress=False)


@pytest.fixture(scope="module")
def prosody_tok(tiny_corpus, unit_tok, tmp_path_factory):
    return train_unit_prosody(tiny_corpus, unit_tok, tmp_path_factory.mktemp("pros") / "p",
                              show_progress=False)


def test_unit_prosody_streams_align_with_units_and_decode_to_f0(tiny_corpus, prosody_tok):
    tok = load_prosody_tokenizer(prosody_tok)
    assert isinstance(tok, UnitProsodyTokenizer) and tok.vocab_sizes == {"duration": 32, "f0": 33}
    config = json.loads((prosody_tok / "config.json").read_text())
    assert [s["name"] for s in config["streams"]] == ["units", "duration", "f0"]
    utt = next(Corpus(tiny_corpus).utterances("heldout"))
    p = tok.encode(utt.samples(), speaker=utt.speaker)
    streams = p.streams()
    assert streams.shape == (3, p.units.size) and streams.dtype == np.int64
    assert p.durations.sum() == utt.samples().size // 320
    assert streams[1].max() < 32 and streams[2].max() < 32  # interpolation: no unvoiced token
    voiced = p.f0_hz > 0
    error = cents(tok.decode_f0(p.f0_tokens, p.offset)[voiced], p.f0_hz[voiced])
    assert np.median(error) < 30
    assert tok.contour(p.f0_tokens, p.durations, p.offset).size == p.durations.sum()
    assert np.array_equal(tok.decode_durations(p.duration_tokens), np.minimum(p.durations, 20)) \
        or (p.durations > 20).any()
    # the unseen speaker's offset is the utterance's own mean log-F0
    f0 = extract_f0(utt.samples(), tok.f0_config)
    assert p.offset == pytest.approx(np.log(f0[f0 > 0]).mean())


def test_unit_prosody_without_interpolation_marks_unvoiced_units(tiny_corpus, prosody_tok):
    tok = load_prosody_tokenizer(prosody_tok)
    tok.interpolate = False
    utt = next(Corpus(tiny_corpus).utterances("train"))
    p = tok.encode(utt.samples(), speaker=utt.speaker)
    assert np.array_equal(p.f0_tokens == tok.unvoiced_token, p.f0_hz == 0)
    assert np.all(tok.decode_f0(p.f0_tokens, p.offset)[p.f0_hz == 0] == 0)


def test_missing_or_corrupt_files_fail_with_one_line(prosody_tok, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(prosody_tok, broken)
    (broken / "bins.safetensors").unlink()
    with pytest.raises(CheckpointError, match="bins.safetensors: missing .*bin edges"):
        load_prosody_tokenizer(broken)
    (broken / "bins.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="corrupt safetensors"):
        load_prosody_tokenizer(broken)
    shutil.copy(prosody_tok / "bins.safetensors", broken / "bins.safetensors")
    (broken / "speakers.json").write_text("{")
    with pytest.raises(CheckpointError, match="speakers.json: corrupt JSON"):
        load_prosody_tokenizer(broken)
    with pytest.raises(CheckpointError, match="not found"):
        load_prosody_tokenizer(tmp_path / "nowhere")


def test_cli_train_encode_eval(tiny_corpus, unit_tok, tmp_path, capsys):
    config = tmp_path / "p.yaml"
    config.write_text(f"corpus: {tiny_corpus}\nf0_bins: 16\n")
    out = tmp_path / "tok"
    assert main(["prosody", "train", "unit", "--config", str(config), "--out", str(out),
                 "--units-tokenizer", str(unit_tok), "exact_durations=10"]) == 0
    tok = load_prosody_tokenizer(out)
    assert tok.f0_bins.n == 16 and tok.duration.encode([10, 11]).tolist() == [9, 10]
    assert main(["prosody", "train", "unit", "--config", str(config), "--out", str(out),
                 "--units-tokenizer", str(unit_tok), "f0_bin=3"]) == 2
    assert "unknown key(s) f0_bin" in capsys.readouterr().err

    assert main(["prosody", "encode", "--tokenizer", str(out), "--corpus", str(tiny_corpus),
                 "--out", str(tmp_path / "ds")]) == 0
    from speechlm.tokenizers.tokens import TokenDataset

    ds = TokenDataset(tmp_path / "ds")
    assert ds.stream_names == ["units", "duration", "f0"]
    assert ds.stream("f0").vocab_size == 17 and ds.stream("f0").tokenizer == str(out.resolve())
    record = ds.split("heldout")[0]
    utt = next(u for u in Corpus(tiny_corpus).utterances("heldout") if u.id == record.id)
    p = tok.encode(utt.samples(), utt.speaker, units=(record.units, record.durations))
    assert np.array_equal(ds.streams("heldout")[0], p.streams())

    capsys.readouterr()
    assert main(["prosody", "eval", "--tokenizer", str(out), "--corpus", str(tiny_corpus),
                 "--json", "--out", str(tmp_path / "rt.json")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["median_cents"] < result["flat_median_cents"]
    assert json.loads((tmp_path / "rt.json").read_text()) == result

    (out / "bins.safetensors").unlink()  # a tokenizer without its bin edges: one line, exit 2
    assert main(["prosody", "eval", "--tokenizer", str(out), "--corpus", str(tiny_corpus)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "bin edges" in err and err.count("\n") == 1
