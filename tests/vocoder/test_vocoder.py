"""Unit vocoder: training smoke (with the GAN phase), synthesis, speakers, extra streams, save/load
round trip against the trained in-memory model, exact resume, errors, CLI, MCD."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest
import torch

from speechlm.cli import main
from speechlm.core.errors import CheckpointError, ConfigError, DataError
from speechlm.data.audio import read_audio, write_wav
from speechlm.data.corpus import Corpus
from speechlm.tokenizers import load_tokenizer, train_tokenizer
from speechlm.vocoder import VocoderTrainConfig, load_vocoder, resynthesize, train_vocoder
from speechlm.vocoder.model import VocoderConfig, griffin_lim
from speechlm.vocoder.quality import mel_cepstral_distortion

TINY = dict(dim=32, encoder_layers=1, decoder_layers=2, voc_dim=32, voc_layers=1, batch=2,
            segment_seconds=0.6, voc_segment_seconds=0.2, speaker_clips=2, tensorboard=False,
            progress=False, threads=1)


def tiny_config(corpus, tok, out, **overrides) -> VocoderTrainConfig:
    return VocoderTrainConfig(corpus=str(corpus), tokenizer=str(tok), out=str(out),
                              **{**TINY, "steps": 4, "gan_start": 0.5, **overrides})


class Energy:
    """A toy extra stream: per-frame log energy (what an F0 stream plugs in like)."""

    dim = 1

    def __call__(self, samples, n_frames, frame_rate):
        hop = int(round(16000 / frame_rate))
        frames = samples[: n_frames * hop].reshape(n_frames, hop)
        return np.log(np.mean(frames ** 2, axis=1, keepdims=True) + 1e-6).astype(np.float32)


@pytest.fixture(scope="module")
def tok_dir(tiny_corpus, tmp_path_factory):
    return train_tokenizer(tiny_corpus, tmp_path_factory.mktemp("tok") / "tok", features="mfcc",
                           units=16, show_progress=False)


@pytest.fixture(scope="module")
def trained(tiny_corpus, tok_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("voc") / "voc"
    voc = train_vocoder(tiny_config(tiny_corpus, tok_dir, out))
    return out, voc


def test_train_and_synthesize(trained, tiny_corpus):
    voc_dir, _ = trained
    voc = load_vocoder(voc_dir)
    training = voc.info["training"]
    assert training["steps"] == 4 and training["gan_from_step"] == 2 and "disc" in training
    speakers = sorted({u.speaker for u in Corpus(tiny_corpus).utterances("train")})
    assert voc.speakers == speakers and voc.config.vocab_size == 16 and voc.config.hop == 320
    # the d-vectors are unit vectors, one per training speaker
    assert torch.allclose(voc.speaker_table.norm(dim=1), torch.ones(len(speakers)), atol=1e-4)
    units, durations = np.array([3, 7, 1]), np.array([2, 5, 1])
    wav = voc.synthesize(units, durations)
    assert wav.dtype == np.float32 and wav.shape == (8 * 320,) and np.isfinite(wav).all()
    assert np.abs(wav).max() <= 0.95 + 1e-6
    # no durations: each unit gets its mean training run length (>= 1 frame)
    mean = voc.mean_durations.numpy()
    assert voc.synthesize(units).size == mean[units].sum() * 320 and (mean >= 1).all()
    # a named training speaker (or its index, 1-based) changes the voice; unknown ones are errors
    named = voc.synthesize(units, durations, speaker=speakers[0])
    assert not np.allclose(named, wav)
    assert np.array_equal(voc.synthesize(units, durations, speaker=1), named)
    assert np.array_equal(voc.synthesize(units, durations, speaker=0), wav)
    with pytest.raises(ConfigError, match="unknown speaker"):
        voc.synthesize(units, durations, speaker="nobody")
    with pytest.raises(ConfigError, match="out of range"):
        voc.synthesize(units, durations, speaker=len(speakers) + 1)
    with pytest.raises(DataError, match="units must be in 0..15"):
        voc.synthesize(np.array([99]))
    with pytest.raises(DataError, match="durations must be positive"):
        voc.synthesize(units, np.array([1, 0, 1]))
    assert voc.synthesize(units, durations, griffin_lim_baseline=True).shape == wav.shape


def test_round_trip_matches_the_trained_model(trained):
    """The reloaded directory holds the weights training ended with (not a fresh init)."""
    voc_dir, voc = trained
    loaded = load_vocoder(voc_dir)
    trained_state, loaded_state = voc.state_dict(), loaded.state_dict()
    assert trained_state.keys() == loaded_state.keys()
    for key in trained_state:
        assert torch.equal(trained_state[key], loaded_state[key]), key
    units, durations = np.array([3, 7, 1, 4]), np.array([2, 5, 1, 3])
    for speaker in (None, voc.speakers[-1]):
        assert np.array_equal(voc.synthesize(units, durations, speaker=speaker),
                              loaded.synthesize(units, durations, speaker=speaker))
    # training moved the weights away from their initialisation
    fresh = type(voc)(voc.config, voc.speakers)
    assert not torch.equal(fresh.state_dict()["acoustic.out.weight"], trained_state["acoustic.out.weight"])


def test_reference_clip_and_embedding(trained, tiny_corpus):
    voc_dir, voc = trained
    utts = list(Corpus(tiny_corpus).utterances("train"))
    clip = max((u for u in utts if u.speaker == voc.speakers[0]), key=lambda u: u.duration).samples()
    vec = voc.speaker_vector(clip)
    assert vec.shape == (256,) and abs(float(vec.norm()) - 1) < 1e-4
    # a clip of a training voice lands nearest that voice's stored d-vector
    assert int(torch.argmax(voc.speaker_table @ vec)) == 0
    units, durations = np.array([3, 7, 1]), np.array([2, 5, 1])
    by_clip = voc.synthesize(units, durations, speaker=clip)
    assert np.array_equal(by_clip, voc.synthesize(units, durations, speaker=vec.numpy()))
    with pytest.raises(DataError, match="shape"):
        voc.synthesize(units, durations, speaker=np.zeros((2, 300), np.float32))


def test_extra_stream(tiny_corpus, tok_dir, tmp_path):
    voc = train_vocoder(tiny_config(tiny_corpus, tok_dir, tmp_path / "voc", steps=2,
                                    speaker_embedding=False), streams={"energy": Energy()})
    loaded = load_vocoder(tmp_path / "voc")
    assert loaded.streams == ["energy"] and loaded.config.streams == (("energy", 1),)
    units, durations = np.array([3, 7, 1]), np.array([2, 5, 1])
    per_unit = {"energy": np.array([-3.0, -1.0, -6.0])}
    per_frame = {"energy": np.repeat(per_unit["energy"], durations)[:, None]}
    wav = loaded.synthesize(units, durations, streams=per_unit)
    assert np.array_equal(wav, loaded.synthesize(units, durations, streams=per_frame))
    assert np.array_equal(wav, voc.synthesize(units, durations, streams=per_unit))
    assert not np.allclose(wav, loaded.synthesize(units, durations, streams={"energy": -per_unit["energy"]}))
    with pytest.raises(DataError, match="missing \\['energy'\\]"):
        loaded.synthesize(units, durations)
    with pytest.raises(DataError, match="stream 'energy'"):
        loaded.synthesize(units, durations, streams={"energy": np.zeros(5)})
    with pytest.raises(ConfigError, match="without speaker conditioning"):
        loaded.synthesize(units, durations, speaker="x", streams=per_unit)
    # resynthesis computes nothing by itself: the caller brings the stream
    x = next(Corpus(tiny_corpus).utterances("heldout")).samples()
    tok = load_tokenizer(tok_dir)
    n = tok.encode(x, dedup=False)[0].size
    y = resynthesize(tok, loaded, x, streams={"energy": Energy()(x, n, tok.frame_rate)})
    assert y.size == n * 320


def test_units_from_a_token_dataset(tiny_corpus, tok_dir, tmp_path):
    """Reusing `speechlm tokenize` output trains the same vocoder as encoding the corpus again."""
    from speechlm.tokenizers import tokenize_corpus

    tokenize_corpus(tok_dir, tiny_corpus, tmp_path / "units")
    cfg = tiny_config(tiny_corpus, tok_dir, tmp_path / "a", steps=2, speaker_embedding=False)
    a = train_vocoder(cfg)
    b = train_vocoder(dataclasses.replace(cfg, out=str(tmp_path / "b"), units=str(tmp_path / "units")))
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    other = train_tokenizer(tiny_corpus, tmp_path / "tok8", features="mfcc", units=8, show_progress=False)
    with pytest.raises(DataError, match="not of"):
        train_vocoder(dataclasses.replace(cfg, out=str(tmp_path / "c"), tokenizer=str(other),
                                          units=str(tmp_path / "units")))


def test_resume_is_exact(tiny_corpus, tok_dir, tmp_path):
    cfg = tiny_config(tiny_corpus, tok_dir, tmp_path / "a", save_every=2, keep_last=2,
                      speaker_embedding=False)
    full = train_vocoder(cfg)
    ckpts = sorted((tmp_path / "a" / "checkpoints").iterdir())
    assert [p.name for p in ckpts] == ["checkpoint-00000002", "checkpoint-00000004"]
    # simulate a run killed after step 2: drop the later checkpoint and the finished vocoder
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    shutil.rmtree(tmp_path / "b" / "checkpoints" / "checkpoint-00000004")
    (tmp_path / "b" / "config.json").unlink()
    resumed = train_vocoder(dataclasses.replace(cfg, out=str(tmp_path / "b")), resume=True)
    assert resumed.info["training"]["steps"] == 4
    for key, value in full.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def test_missing_corrupt_and_old_vocoder(trained, tmp_path):
    with pytest.raises(CheckpointError, match="nope"):
        load_vocoder(tmp_path / "nope")
    bad = tmp_path / "bad"
    bad.mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        load_vocoder(bad)
    config = (trained[0] / "config.json").read_text()
    (bad / "config.json").write_text(config)
    (bad / "model.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_vocoder(bad)
    (bad / "config.json").write_text(config.replace('"version": 2', '"version": 1'))
    with pytest.raises(CheckpointError, match="version 1.*retrain"):
        load_vocoder(bad)


def test_config_checks(tiny_corpus, tok_dir, tmp_path):
    assert VocoderConfig(frame_rate=50).mel_per_frame == 2 and VocoderConfig(frame_rate=25).hop == 640
    assert "frame_rate=30" in VocoderConfig(frame_rate=30).validate()[0]
    problems = VocoderTrainConfig(steps=0, gan_start=2.0).validate()
    assert {"corpus is required", "steps=0 must be >= 1", "gan_start=2.0 must be in [0, 1]"} <= set(problems)


def test_train_cli_config_and_errors(tiny_corpus, tok_dir, tmp_path, capsys):
    cfg = tmp_path / "voc.yaml"
    cfg.write_text(f"corpus: {tiny_corpus}\ntokenizer: {tok_dir}\nsteps: 50\ndim: 32\n"
                   "encoder_layers: 1\ndecoder_layers: 1\nvoc_dim: 32\nvoc_layers: 1\nbatch: 2\n"
                   "segment_seconds: 0.6\nvoc_segment_seconds: 0.2\nspeaker_embedding: false\n"
                   "progress: false\n")
    # YAML < flags < key=value
    assert main(["vocoder", "train", "--config", str(cfg), "--out", str(tmp_path / "v"),
                 "--steps", "3", "steps=2", "gan_start=0"]) == 0
    assert "2 steps" in capsys.readouterr().out
    saved = load_vocoder(tmp_path / "v").info["training"]["config"]
    assert saved["steps"] == 2 and saved["gan_start"] == 0 and saved["dim"] == 32
    assert (tmp_path / "v" / "train.yaml").is_file()
    assert main(["vocoder", "train", "--config", str(cfg), "--out", str(tmp_path / "w"),
                 "stepz=1"]) == 2
    err = capsys.readouterr().err
    assert "voc.yaml: unknown key(s) stepz" in err and len(err.strip().splitlines()) == 1


def test_resynthesis_keeps_length(trained, tiny_corpus, tok_dir):
    x = next(Corpus(tiny_corpus).utterances("heldout")).samples()
    y = resynthesize(load_tokenizer(tok_dir), load_vocoder(trained[0]), x, speaker=x)
    assert y.size == x.size // 320 * 320


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
    from speechlm.tokenizers.semantic.dsp import mel_filterbank
    from speechlm.vocoder.model import mel_spectrogram
    mel = mel_spectrogram(torch.from_numpy(x), mel_filterbank(80, 1024)).numpy()
    y = griffin_lim(mel, iterations=16)
    assert y.size == x.size and mel_cepstral_distortion(x, y) < mel_cepstral_distortion(x, other)


def test_resynth_cli(trained, tiny_corpus, tok_dir, tmp_path, capsys):
    voc_dir, voc = trained
    x = next(Corpus(tiny_corpus).utterances("heldout")).samples()
    import soundfile as sf
    from speechlm.data.audio import resample
    sf.write(tmp_path / "in.wav", resample(x, 16000, 22050), 22050)  # wrong rate: resampled
    base = ["resynth", "--tokenizer", str(tok_dir), "--vocoder", str(voc_dir)]
    assert main([*base, str(tmp_path / "in.wav"), str(tmp_path / "out.wav")]) == 0
    assert abs(read_audio(tmp_path / "out.wav").size - x.size) <= 640
    assert main([*base, "--speaker", voc.speakers[0], str(tmp_path / "in.wav"),
                 str(tmp_path / "spk.wav")]) == 0
    assert main([*base, "--reference", str(tmp_path / "in.wav"), str(tmp_path / "in.wav"),
                 str(tmp_path / "ref.wav")]) == 0
    assert np.allclose(read_audio(tmp_path / "ref.wav"), read_audio(tmp_path / "out.wav"))
    write_wav(tmp_path / "short.wav", np.zeros(100, np.float32))
    capsys.readouterr()
    assert main([*base, str(tmp_path / "short.wav"), str(tmp_path / "o.wav")]) == 2
    err = capsys.readouterr().err
    assert "short.wav" in err and "shorter than one" in err and len(err.strip().splitlines()) == 1
    assert main(["resynth", "--tokenizer", str(tmp_path / "none"), "--vocoder", str(voc_dir),
                 str(tmp_path / "in.wav"), str(tmp_path / "o.wav")]) == 2
    # a tokenizer with another K than the vocoder's
    other = train_tokenizer(tiny_corpus, tmp_path / "tok8", features="mfcc", units=8,
                            show_progress=False)
    capsys.readouterr()
    assert main(["resynth", "--tokenizer", str(other), "--vocoder", str(voc_dir),
                 str(tmp_path / "in.wav"), str(tmp_path / "o.wav")]) == 2
    assert "expects K=16" in capsys.readouterr().err


@pytest.mark.parametrize("hz", [110.0, 230.0])
def test_source_generator_speaks_at_the_given_f0(hz):
    """The harmonic-plus-noise generator's pitch is its F0 input by construction (the
    phase-predicting generator spoke at its 100 Hz frame rate whatever the voice): with flat
    filters, pulse train at gain 1 and noise at gain e^-6, the output is voiced at F0."""
    from speechlm.tokenizers.prosody.f0 import extract_f0
    from speechlm.vocoder.model import MelGenerator

    gen = MelGenerator(VocoderConfig(source=True, voc_dim=32, voc_layers=1)).eval()
    bins = gen.n_fft // 2 + 1
    with torch.no_grad():
        gen.out.weight.zero_()
        gen.out.bias[:bins], gen.out.bias[bins:] = 0.0, -6.0
    frames = 150  # 1.5 s at 100 Hz; the second half unvoiced
    f0 = torch.tensor([hz] * 75 + [0.0] * 75)[None]
    with torch.no_grad():
        wav = gen(torch.full((1, frames, 80), -2.0), f0)[0].numpy()
    measured = extract_f0(wav.astype(np.float32) / np.abs(wav).max() * 0.5)
    voiced = measured[10:65]
    assert (voiced > 0).mean() > 0.9 and abs(np.median(voiced) / hz - 1) < 0.03
    assert (measured[90:] > 0).mean() < 0.2  # noise only where F0 is 0
    with pytest.raises(ValueError, match="need F0 per mel frame"):
        gen(torch.zeros(1, frames, 80))


def test_source_vocoder_predicts_f0_and_needs_it_for_copy_synthesis(trained, tiny_corpus,
                                                                    tok_dir, tmp_path):
    assert not trained[1].config.source  # source: null = phase generator without extra streams
    train_vocoder(tiny_config(tiny_corpus, tok_dir, tmp_path / "v", source=True))
    voc = load_vocoder(tmp_path / "v")
    assert voc.config.source and voc.acoustic.pitch is not None
    with_stream = train_vocoder(tiny_config(tiny_corpus, tok_dir, tmp_path / "e", steps=1),
                                streams={"energy": Energy()})
    assert with_stream.config.source  # null: source-filter when an extra stream is given
    units, durations = np.array([3, 7, 1]), np.array([2, 5, 1])
    mel, f0 = voc.features(units, durations)
    assert mel.shape == (16, 80) and f0.shape == (16,) and (f0 >= 0).all()
    assert np.array_equal(voc.vocode(mel, f0=f0), voc.synthesize(units, durations))
    with pytest.raises(DataError, match="needs f0 with one value per mel frame"):
        voc.vocode(mel)
