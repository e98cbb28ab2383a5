"""pgslm-tiny and spiritlm-expressive-tiny end to end on a tiny styled corpus: the pipeline builds
the prosody streams, the model directory carries the F0 bins and stream config, mismatches fail
with one line, and `speechlm eval --suite prosody` scores continuations (F0-aware vocoder, style
classifier)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from speechlm.cli import main
from speechlm.core.errors import CheckpointError, ConfigError
from speechlm.eval.prosody import (ProsodyEvalConfig, bootstrap_ci, evaluate_prosody, logf0_mae,
                                   pearson)
from speechlm.lm.model import load_speech_lm
from speechlm.pipeline import train_from_config
from speechlm.tokenizers import train_tokenizer
from speechlm.tokenizers.prosody import (PitchVQConfig, load_prosody_tokenizer, train_pitch_vq,
                                         train_style_tokenizer, train_unit_prosody)
from speechlm.tokenizers.prosody.saved import restore

from .conftest import RECIPES, TINY

PGSLM = RECIPES / "pgslm-tiny.yaml"
SPIRIT = RECIPES / "spiritlm-expressive-tiny.yaml"
QUICK = ProsodyEvalConfig("", prompts=2, samples=2, prompt_seconds=1.0, continuation_seconds=0.5,
                          plots=1, show_progress=False)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """Styled corpus (excited / sad), mfcc units, a pitch VQ and style tokenizer, a style
    classifier and an F0-aware vocoder, all tiny."""
    from speechlm.data.synth import synthesize_corpus
    from speechlm.eval.style import train_style_classifier
    from speechlm.tokenizers.prosody.vocoder_stream import LOGF0, LogF0Stream
    from speechlm.vocoder.train import VocoderTrainConfig, train_vocoder

    root = tmp_path_factory.mktemp("prosody-lm")
    corpus = root / "corpus"
    synthesize_corpus(corpus, hours=90 / 3600, voices=3, heldout_voices=1, seed=5, valid_fraction=0.2,
                      styles=["excited", "sad"], show_progress=False)
    train_tokenizer(corpus, root / "tok", features="mfcc", units=16, show_progress=False)
    train_pitch_vq(corpus, root / "pitch", steps=5, show_progress=False,
                   config=PitchVQConfig(codebook_size=8, channels=8, code_dim=4))
    train_style_tokenizer(corpus, root / "style", k=3, show_progress=False)
    train_style_classifier(corpus, root / "clf", steps=20, show_progress=False)
    voc = train_vocoder(VocoderTrainConfig(corpus=str(corpus), tokenizer=str(root / "tok"),
                                           out=str(root / "voc"), steps=2, batch=2, dim=16,
                                           voc_dim=16, encoder_layers=1, decoder_layers=1,
                                           voc_layers=1, speaker_embedding=False, warmup_steps=1,
                                           tensorboard=False, progress=False),
                        streams={LOGF0: LogF0Stream()})
    assert voc.streams == [LOGF0]
    return root


def overrides(work, name: str, *extra: str) -> list[str]:
    return [f"corpus_dir={work / 'corpus'}", f"tokenizer_dir={work / 'tok'}",
            f"units_dir={work / 'units'}", f"tokens_dir={work / ('tokens-' + name)}",
            f"output_dir={work / ('run-' + name)}", "max_steps=3", *TINY, *extra]


@pytest.fixture(scope="module")
def pgslm(work):
    return train_from_config(PGSLM, overrides(work, "pgslm", f"prosody_tokenizers=[unit={work / 'pu'}]"))


def test_pgslm_builds_its_streams_and_saves_the_bins_in_the_model(work, pgslm):
    tok = load_prosody_tokenizer(work / "pu")  # trained by the pipeline with its defaults
    lm = load_speech_lm(pgslm)
    assert [s.family for s in lm.spec.streams] == ["units", "duration", "f0"]
    assert lm.spec.layout == "delay" and lm.spec.delays == (0, 1, 1)
    assert lm.meta["sampling"] == {"temperature": [0.8, 0.5, 0.6], "top_k": [0, 0, 0]}
    saved = restore(lm.meta["prosody"]["unit-prosody"], "t")
    assert np.array_equal(saved.f0_bins.edges, tok.f0_bins.edges) and saved.f0_bins.n == 32
    assert saved.norm == tok.norm
    # every checkpoint carries the same record
    ckpt = sorted(pgslm.glob("checkpoint-*"))[-1]
    assert json.loads((ckpt / "speechlm.json").read_text())["prosody"] == lm.meta["prosody"]


def test_stream_config_mismatches_fail_with_one_line(work, pgslm, tmp_path, capsys):
    other = train_unit_prosody(work / "corpus", work / "tok", tmp_path / "p16", f0_bins=16,
                               show_progress=False)
    with pytest.raises(ConfigError, match=r"stream 'duration' of .*tokens-pgslm was made by .*pu "
                                          r"\(32 codes\), but prosody_tokenizers gives .*p16"):
        train_from_config(PGSLM, overrides(work, "pgslm", f"prosody_tokenizers=[unit={other}]",
                                           f"output_dir={tmp_path / 'x'}"))
    with pytest.raises(ConfigError, match="KIND=DIR"):
        train_from_config(PGSLM, overrides(work, "pgslm", "prosody_tokenizers=[pitch:x]"))
    # a dataset without the model's streams: one line from `speechlm eval`, exit 2
    capsys.readouterr()
    assert main(["eval", "--suite", "prosody", "--model", str(pgslm), "--corpus",
                 str(work / "corpus"), "--tokens", str(work / "units"), "--out",
                 str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err  # (HF may draw a weight-loading bar before it)
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "model/dataset stream mismatch" in errors[0]
    assert "Traceback" not in err
    # a model whose saved bins were stripped cannot decode F0
    meta = json.loads((pgslm / "speechlm.json").read_text())
    del meta["prosody"]["unit-prosody"]["bins"]
    broken = tmp_path / "broken"
    import shutil

    shutil.copytree(pgslm, broken, ignore=shutil.ignore_patterns("checkpoint-*", "best"))
    (broken / "speechlm.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="lacks its F0/duration bin edges"):
        evaluate_prosody(broken, ProsodyEvalConfig(str(work / "corpus"), **_quick()))


def _quick() -> dict:
    return {k: getattr(QUICK, k) for k in ("prompts", "samples", "prompt_seconds",
                                           "continuation_seconds", "plots", "show_progress")}


def test_prosody_suite_on_pgslm_and_spiritlm(work, pgslm, tmp_path, capsys):
    assert main(["eval", "--suite", "prosody", "--model", str(pgslm), "--corpus",
                 str(work / "corpus"), "--vocoder", str(work / "voc"), "--style-classifier",
                 str(work / "clf"), "--prompts", "2", "--samples", "2", "--json", "--out",
                 str(tmp_path / "e")]) == 0
    entry = json.loads((tmp_path / "e" / "results.json").read_text())["prosody"]
    assert entry["f0_source"].startswith("predicted F0 stream") and entry["prompts"] >= 1
    for key in ("logf0_min_mae", "f0_std", "f0_prompt_corr", "style_preservation"):
        assert "ci95" in entry[key] and key in entry
    assert entry["logf0_min_mae"]["value"] >= 0 and entry["style_preservation"]["n"] >= 1
    assert set(entry["stream_loss"]) == {"units", "duration", "f0"}
    assert all(0 < v < 20 for v in entry["stream_loss"].values())
    assert (tmp_path / "e" / "prosody_f0.png").is_file()
    rows = entry["per_prompt"]  # prompt by prompt, so two models pair up
    assert len(rows) == entry["prompts"] and all(r["id"] and r["style"] for r in rows)
    mae = [r["logf0_min_mae"] for r in rows if r["logf0_min_mae"] is not None]
    assert np.mean(mae) == pytest.approx(entry["logf0_min_mae"]["value"])
    assert entry["style_classifier_clip_seconds"] is None  # the fixture's judge: whole utterances

    run = train_from_config(SPIRIT, overrides(work, "spirit", "prosody_tokenizers=[pitch-vq="
                                              f"{work / 'pitch'},style={work / 'style'}]"))
    lm = load_speech_lm(run)
    assert [s.family for s in lm.spec.streams] == ["units", "pitch", "style"]
    assert set(lm.meta["prosody"]) == {"pitch-vq", "style"}
    cfg = ProsodyEvalConfig(str(work / "corpus"), vocoder_dir=str(work / "voc"),
                            style_classifier=str(work / "clf"), **_quick())
    entry = evaluate_prosody(run, cfg, tmp_path / "s")
    assert entry["f0_source"].startswith("predicted pitch stream")
    assert 0 <= entry["style_preservation"]["value"] <= 1


def test_metric_arithmetic_on_hand_computed_cases():
    ref = np.array([100.0, 0.0, 200.0, 100.0])
    est = np.array([100.0 * np.e, 150.0, 0.0, 100.0])  # frames voiced in both: 0 and 3
    assert logf0_mae(est, ref) == pytest.approx(0.5)
    assert logf0_mae(np.zeros(4), ref) is None
    # x - 2 = (-1, 0, 1), y - 25/6 = (-13/6, -1/6, 14/6): r = 4.5 / sqrt(2 * 61/6)
    r = pearson(np.array([[1.0, 2.0], [2.0, 4.0], [3.0, 6.5]]))
    assert r == pytest.approx(4.5 / np.sqrt(2 * 61 / 6))
    low, high = bootstrap_ci(np.array([1.0, 2.0, 3.0, 4.0]))
    assert 1.0 <= low <= 2.5 <= high <= 4.0


def test_unit_only_baseline_is_measured_on_vocoded_audio(work, tmp_path):
    from speechlm.vocoder.train import VocoderTrainConfig, train_vocoder

    run = train_from_config(RECIPES / "gslm-tiny.yaml", overrides(work, "gslm", "tokens_dir=null"))
    cfg = ProsodyEvalConfig(str(work / "corpus"), **_quick())
    with pytest.raises(ConfigError, match="pass --vocoder"):
        evaluate_prosody(run, cfg)
    with pytest.raises(ConfigError, match="F0-aware vocoder needs a model that predicts F0"):
        evaluate_prosody(run, ProsodyEvalConfig(str(work / "corpus"), vocoder_dir=str(work / "voc"),
                                                **_quick()))
    train_vocoder(VocoderTrainConfig(corpus=str(work / "corpus"), tokenizer=str(work / "tok"),
                                     out=str(tmp_path / "voc"), steps=2, batch=2, dim=16, voc_dim=16,
                                     encoder_layers=1, decoder_layers=1, voc_layers=1,
                                     speaker_embedding=False, warmup_steps=1, tensorboard=False,
                                     progress=False))
    entry = evaluate_prosody(run, ProsodyEvalConfig(str(work / "corpus"),
                                                    vocoder_dir=str(tmp_path / "voc"), **_quick()))
    assert entry["f0_source"] == "vocoded continuation (Praat F0)" and entry["streams"] == ["units"]
    assert set(entry["stream_loss"]) == {"units"}


def test_a_retrained_pitch_tokenizer_does_not_pass_for_the_models_own(work, tmp_path):
    from speechlm.tokenizers.prosody.saved import check_same, describe

    record = describe(load_prosody_tokenizer(work / "pitch"))
    check_same(record, load_prosody_tokenizer(work / "pitch"), "m")  # the same one passes
    other = train_pitch_vq(work / "corpus", tmp_path / "p", steps=3, seed=1, show_progress=False,
                           config=PitchVQConfig(codebook_size=8, channels=8, code_dim=4))
    with pytest.raises(CheckpointError, match="other bins/weights"):
        check_same(record, load_prosody_tokenizer(other), "m")
    bigger = train_pitch_vq(work / "corpus", tmp_path / "p16", steps=3, show_progress=False,
                            config=PitchVQConfig(codebook_size=16, channels=8, code_dim=4))
    with pytest.raises(CheckpointError, match=r"streams \{'pitch': 8\}.*streams \{'pitch': 16\}"):
        check_same(record, load_prosody_tokenizer(bigger), "m")
