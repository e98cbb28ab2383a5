"""The codec: model shapes, losses on hand-computed cases, training + exact resume, distillation,
the directory contract, hf:PATH loading and one-line errors for bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from speechlm.cli import main as cli
from speechlm.core.errors import AudioError, CheckpointError, ConfigError, DataError
from speechlm.data.audio import write_wav
from speechlm.tokenizers.codec import Codec, load_codec
from speechlm.tokenizers.codec import train as codec_train
from speechlm.tokenizers.codec.losses import (MultiScaleMelLoss, discriminator_hinge_loss,
                                              feature_matching_loss, generator_hinge_loss,
                                              semantic_distillation_loss)
from speechlm.tokenizers.codec.model import CodecConfig, CodecModel
from speechlm.tokenizers.codec.train import CodecTrainConfig, UsageMeter, train_codec
from tests.conftest import tone

TINY = dict(channels=4, dim=16, codebooks=4, codebook_size=16, kmeans_iters=2, convnext_dim=16,
            convnext_layers=1)
TRAIN = dict(TINY, steps=4, batch=2, segment_seconds=0.2, adv_start=2, log_every=1, save_every=2,
             disc_filters=2)


def tiny_codec(seed: int = 0) -> Codec:
    torch.manual_seed(seed)
    model = CodecModel(CodecConfig(**TINY))
    model.train()
    model(torch.randn(2, 1, 3200) * 0.1, dropout_seed=0)  # k-means init of the codebooks
    return Codec(model)


@pytest.fixture(scope="module")
def trained(tiny_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("codec") / "codec"
    train_codec(tiny_corpus, out, CodecTrainConfig(**TRAIN), show_progress=False)
    return out


@pytest.fixture(scope="module")
def mfcc_tokenizer(tiny_corpus, tmp_path_factory):
    """The distillation teacher and the ABX/PNMI reference, trained once for the module."""
    from speechlm.tokenizers import train_tokenizer

    return train_tokenizer(tiny_corpus, tmp_path_factory.mktemp("tok") / "tok", features="mfcc", units=8,
                           show_progress=False)


def test_config_frame_rate_bitrate_and_validation():
    cfg = CodecConfig()
    assert cfg.hop == 320 and cfg.frame_rate == 50.0
    assert cfg.bitrate(1) == 50 * 10 and cfg.bitrate() == 8 * 500       # 1024 entries = 10 bits
    assert any("codebooks=0" in p for p in CodecTrainConfig(codebooks=0).validate())
    assert any("save_every" in p for p in CodecTrainConfig(log_every=3, save_every=10).validate())


def test_encode_decode_shapes_and_codebook_prefixes():
    codec = tiny_codec()
    x = tone(0.5)                                                       # 8000 samples
    codes = codec.encode(x)
    assert codes.shape == (4, 25) and codes.dtype == np.int64
    assert codes.min() >= 0 and codes.max() < 16
    assert np.array_equal(codec.encode(x, n_codebooks=2), codes[:2])
    odd = codec.encode(np.concatenate([x, x[:1]]))                      # padded to a whole frame
    assert odd.shape == (4, 26)
    for k in (1, 2, 4):
        wav = codec.decode(codes[:k])
        assert wav.shape == (25 * 320,) and wav.dtype == np.float32 and np.isfinite(wav).all()
    # decoding with more codebooks changes the output: each codebook adds its residual
    assert not np.allclose(codec.decode(codes[:1]), codec.decode(codes))
    assert codec.code_vectors(codes).shape == (4, 25, 16)


@pytest.mark.parametrize("encoder,decoder", [("mel", "istft"), ("seanet", "seanet"), ("mel", "seanet")])
def test_every_encoder_and_decoder_keeps_the_frame_grid(encoder, decoder):
    model = CodecModel(CodecConfig(**{**TINY, "encoder": encoder, "decoder": decoder}))
    model.train()
    out = model(torch.randn(2, 1, 4 * 320) * 0.1, dropout_seed=0)
    assert out.audio.shape == (2, 1, 4 * 320) and out.codes.shape == (2, 4, 4)
    assert any("decoder='x'" in p for p in CodecConfig(decoder="x").validate())


def test_more_codebooks_reconstruct_training_audio_better(tiny_corpus, tmp_path):
    """Regression (issue 14): the first codec decoded every prefix of its codebooks to the same audio
    (mel distance 0.922 at k = 1..8) because its waveform encoder had not learnt to pass anything
    through in a CPU budget. A short run must already give a strictly better reconstruction of its
    own training audio with each codebook added."""
    from speechlm.data.corpus import Corpus
    from speechlm.eval.codec_metrics import mel_distance

    # 120 steps: on a fresh install (2026-11-27) 60 no longer separated the prefixes (mel distance
    # 1.057 at k = 1..4, the encoder not yet passing anything through); 120 do (0.935 > 0.926 >
    # 0.924 > 0.924). The cause was not pinned down (torch is pinned; the VQ dependencies were not)
    cfg = CodecTrainConfig(**{**TRAIN, "dim": 32, "codebook_size": 64, "convnext_dim": 32, "steps": 120,
                              "adv_start": 120, "batch": 4, "log_every": 120, "save_every": 120,
                              "lr": 3e-3})
    codec = load_codec(train_codec(tiny_corpus, tmp_path / "c", cfg, show_progress=False))
    clips = [u.samples() for _, u in zip(range(4), Corpus(tiny_corpus).utterances("train"))]
    distance = [np.mean([mel_distance(x, codec.decode(codec.encode(x)[:k])[: x.size]) for x in clips])
                for k in (1, 2, 3, 4)]
    assert all(b < a for a, b in zip(distance, distance[1:])), distance


def test_quantizer_dropout_cuts_the_decoder_input_but_every_codebook_learns():
    """Regression (issue 14, codebook usage): with the library's quantizer dropout, codebook j was
    updated on only (K - j + 1) / K of the steps, so the last codebooks kept entries fitted to the
    untrained encoder and used 8-33 % of them on held-out audio. Every codebook must quantize and
    update its EMA state on every step, while the decoder sees only the first k."""
    import random

    torch.manual_seed(0)
    model = CodecModel(CodecConfig(**TINY))
    model.train()
    seed = next(s for s in range(100) if random.Random(s).randint(1, 4) == 1)   # k = 1
    audio = torch.randn(2, 1, 3200) * 0.1
    before = [vq._codebook.cluster_size.clone() for vq in model.quantizer.layers]
    out = model(audio, dropout_seed=seed)
    assert (out.codes >= 0).all() and out.codes.shape[-1] == 4                 # every codebook ran
    assert all(bool(vq._codebook.initted) for vq in model.quantizer.layers)
    assert all(not torch.equal(b, vq._codebook.cluster_size)                   # and updated its EMA
               for b, vq in zip(before, model.quantizer.layers))
    model.eval()
    codes = out.codes.transpose(1, 2)                                          # (B, K, N)
    with torch.inference_mode():
        expected = model.decoder(model.code_vectors(codes[:, :1])[0].transpose(1, 2))
    # the training output decoded codebook 1 alone (k = 2 differs by 7e-3 here)
    assert torch.allclose(out.audio.detach(), expected, atol=1e-5)


def test_dead_code_threshold_scales_with_the_frames_per_step():
    """The library's threshold is an absolute EMA count per step. The old default (2 frames per
    step for 1024 entries and 100 frames per batch, a uniform share of 0.1) marked every entry dead
    on every step, so the codebooks were a rolling buffer of raw batch vectors instead of k-means
    centroids. The threshold is now a fraction of an entry's uniform share of a batch."""
    cfg = CodecTrainConfig(batch=4, segment_seconds=0.5, codebook_size=1024, dead_code_fraction=0.2)
    assert cfg.model_config().dead_code_threshold == pytest.approx(0.2 * 4 * 25 / 1024)
    bigger = CodecTrainConfig(batch=16, segment_seconds=1.0, codebook_size=256, dead_code_fraction=0.2)
    assert bigger.model_config().dead_code_threshold == pytest.approx(0.2 * 16 * 50 / 256)
    assert any("dead_code_fraction" in p for p in CodecTrainConfig(dead_code_fraction=-1).validate())


def test_losses_on_hand_computed_cases():
    real = [(torch.tensor([2.0, 0.5]), [torch.tensor([1.0, -1.0])])]
    fake = [(torch.tensor([-2.0, 0.0]), [torch.tensor([0.0, -1.0])])]
    # D: mean(relu(1 - [2, .5])) + mean(relu(1 + [-2, 0])) = 0.25 + 0.5
    assert discriminator_hinge_loss(real, fake).item() == pytest.approx(0.75)
    # G: mean(relu(1 - [-2, 0])) = (3 + 1) / 2
    assert generator_hinge_loss(fake).item() == pytest.approx(2.0)
    # FM: mean|[1, -1] - [0, -1]| / mean|[1, -1]| = 0.5 / 1
    assert feature_matching_loss(real, fake).item() == pytest.approx(0.5)
    pred = torch.tensor([[[1.0, 0.0], [1.0, 1.0]]])
    target = torch.tensor([[[1.0, 0.0], [-1.0, -1.0]]])
    assert semantic_distillation_loss(pred, target).item() == pytest.approx((0 + 2) / 2)
    x = torch.from_numpy(tone(0.25))[None, None]
    mel = MultiScaleMelLoss()
    assert mel(x, x).item() == 0.0 and mel(x, 0.5 * x).item() > 0


def test_usage_meter_known_answer():
    meter = UsageMeter(codebooks=2, size=4)
    codes = torch.tensor([[[0, 1], [0, 1], [1, 1], [2, 1]]])            # (B=1, N=4, K=2)
    meter.add(codes)
    usage, perplexity = meter.summary()
    assert usage == [0.75, 0.25]
    p = np.array([2, 1, 1]) / 4
    assert perplexity[0] == pytest.approx(math.exp(-(p * np.log(p)).sum()))
    assert perplexity[1] == pytest.approx(1.0)


def test_train_writes_codec_dir_metrics_and_plot(trained):
    codec = load_codec(trained)
    assert codec.n_codebooks == 4 and codec.codebook_size == 16 and codec.frame_rate == 50.0
    training = codec.info["training"]
    assert training["steps"] == 4 and training["steps_per_second"] > 0
    rows = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert "loss_adv" not in rows[1] and "loss_adv" in rows[2]          # adversarial from step 2
    assert all(len(r["usage"]) == 4 and len(r["perplexity"]) == 4 for r in rows)
    assert (trained / "training.png").is_file() and list((trained / "tb").iterdir())
    assert (trained / "train_config.yaml").is_file()


def test_resume_reproduces_the_uninterrupted_run(trained, tiny_corpus, tmp_path, monkeypatch):
    original = codec_train._save_checkpoint

    def crash_after_first_checkpoint(*args, **kwargs):
        original(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(codec_train, "_save_checkpoint", crash_after_first_checkpoint)
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        train_codec(tiny_corpus, out, CodecTrainConfig(**TRAIN), show_progress=False)
    monkeypatch.setattr(codec_train, "_save_checkpoint", original)
    assert not (out / "config.json").exists()                           # no codec from a dead run
    train_codec(tiny_corpus, out, CodecTrainConfig(**TRAIN), resume=True, show_progress=False)

    def losses(run):
        return [{k: v for k, v in json.loads(line).items() if k.startswith("loss") or k == "usage"}
                for line in (run / "metrics.jsonl").read_text().splitlines()]

    for a, b in zip(losses(trained), losses(out), strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert np.allclose(a[key], b[key], atol=1e-5), key
    x = tone(0.4)
    assert np.array_equal(load_codec(trained).encode(x), load_codec(out).encode(x))
    with pytest.raises(ConfigError, match="different config"):
        train_codec(tiny_corpus, out, CodecTrainConfig(**{**TRAIN, "lr": 0.5}), resume=True,
                    show_progress=False)


def test_semantic_distillation(tiny_corpus, mfcc_tokenizer, tmp_path):
    tok = mfcc_tokenizer
    out = train_codec(tiny_corpus, tmp_path / "codec", CodecTrainConfig(
        **{**TRAIN, "steps": 2, "distill": str(tok)}), show_progress=False)
    codec = load_codec(out)
    assert codec.info["distill"]["dim"] == 39 and codec.info["distill"]["features"] == "mfcc"
    assert codec.model.semantic_head.out_features == 39
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(0.0 <= r["loss_distill"] <= 2.0 for r in rows)


def test_corrupt_and_missing_codec_dirs(trained, tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_codec(tmp_path / "nope")
    bad = tmp_path / "bad"
    bad.mkdir()
    with pytest.raises(CheckpointError, match=r"bad/config.json: missing"):
        load_codec(bad)
    (bad / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt JSON"):
        load_codec(bad)
    (bad / "config.json").write_text((trained / "config.json").read_text())
    (bad / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match=r"model.safetensors: cannot load codec weights"):
        load_codec(bad)
    (bad / "config.json").write_text(json.dumps({"format": "speechlm-codec", "model": {"channels": "x"}}))
    with pytest.raises(CheckpointError, match="config.json"):
        load_codec(bad)


def test_bad_codes_and_short_audio(trained, tmp_path):
    codec = load_codec(trained)
    with pytest.raises(DataError, match=r"x.npy: 5 codebooks, but this codec has 1..4"):
        codec.decode(np.zeros((5, 10), dtype=np.int64), source="x.npy")
    with pytest.raises(DataError, match=r"codes must be in 0..15, found 16..16"):
        codec.decode(np.full((2, 10), 16), source="x.npy")
    with pytest.raises(DataError, match="must be integers"):
        codec.decode(np.zeros((2, 10), dtype=np.float32), source="x.npy")
    with pytest.raises(AudioError, match=r"clip.wav: audio is .* shorter than"):
        codec.encode(np.zeros(300, dtype=np.float32) + 0.01, source="clip.wav")


def test_cli_round_trip_and_one_line_errors(trained, tmp_path, capsys):
    wav = tmp_path / "in.wav"
    write_wav(wav, tone(0.6))
    npy, out = tmp_path / "codes.npy", tmp_path / "out.wav"
    assert cli(["codec", "encode", "--codec", str(trained), str(wav), str(npy)]) == 0
    assert np.load(npy).shape == (4, 30)
    assert cli(["codec", "decode", "--codec", str(trained), "--codebooks", "2", str(npy), str(out)]) == 0
    capsys.readouterr()
    cases = {
        "wrong_k.npy": np.zeros((6, 10), dtype=np.int64),
        "range.npy": np.full((4, 10), 99, dtype=np.int64),
    }
    for name, array in cases.items():
        np.save(tmp_path / name, array)
        assert cli(["codec", "decode", "--codec", str(trained), str(tmp_path / name), str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and name in err and "Traceback" not in err
    (tmp_path / "junk.npy").write_bytes(b"nope")
    assert cli(["codec", "decode", "--codec", str(trained), str(tmp_path / "junk.npy"), str(out)]) == 2
    assert "junk.npy: cannot read codes" in capsys.readouterr().err
    short = tmp_path / "short.wav"
    write_wav(short, tone(0.01))                                        # 160 samples < 1 frame
    assert cli(["codec", "encode", "--codec", str(trained), str(short), str(npy)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "short.wav" in err
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "config.json").write_text("[]")
    assert cli(["codec", "encode", "--codec", str(tmp_path / "corrupt"), str(wav), str(npy)]) == 2
    assert "corrupt/config.json" in capsys.readouterr().err


def test_cli_train_flags_and_config_file(tiny_corpus, tmp_path, capsys):
    cfg = tmp_path / "codec.yaml"
    cfg.write_text("channels: 4\ndim: 16\ncodebook_size: 8\nbatch: 2\nsegment_seconds: 0.2\n"
                   "adv_start: 1\nlog_every: 1\nsave_every: 2\ndisc_filters: 2\nkmeans_iters: 2\n"
                   "convnext_dim: 16\nconvnext_layers: 1\n")
    out = tmp_path / "c"
    assert cli(["codec", "train", "--corpus", str(tiny_corpus), "--out", str(out), "--config", str(cfg),
                "--steps", "2", "--codebooks", "2", "lr=0.002"]) == 0
    codec = load_codec(out)
    assert (codec.n_codebooks, codec.codebook_size) == (2, 8)
    assert codec.info["training"]["config"]["lr"] == 0.002
    capsys.readouterr()
    assert cli(["codec", "train", "--corpus", str(tiny_corpus), "--out", str(out), "bogus=1"]) == 2
    assert "unknown key(s) bogus" in capsys.readouterr().err


def test_hf_encodec_and_mimi(tmp_path):
    from transformers import EncodecConfig, EncodecModel, LlamaConfig, MimiConfig, MimiModel

    torch.manual_seed(0)
    EncodecModel(EncodecConfig(
        sampling_rate=16000, num_filters=4, upsampling_ratios=[8, 5, 4, 2], hidden_size=16,
        codebook_size=32, codebook_dim=16, target_bandwidths=[0.5, 1.0], num_lstm_layers=1,
    )).save_pretrained(tmp_path / "encodec")
    MimiModel(MimiConfig(
        sampling_rate=24000, frame_rate=12.5, num_filters=4, upsampling_ratios=[8, 6, 5, 4],
        hidden_size=16, codebook_size=32, codebook_dim=16, num_quantizers=4,
        num_semantic_quantizers=1, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
        intermediate_size=32, head_dim=8, upsample_groups=16, vector_quantization_hidden_dimension=16,
    )).save_pretrained(tmp_path / "mimi")
    x = tone(1.0)
    for name, k, frames in (("encodec", 4, 50), ("mimi", 4, 13)):
        codec = load_codec(f"hf:{tmp_path / name}")
        assert codec.n_codebooks == k
        codes = codec.encode(x)
        assert codes.shape == (k, frames) and codes.max() < 32
        for use in (1, k):
            wav = codec.decode(codes[:use])
            assert wav.dtype == np.float32 and abs(wav.size - 16000) <= 16000 // frames + 1
    LlamaConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
                intermediate_size=8).save_pretrained(tmp_path / "llama")
    with pytest.raises(CheckpointError, match="model_type 'llama' is not one of"):
        load_codec(f"hf:{tmp_path / 'llama'}")
    with pytest.raises(CheckpointError, match="not a HuggingFace model directory"):
        load_codec(f"hf:{tmp_path}")


def test_signal_metrics_known_answers():
    from speechlm.eval.codec_metrics import mel_distance, si_snr

    x = tone(0.5)
    assert mel_distance(x, x) == 0.0
    assert mel_distance(x, 2 * x) == pytest.approx(math.log(2), abs=1e-3)  # log-mel shifts by ln 2
    assert si_snr(x, 3 * x) > 60                                            # scale-invariant
    noise = np.random.default_rng(0).normal(size=x.size).astype(np.float32)
    noise *= np.linalg.norm(x - x.mean()) / np.linalg.norm(noise) / math.sqrt(10)  # 10 dB below
    assert si_snr(x, x + noise) == pytest.approx(10.0, abs=0.5)


def test_speaker_probe_separates_separable_features():
    from speechlm.eval.codec_metrics import speaker_probe

    rng = np.random.default_rng(0)
    speakers = ["a"] * 10 + ["b"] * 10
    voice = np.array([[3.0] * 4] * 10 + [[-3.0] * 4] * 10) + rng.normal(size=(20, 4))
    result = speaker_probe({"voice": voice, "noise": rng.normal(size=(20, 4))}, speakers)
    assert result["voice"] == 1.0 and result["noise"] < 0.8 and result["chance"] == 0.5
    with pytest.raises(DataError, match="2\\+ speakers"):
        speaker_probe({"x": voice[:10]}, speakers[:10])


def test_evaluate_codec_reports_every_metric(trained, tiny_corpus, mfcc_tokenizer, tmp_path):
    from speechlm.eval.codec_metrics import evaluate_codec
    from speechlm.vocoder import VocoderTrainConfig, train_vocoder

    tok = mfcc_tokenizer
    voc = tmp_path / "voc"
    train_vocoder(VocoderTrainConfig(corpus=str(tiny_corpus), tokenizer=str(tok), out=str(voc),
                                     steps=1, batch=2, dim=16, encoder_layers=1, decoder_layers=1,
                                     voc_dim=16, voc_layers=1, segment_seconds=0.6,
                                     voc_segment_seconds=0.2, speaker_clips=2, tensorboard=False,
                                     progress=False, threads=1))
    r = evaluate_codec(trained, tiny_corpus, split="train", limit=6, tokenizer_dir=tok, vocoder_dir=voc,
                       asr="pocketsphinx", speaker=False, n_triplets=50, show_progress=False)
    assert r["codebooks_evaluated"] == [1, 2, 4] and r["asr"] == "pocketsphinx"
    for metric in ("bitrate", "mel_distance", "si_snr", "wer", "wer_ratio", "codebook_usage"):
        assert set(r[metric]) == {"1", "2", "4"}, metric
    assert r["bitrate"] == {"1": 200.0, "2": 400.0, "4": 800.0}          # 50 Hz x 4 bits x k
    assert len(r["codebook_usage_per_codebook"]) == 4 and 0 < r["codebook_usage"]["1"] <= 1
    from speechlm.data.corpus import Corpus

    train_utts = list(Corpus(tiny_corpus).utterances("train"))
    assert r["utterances"] == 6 and r["usage_utterances"] == len(train_utts) > 6  # usage: whole split
    floor = sum(u.samples().size // 320 for u in train_utts)    # encode pads a partial last frame
    assert floor <= r["usage_frames"] <= floor + len(train_utts)
    assert set(r["baselines"]) == {"unit_vocoder", "griffin_lim"}
    assert {"codebook1", "tokenizer_units"} <= set(r["semantic"])
    assert 0 <= r["semantic"]["codebook1"]["pnmi"] <= 1
    from collections import Counter

    per_speaker = Counter(u.speaker for _, u in zip(range(6), Corpus(tiny_corpus).utterances("train")))
    if len(per_speaker) >= 2 and min(per_speaker.values()) >= 2:
        assert r["speaker_probe"]["speakers"] == len(per_speaker) and 0 <= r["speaker_probe"]["rest"] <= 1
    else:  # the corpus' first 6 utterances cannot train a probe: said so, not a crash
        assert "need 2+ speakers" in r["speaker_probe"]["skipped"]
    assert set(r["monotonic"]) == {"mel_distance", "si_snr", "wer_ratio"}
