"""Extractors, k-means, dedup, tokenizer directories, token datasets and their errors."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
import soundfile as sf

from speechlm.cli import main
from speechlm.core.config import build_config
from speechlm.core.errors import AudioError, CheckpointError, ConfigError, DataError
from speechlm.data.audio import read_audio, resample
from speechlm.data.corpus import Corpus
from speechlm.tokenizers import (TokenDataset, dedup, load_tokenizer, tokenize_corpus, train_tokenizer,
                                 undedup)
from speechlm.tokenizers.semantic.extractors import (HFExtractor, LogMelExtractor, MfccExtractor,
                                                     SslTinyExtractor)
from speechlm.tokenizers.semantic.kmeans import KMeansQuantizer
from speechlm.tokenizers.semantic.ssl_tiny import SslTiny, SslTinyConfig, span_mask, warp_mel
from speechlm.tokenizers.semantic.tokenizer import TokenizerTrainConfig, fit_tokenizer

TINY_SSL = {"dim": 32, "layers": 2, "heads": 2, "ffn": 64}


def speech(tiny_corpus, split="train", index=0) -> np.ndarray:
    for k, utt in enumerate(Corpus(tiny_corpus).utterances(split)):
        if k == index:
            return utt.samples()
    raise IndexError(index)


@pytest.fixture(scope="module")
def hf_hubert(tmp_path_factory):
    """A randomly initialised 2-layer HubertModel saved as a local HF directory."""
    import torch
    from transformers import HubertConfig, HubertModel

    torch.manual_seed(0)
    config = HubertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                          intermediate_size=64, conv_dim=(16,) * 7, num_conv_pos_embeddings=16,
                          num_conv_pos_embedding_groups=4)
    path = tmp_path_factory.mktemp("hf") / "hubert"
    HubertModel(config).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def mfcc_tok(tiny_corpus, tmp_path_factory):
    return train_tokenizer(tiny_corpus, tmp_path_factory.mktemp("tok") / "mfcc", features="mfcc",
                           units=16, show_progress=False)


def test_dedup_known_answer_and_inverse():
    units, durations = dedup(np.array([5, 5, 7, 5, 5, 5, 2]))
    assert units.tolist() == [5, 7, 5, 2] and durations.tolist() == [2, 1, 3, 1]
    assert units.dtype == np.int64 and durations.dtype == np.int64
    assert undedup(units, durations).tolist() == [5, 5, 7, 5, 5, 5, 2]
    assert dedup(np.array([], dtype=np.int64))[0].size == 0


@pytest.mark.parametrize("n", [400, 16_000, 16_123])
def test_every_extractor_gives_len_over_320_frames(n, hf_hubert):
    x = np.random.default_rng(0).normal(0, 0.1, n).astype(np.float32)
    extractors = [MfccExtractor(), LogMelExtractor(), SslTinyExtractor(SslTiny(SslTinyConfig(**TINY_SSL)), 1),
                  HFExtractor(hf_hubert, layer=1)]
    for ex in extractors:
        feats = ex(x)
        assert feats.shape == (n // 320, ex.dim), ex.name
        assert feats.dtype == np.float32 and np.isfinite(feats).all()


def test_hf_layers_differ_and_bad_layer(hf_hubert):
    x = np.random.default_rng(1).normal(0, 0.1, 8000).astype(np.float32)
    assert not np.allclose(HFExtractor(hf_hubert, 0)(x), HFExtractor(hf_hubert, 2)(x))
    with pytest.raises(ConfigError, match="--layer 5"):
        HFExtractor(hf_hubert, 5)


def test_hf_wav2vec2(tmp_path):
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    torch.manual_seed(0)
    config = Wav2Vec2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                            intermediate_size=64, conv_dim=(16,) * 7, num_conv_pos_embeddings=16,
                            num_conv_pos_embedding_groups=4)
    Wav2Vec2Model(config).save_pretrained(tmp_path / "w2v")
    assert HFExtractor(tmp_path / "w2v", 1)(np.zeros(3200, np.float32) + 0.01).shape == (10, 32)


def test_kmeans_recovers_separated_clusters():
    rng = np.random.default_rng(0)
    centers = np.array([[0, 0], [10, 0], [0, 10]], dtype=np.float32)
    labels = rng.integers(0, 3, 600)
    x = centers[labels] + rng.normal(0, 0.3, (600, 2)).astype(np.float32)
    q = KMeansQuantizer.fit(x, 3, seed=0)
    pred = q.assign(x)
    # a perfect clustering up to a permutation: each true label maps to exactly one cluster
    assert all(len(set(pred[labels == c])) == 1 for c in range(3))
    assert len(set(pred)) == 3


def test_mfcc_tokenizer_round_trip(mfcc_tok, tiny_corpus, tmp_path):
    tok = load_tokenizer(mfcc_tok)
    assert tok.vocab_size == 16 and tok.frame_rate == 50.0
    config = json.loads((mfcc_tok / "config.json").read_text())
    assert config["features"] == "mfcc" and config["units"] == 16
    x = speech(tiny_corpus)
    frames, ones = tok.encode(x, dedup=False)
    assert frames.size == x.size // 320 and (ones == 1).all()
    units, durations = tok.encode(x)
    assert durations.sum() == frames.size and (units[1:] != units[:-1]).all()
    assert np.array_equal(undedup(units, durations), frames)
    assert frames.max() < 16 and len(set(frames.tolist())) > 4
    tok.save(tmp_path / "copy")
    again, _ = load_tokenizer(tmp_path / "copy").encode(x, dedup=False)
    assert np.array_equal(again, frames)


def _fit(tiny_corpus, tmp_path, features, **options):
    cfg = build_config(TokenizerTrainConfig, {"corpus": str(tiny_corpus), "out": str(tmp_path / "t"),
                                              "features": features, "units": 8, **options}, "test")
    return fit_tokenizer(cfg, show_progress=False)


@pytest.mark.parametrize("features, options", [("mfcc", {}),
                                               ("ssl-tiny", {"layer": 1, "ssl_steps": 4,
                                                             "ssl_model": TINY_SSL}),
                                               ("hf", {"layer": 2})])
def test_saved_tokenizer_is_the_trained_one(features, options, tiny_corpus, hf_hubert, tmp_path):
    """save() must write the fitted state: a save() that wrote untrained encoder weights (or other
    centroids) gives other features and units after loading."""
    x = speech(tiny_corpus, index=1)
    trained = _fit(tiny_corpus, tmp_path, f"hf:{hf_hubert}" if features == "hf" else features,
                   **options)
    path = trained.save(tmp_path / features)
    reloaded = load_tokenizer(path)
    assert np.array_equal(reloaded.features(x), trained.features(x))
    assert np.array_equal(reloaded.encode(x, dedup=False)[0], trained.encode(x, dedup=False)[0])
    drop = {"source"} if features == "hf" else set()  # hf: the copy in T/encoder/ after loading
    assert ({k: v for k, v in reloaded.config().items() if k not in drop}
            == {k: v for k, v in trained.config().items() if k not in drop})
    if features == "ssl-tiny":
        training = trained.info["training"]
        assert training["iteration1"]["steps"] == 2 and training["iteration2"]["steps"] == 2
        assert (path / "encoder.safetensors").is_file() and reloaded.extractor.layer == 1
    if features == "hf":  # a self-contained copy of the encoder
        assert (path / "encoder" / "model.safetensors").is_file()


def test_ssl_helpers():
    rng = np.random.default_rng(0)
    mask = span_mask(4, 50, 0.08, 5, rng)
    assert mask.shape == (4, 50) and mask.any(axis=1).all()
    mel = np.tile(np.arange(80, dtype=np.float32), (3, 1))
    assert np.allclose(warp_mel(mel, 1.0), mel)
    assert np.allclose(warp_mel(mel, 0.5)[0, :10], np.arange(10) * 0.5)


def test_tokenize_corpus_dataset(mfcc_tok, tiny_corpus, tmp_path):
    out = tokenize_corpus(mfcc_tok, tiny_corpus, tmp_path / "units", show_progress=False)
    ds = TokenDataset(out)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["tokenizer"] == str(mfcc_tok.resolve()) and meta["dedup"] is True
    assert ds.vocab_size == 16 and ds.frame_rate == 50.0 and ds.tokenizer_dir == mfcc_tok.resolve()
    assert set(ds.splits) >= {"train", "heldout"}
    table = ds.table("train")
    assert table.schema.field("units").type.value_type == pa.int32()
    corpus = {u.id: u for u in Corpus(tiny_corpus).utterances("train")}
    records = ds.split("train")
    assert len(records) == len(corpus)
    for rec in records:
        utt = corpus[rec.id]
        assert rec["speaker"] == utt.speaker and rec.text == utt.text
        assert rec.durations.sum() == int(round(utt.duration * 16000)) // 320
        assert [w for w, _, _ in rec.words] == [w for w, _, _ in utt.words]
        assert all(0 <= s <= e <= rec.durations.sum() + 1 for _, s, e in rec.words)


def test_missing_and_corrupt_tokenizer(mfcc_tok, tmp_path):
    with pytest.raises(CheckpointError, match="nope"):
        load_tokenizer(tmp_path / "nope")
    bad = tmp_path / "bad"
    bad.mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        load_tokenizer(bad)
    (bad / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt JSON"):
        load_tokenizer(bad)
    (bad / "config.json").write_text((mfcc_tok / "config.json").read_text())
    (bad / "centroids.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="centroids"):
        load_tokenizer(bad)


def test_short_audio_and_resampled_input(mfcc_tok, tiny_corpus, tmp_path):
    tok = load_tokenizer(mfcc_tok)
    with pytest.raises(AudioError, match="shorter than one 25 ms frame"):
        tok.encode(np.zeros(300, np.float32))
    x = speech(tiny_corpus)
    path = tmp_path / "in44k.wav"
    sf.write(path, resample(x, 16000, 44100), 44100)
    y = read_audio(path)  # resampled back to 16 kHz
    a, _ = tok.encode(x, dedup=False)
    b, _ = tok.encode(y, dedup=False)
    n = min(a.size, b.size)
    assert abs(a.size - b.size) <= 1 and (a[:n] == b[:n]).mean() > 0.8


def test_cli_errors_are_one_line(tmp_path, tiny_corpus, capsys):
    assert main(["tokenizer", "eval", "--tokenizer", str(tmp_path / "missing"),
                 "--corpus", str(tiny_corpus)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "missing" in err and len(err.strip().splitlines()) == 1
    assert main(["tokenizer", "train", "--corpus", str(tiny_corpus), "--features", "wavlm",
                 "--out", str(tmp_path / "t")]) == 2
    assert "--features 'wavlm'" in capsys.readouterr().err


def test_train_from_yaml_flags_and_overrides(tiny_corpus, tmp_path, capsys):
    config = tmp_path / "tok.yaml"
    config.write_text(f"corpus: {tiny_corpus}\nfeatures: mfcc\nunits: 12\nseed: 3\n")
    out = tmp_path / "tok"
    # YAML < flags < key=value
    assert main(["tokenizer", "train", "--config", str(config), "--units", "10", "--out", str(out),
                 "max_points=5000", "seed=4"]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["features"] == "mfcc" and saved["units"] == 10
    assert saved["training"]["config"]["max_points"] == 5000 and saved["training"]["seed"] == 4
    capsys.readouterr()
    assert main(["tokenizer", "train", "--config", str(config), "--out", str(out), "unitz=3"]) == 2
    err = capsys.readouterr().err
    assert str(config) in err and "unitz" in err and len(err.strip().splitlines()) == 1
    assert main(["tokenizer", "train", "--corpus", str(tiny_corpus), "--units", "1"]) == 2
    assert "out is required" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="ssl_model"):
        train_tokenizer(tiny_corpus, out, ssl_model={"width": 3})


@pytest.fixture(scope="module")
def whisper_extractor():
    from speechlm.tokenizers.semantic.extractors import WhisperExtractor

    return WhisperExtractor("whisper")


@pytest.mark.parametrize("seconds", [400 / 16000, 1.0, 16_123 / 16000, 31.7])
def test_whisper_frames_short_and_longer_than_30s(seconds, whisper_extractor):
    n = int(round(seconds * 16000))
    x = np.random.default_rng(0).normal(0, 0.1, n).astype(np.float32)
    feats = whisper_extractor(x)
    assert feats.shape == (n // 320, 384) and np.isfinite(feats).all()


def test_whisper_frames_sit_on_the_unit_grid(whisper_extractor):
    """A tone starting at 1.5 s: frame 74 (centre 1.49 s) looks like the silence before it, frame 75
    (centre 1.51 s) like the tone (Whisper's own grid is 10 ms earlier; see whisper.py)."""
    x = np.random.default_rng(0).normal(0, 1e-3, 48_000).astype(np.float32)
    t = np.arange(24_000) / 16000
    x[24_000:] += 0.3 * np.sin(2 * np.pi * 440 * t).astype(np.float32)
    feats = whisper_extractor(x)
    silence, tone = feats[40:70].mean(axis=0), feats[90:140].mean(axis=0)
    closer_to_tone = np.linalg.norm(feats - silence, axis=1) > np.linalg.norm(feats - tone, axis=1)
    assert not closer_to_tone[60:75].any() and closer_to_tone[75:90].all()


def test_whisper_tokenizer_records_and_checks_its_model(tiny_corpus, tmp_path):
    import shutil

    from speechlm.tokenizers.semantic.whisper import BUNDLED_SHA256, bundled_model_dir

    copy = tmp_path / "whisper-copy"
    shutil.copytree(bundled_model_dir(), copy)
    path = train_tokenizer(tiny_corpus, tmp_path / "tok", features=f"whisper:{copy}", units=8,
                           max_hours=10 / 3600, show_progress=False)
    config = json.loads((path / "config.json").read_text())
    assert config["features"] == "whisper" and config["model_sha256"] == BUNDLED_SHA256
    assert config["source"] == f"whisper:{copy.resolve()}" and config["dim"] == 384
    x = speech(tiny_corpus)
    units, durations = load_tokenizer(path).encode(x)
    assert durations.sum() == x.size // 320 and units.max() < 8
    config["model_sha256"] = "0" * 64  # the centroids were fitted on another model
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="does not match the tokenizer's encoder"):
        load_tokenizer(path)
    with pytest.raises(ConfigError, match="--layer 3: whisper"):
        train_tokenizer(tiny_corpus, tmp_path / "t2", features="whisper", layer=3)
    with pytest.raises(CheckpointError, match="nope: Whisper model directory not found"):
        train_tokenizer(tiny_corpus, tmp_path / "t3", features=f"whisper:{tmp_path / 'nope'}")


def test_kmeans_weights_decide_which_block_clusters():
    """Two blocks: block A (1 dim) splits the data in 2, block B (4 dims) in 2 other halves. With
    equal per-dimension weight B's 4 dims win; with 1/sqrt(width) per block, A's split counts as
    much as B's; weighting B to zero leaves A's split alone. The weights survive save/load."""
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 2, 800), rng.integers(0, 2, 800)
    x = np.concatenate([a[:, None] * 4.0, np.repeat(b[:, None] * 4.0, 4, axis=1)], axis=1)
    x = (x + rng.normal(0, 0.3, x.shape)).astype(np.float32)
    only_a = KMeansQuantizer.fit(x, 2, seed=0, weights=np.array([1, 0, 0, 0, 0], np.float32))
    pred = only_a.assign(x)
    assert all(len(set(pred[a == c])) == 1 for c in (0, 1))
    assert abs(float(np.mean(pred[b == 0] == pred[b == 0][0])) - 0.5) < 0.1  # blind to block B
    both = KMeansQuantizer.fit(x, 4, seed=0, weights=np.array([1] + [0.5] * 4, np.float32))
    pred = both.assign(x)
    assert len({(p, i, j) for p, i, j in zip(pred, a, b)}) == 4  # one cluster per (a, b) cell
    with pytest.raises(DataError, match="3 weights for 5-dim"):
        KMeansQuantizer.fit(x, 2, weights=np.ones(3, np.float32))


def test_whisper_logmel_tokenizer(tiny_corpus, tmp_path):
    """Whisper states + per-utterance normalised log-mel: 384 + 80 dims, blocks weighted
    1/sqrt(width) (saved with the centroids), and the model check of the whisper route."""
    from speechlm.tokenizers.semantic.whisper import BUNDLED_SHA256

    path = train_tokenizer(tiny_corpus, tmp_path / "tok", features="whisper+logmel", units=8,
                           max_hours=10 / 3600, show_progress=False)
    config = json.loads((path / "config.json").read_text())
    assert config["features"] == "whisper+logmel" and config["dim"] == 464
    assert config["model_sha256"] == BUNDLED_SHA256 and config["source"] == "whisper"
    tok = load_tokenizer(path)
    weights = tok.quantizer.weights
    assert np.allclose(weights[:384], 384 ** -0.5) and np.allclose(weights[384:], 80 ** -0.5)
    x = speech(tiny_corpus)
    feats = tok.extractor(x)
    assert feats.shape == (x.size // 320, 464)
    mel = feats[:, 384:]  # normalised per utterance
    assert np.allclose(mel.mean(axis=0), 0, atol=1e-4) and np.allclose(mel.std(axis=0), 1, atol=1e-2)
    units, durations = tok.encode(x)
    assert durations.sum() == x.size // 320 and units.max() < 8
    with pytest.raises(ConfigError, match="--layer 2: whisper\\+logmel"):
        train_tokenizer(tiny_corpus, tmp_path / "t2", features="whisper+logmel", layer=2)
    with pytest.raises(CheckpointError, match="nope: Whisper model directory not found"):
        train_tokenizer(tiny_corpus, tmp_path / "t3", features=f"whisper:{tmp_path / 'nope'}+logmel")
