"""Resynthesis report: WER per ASR judge, ratios, spectral distances, per-voice rows, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from speechlm.cli import main
from speechlm.core.errors import ConfigError
from speechlm.eval.resynthesis import log_mel_distance, resynthesis_report
from speechlm.tokenizers import train_tokenizer
from speechlm.vocoder import VocoderTrainConfig, train_vocoder


@pytest.fixture(scope="module")
def parts(tiny_corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("resynth")
    tok = train_tokenizer(tiny_corpus, root / "tok", features="mfcc", units=16, show_progress=False)
    train_vocoder(VocoderTrainConfig(
        corpus=str(tiny_corpus), tokenizer=str(tok), out=str(root / "voc"), steps=2, batch=2,
        dim=32, encoder_layers=1, decoder_layers=1, voc_dim=32, voc_layers=1, segment_seconds=0.6,
        voc_segment_seconds=0.2, speaker_clips=1, tensorboard=False, progress=False, threads=1))
    return tok, root / "voc"


def test_report_two_judges(parts, tiny_corpus, tmp_path):
    tok, voc = parts
    report = resynthesis_report(tok, voc, tiny_corpus, limit=2, asr="whisper,pocketsphinx",
                                show_progress=False, out_dir=tmp_path / "r")
    assert report["asr"] == "whisper" and set(report["by_asr"]) == {"whisper", "pocketsphinx"}
    assert report["utterances"] == 2 and report["speaker"] == "source"
    for entry in report["by_asr"].values():
        assert entry["wer_ratio"] == pytest.approx(entry["wer_resynth"] / entry["wer_original"])
        assert entry["wer_ratio_griffin_lim"] == pytest.approx(
            entry["wer_resynth_griffin_lim"] / entry["wer_original"])
        assert {"wer_resynth_copy_neural", "wer_ratio_copy_griffin_lim"} <= set(entry)
    # the top-level figures are the first judge's
    assert report["wer_ratio"] == report["by_asr"]["whisper"]["wer_ratio"]
    assert report["mcd_db"] > 0 and report["mel_l1"] > 0 and report["mcd_db_griffin_lim"] > 0
    # copy synthesis by Griffin-Lim starts from the true mel: closer to it than the resynthesis
    assert report["mel_l1_copy_griffin_lim"] < report["mel_l1_griffin_lim"]
    assert sum(v["utterances"] for v in report["per_voice"].values()) == 2
    saved = json.loads((tmp_path / "r" / "report.json").read_text())
    assert saved["wer_ratio"] == report["wer_ratio"]
    assert (tmp_path / "r" / "example0_griffin_lim.wav").is_file()
    assert (tmp_path / "r" / "spectrograms.png").stat().st_size > 1000


def test_log_mel_distance():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 0.1, 16000).astype(np.float32)
    assert log_mel_distance(x, x) == 0.0
    assert log_mel_distance(x, 0.5 * x) == pytest.approx(np.log(2), rel=1e-3)


def test_bad_options(parts, tiny_corpus, capsys):
    tok, voc = parts
    with pytest.raises(ConfigError, match="--asr 'nope'"):
        resynthesis_report(tok, voc, tiny_corpus, limit=1, asr="nope", show_progress=False,
                           griffin_lim=False)
    with pytest.raises(ConfigError, match="--speaker 'nobody'"):
        resynthesis_report(tok, voc, tiny_corpus, limit=1, speaker="nobody", show_progress=False)
    assert main(["vocoder", "eval", "--corpus", str(tiny_corpus), "--tokenizer", str(tok),
                 "--vocoder", str(voc), "--limit", "1", "--asr", "pocketsphinx",
                 "--speaker", "average", "--no-griffin-lim", "--no-copy-synthesis", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["asr"] == "pocketsphinx" and out["speaker"] == "average"
    assert "wer_ratio_griffin_lim" not in out and "wer_ratio_copy_neural" not in out
