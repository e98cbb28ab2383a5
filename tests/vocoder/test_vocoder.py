"""Unit vocoder: training smoke, synthesis shapes, save/load round trip, errors, MCD."""

from __future__ import annotations

import numpy as np
import pytest

from speechlm.cli import main
from speechlm.core.errors import CheckpointError, ConfigError, DataError
from speechlm.data.audio import read_audio, write_wav
from speechlm.data.corpus import Corpus
from speechlm.tokenizers import load_tokenizer, train_tokenizer
from speechlm.vocoder import load_vocoder, resynthesize, train_vocoder
from speechlm.vocoder.model import griffin_lim
from speechlm.vocoder.quality import mel_cepstral_distortion

TINY = {"dim": 32, "layers": 2, "voc_dim": 32, "voc_layers": 1}


@pytest.fixture(scope="module")
def trained(tiny_corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("voc")
    tok = train_tokenizer(tiny_corpus, root / "tok", features="mfcc", units=16, show_progress=False)
    voc = train_vocoder(tiny_corpus, tok, root / "voc", steps=3, max_minutes=None, batch=2,
                        config=TINY, show_progress=False)
    return tok, voc


def test_train_and_synthesize(trained, tiny_corpus):
    tok_dir, voc_dir = trained
    voc = load_vocoder(voc_dir)
    assert voc.info["training"]["steps"] == 3
    speakers = sorted({u.speaker for u in Corpus(tiny_corpus).utterances("train")})
    assert voc.speakers == speakers and voc.config.vocab_size == 16
    units, durations = np.array([3, 7, 1]), np.array([2, 5, 1])
    wav = voc.synthesize(units, durations)
    assert wav.dtype == np.float32 and wav.shape == (8 * 320,) and np.isfinite(wav).all()
    assert np.abs(wav).max() <= 0.95 + 1e-6
    # no durations: each unit gets its mean training run length (>= 1 frame)
    mean = voc.mean_durations.numpy()
    assert voc.synthesize(units).size == mean[units].sum() * 320 and (mean >= 1).all()
    # a named training speaker changes the voice; an unknown one is a clear error
    assert not np.allclose(voc.synthesize(units, durations, speaker=speakers[0]), wav)
    with pytest.raises(ConfigError, match="unknown speaker"):
        voc.synthesize(units, durations, speaker="nobody")
    with pytest.raises(DataError, match="units must be in 0..15"):
        voc.synthesize(np.array([99]))
    assert voc.synthesize(units, durations, griffin_lim_baseline=True).shape == wav.shape
    # save/load round trip is exact
    assert np.array_equal(load_vocoder(voc_dir).synthesize(units, durations), wav)


def test_resynthesis_keeps_length(trained, tiny_corpus):
    tok_dir, voc_dir = trained
    x = next(Corpus(tiny_corpus).utterances("heldout")).samples()
    y = resynthesize(load_tokenizer(tok_dir), load_vocoder(voc_dir), x)
    assert y.size == x.size // 320 * 320


def test_missing_and_corrupt_vocoder(trained, tmp_path):
    with pytest.raises(CheckpointError, match="nope"):
        load_vocoder(tmp_path / "nope")
    bad = tmp_path / "bad"
    bad.mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        load_vocoder(bad)
    (bad / "config.json").write_text((trained[1] / "config.json").read_text())
    (bad / "model.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_vocoder(bad)


def test_mcd_and_griffin_lim():
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    x = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    x += rng.normal(0, 0.01, x.size).astype(np.float32)
    assert mel_cepstral_distortion(x, x) == pytest.approx(0.0, abs=1e-4)
    slightly = x + rng.normal(0, 0.01, x.size).astype(np.float32)
    other = rng.normal(0, 0.1, x.size).astype(np.float32)
    assert mel_cepstral_distortion(x, slightly) < mel_cepstral_distortion(x, other)
    # Griffin-Lim from the true mel gives back a signal with a similar spectrum
    from speechlm.vocoder.model import mel_spectrogram
    from speechlm.tokenizers.semantic.dsp import mel_filterbank
    import torch
    mel = mel_spectrogram(torch.from_numpy(x), mel_filterbank(80, 1024)).numpy()
    y = griffin_lim(mel, iterations=16)
    assert y.size == x.size and mel_cepstral_distortion(x, y) < mel_cepstral_distortion(x, other)


def test_resynth_cli(trained, tiny_corpus, tmp_path, capsys):
    tok_dir, voc_dir = trained
    x = next(Corpus(tiny_corpus).utterances("heldout")).samples()
    import soundfile as sf
    from speechlm.data.audio import resample
    sf.write(tmp_path / "in.wav", resample(x, 16000, 22050), 22050)  # wrong rate: resampled
    assert main(["resynth", "--tokenizer", str(tok_dir), "--vocoder", str(voc_dir),
                 str(tmp_path / "in.wav"), str(tmp_path / "out.wav")]) == 0
    assert abs(read_audio(tmp_path / "out.wav").size - x.size) <= 640
    write_wav(tmp_path / "short.wav", np.zeros(100, np.float32))
    capsys.readouterr()
    assert main(["resynth", "--tokenizer", str(tok_dir), "--vocoder", str(voc_dir),
                 str(tmp_path / "short.wav"), str(tmp_path / "o.wav")]) == 2
    err = capsys.readouterr().err
    assert "shorter than one" in err and len(err.strip().splitlines()) == 1
    assert main(["resynth", "--tokenizer", str(tmp_path / "none"), "--vocoder", str(voc_dir),
                 str(tmp_path / "in.wav"), str(tmp_path / "o.wav")]) == 2
