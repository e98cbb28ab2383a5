"""Pitch VQ-VAE and style tokenizers, and a token dataset holding every prosody stream."""

import json

import numpy as np
import pytest

from speechlm.cli import main
from speechlm.core.errors import CheckpointError, ConfigError
from speechlm.data.corpus import Corpus
from speechlm.tokenizers import TokenDataset, train_tokenizer
from speechlm.tokenizers.prosody import (PitchVQConfig, PitchVQTokenizer, StyleTokenizer, extract_f0,
                                         load_prosody_tokenizer, train_pitch_vq,
                                         train_style_tokenizer)
from speechlm.tokenizers.prosody.dataset import encode_corpus
from speechlm.tokenizers.prosody.features import FEATURE_NAMES, windows


@pytest.fixture(scope="module")
def pitch_tok(tiny_corpus, tmp_path_factory):
    return train_pitch_vq(tiny_corpus, tmp_path_factory.mktemp("vq") / "vq", steps=30,
                          config=PitchVQConfig(codebook_size=16, channels=16, code_dim=8),
                          show_progress=False)


@pytest.fixture(scope="module")
def style_tok(tiny_corpus, tmp_path_factory):
    return train_style_tokenizer(tiny_corpus, tmp_path_factory.mktemp("style") / "st", k=4,
                                 show_progress=False)


def test_pitch_vq_codes_at_12_5_hz_decode_to_a_contour(tiny_corpus, pitch_tok):
    tok = load_prosody_tokenizer(pitch_tok)
    assert isinstance(tok, PitchVQTokenizer) and tok.frame_rate == 12.5 and tok.vocab_size == 16
    utt = next(Corpus(tiny_corpus).utterances("heldout"))
    samples = utt.samples()
    codes, ones = tok.encode(samples, utt.speaker, dedup=False)
    frames = samples.size // 320
    assert codes.size == -(-frames // 4) and np.all(ones == 1) and codes.max() < 16
    runs, durations = tok.encode(samples, utt.speaker)
    assert np.array_equal(np.repeat(runs, durations), codes)
    raw, offset = tok.encode_f0(extract_f0(samples, tok.f0_config), utt.speaker)
    assert np.array_equal(raw, codes)
    contour = tok.decode(runs, offset, durations=durations, n_frames=frames)
    assert contour.shape == (frames,) and np.all(contour >= 0)
    assert np.all((contour == 0) | ((contour > 30) & (contour < 2000)))
    # the same weights after a reload give the same codes
    assert np.array_equal(load_prosody_tokenizer(pitch_tok).encode(samples, utt.speaker)[0], runs)


def test_pitch_vq_bad_config_and_weights(pitch_tok, tmp_path):
    import shutil

    with pytest.raises(ConfigError):
        PitchVQConfig(downsample=3)
    broken = tmp_path / "vq"
    shutil.copytree(pitch_tok, broken)
    config = json.loads((broken / "config.json").read_text())
    config["model"]["channels"] = 32
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="do not fit the config"):
        load_prosody_tokenizer(broken)
    (broken / "model.safetensors").write_bytes(b"\0" * 10)
    with pytest.raises(CheckpointError, match="corrupt safetensors"):
        load_prosody_tokenizer(broken)


def test_style_tokens_one_per_second(tiny_corpus, style_tok):
    tok = load_prosody_tokenizer(style_tok)
    assert isinstance(tok, StyleTokenizer) and tok.frame_rate == 1.0 and tok.vocab_size == 4
    utt = next(Corpus(tiny_corpus).utterances("heldout"))
    tokens, ones = tok.encode(utt.samples(), dedup=False)
    assert tokens.size == len(windows(utt.samples().size // 160, 100))
    assert abs(tokens.size - utt.duration) <= 1
    assert tokens.max() < 4 and np.all(ones == 1)
    assert windows(240, 100) == [(0, 100), (100, 240)] and windows(260, 100)[-1] == (200, 260)
    assert len(FEATURE_NAMES) == tok.quantizer.centroids.shape[1]


def test_one_token_dataset_holds_units_and_every_prosody_stream(tiny_corpus, pitch_tok, style_tok,
                                                                tmp_path):
    units = train_tokenizer(tiny_corpus, tmp_path / "units", features="mfcc", units=16,
                            show_progress=False)
    with pytest.raises(ConfigError, match="no unit tokenizer"):
        encode_corpus(tiny_corpus, tmp_path / "x", [pitch_tok], show_progress=False)
    out = encode_corpus(tiny_corpus, tmp_path / "ds", [pitch_tok, style_tok], units_dir=units,
                        splits=("heldout",), show_progress=False)
    ds = TokenDataset(out)
    assert [(s.name, s.kind, s.frame_rate) for s in ds.stream_specs] == \
        [("units", "units", 50.0), ("pitch", "prosody", 50.0), ("style", "prosody", 50.0)]
    assert ds.stream("pitch").tokenizer == str(pitch_tok) and "12.5 Hz" in ds.stream("pitch").derived
    record = ds.split("heldout")[0]
    codes = ds.streams("heldout")[0]
    assert codes.shape == (3, record.units.size) and codes[1].max() < 16 and codes[2].max() < 4
    # each unit carries the code of the pitch step / style window that holds its centre
    utt = next(u for u in Corpus(tiny_corpus).utterances("heldout") if u.id == record.id)
    tok = load_prosody_tokenizer(pitch_tok)
    steps, _ = tok.encode(utt.samples(), utt.speaker, dedup=False)
    centre_frames = np.cumsum(record.durations) - record.durations / 2
    assert np.array_equal(record["pitch"], steps[np.minimum(centre_frames // 4, steps.size - 1).astype(int)])
    styles, _ = load_prosody_tokenizer(style_tok).encode(utt.samples(), dedup=False)
    assert set(record["style"].tolist()) <= set(styles.tolist()) and record["style"][0] == styles[0]
    assert ds.units("heldout")[0].tolist() == record.units.tolist()


def test_cli_train_pitch_and_style_and_encode_audio(tiny_corpus, tmp_path, capsys):
    from speechlm.data.audio import write_wav

    assert main(["prosody", "train", "pitch-vq", "--corpus", str(tiny_corpus), "--out",
                 str(tmp_path / "vq"), "steps=5", "channels=8", "code_dim=4"]) == 0
    assert main(["prosody", "train", "style", "--corpus", str(tiny_corpus), "--out",
                 str(tmp_path / "st"), "k=3"]) == 0
    utt = next(Corpus(tiny_corpus).utterances("heldout"))
    write_wav(tmp_path / "a.wav", utt.samples())
    capsys.readouterr()
    assert main(["prosody", "encode", "--audio", str(tmp_path / "a.wav"), "--tokenizer",
                 str(tmp_path / "vq"), "--tokenizer", str(tmp_path / "st")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["pitch_tokens"]) == len(out["pitch_durations"]) and out["style_tokens"]
    assert main(["prosody", "eval", "--tokenizer", str(tmp_path / "st"), "--corpus",
                 str(tiny_corpus)]) == 2
    assert "do not decode" in capsys.readouterr().err
