"""Joint speech–text LMs end to end on the tiny espeak corpus: the sutlm recipe trains, forced
modality generation, and `speechlm eval --pairs FILE --modality s2t` with a prefix field."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from speechlm.cli import main
from speechlm.core.errors import ConfigError
from speechlm.lm.interleave.tokens import SPEECH, TEXT, Segment, family_range, marker_id
from speechlm.lm.model import load_speech_lm
from speechlm.pipeline import train_from_config

from ...conftest import tiny_lm_config

REPO = Path(__file__).resolve().parents[3]
TINY = ["hidden_size=32", "num_layers=2", "num_heads=2", "intermediate_size=64", "seq_len=64",
        "batch_size=4", "warmup_steps=1", "eval_every=2", "eval_blocks=2", "tensorboard=false",
        "progress=false", "plot=false", "threads=1", "max_steps=2"]


@pytest.fixture(scope="module")
def inputs(tiny_corpus, tmp_path_factory):
    """mfcc tokenizer (8 units), its token dataset with word alignments, and a 2-step text LM."""
    from speechlm.lm.textlm import train_text_lm
    from speechlm.tokenizers.semantic.tokenizer import train_tokenizer
    from speechlm.tokenizers.tokens import tokenize_corpus

    root = tmp_path_factory.mktemp("joint")
    tok = train_tokenizer(tiny_corpus, root / "tok", features="mfcc", units=8, show_progress=False)
    units = tokenize_corpus(tok, tiny_corpus, root / "units", show_progress=False)
    text = root / "t.txt"
    text.write_text(" ".join(f"The cat number {w} sat on the mat." for w in
                             ("one", "two", "three", "four", "five", "six") * 30))
    text_lm = train_text_lm(root / "textlm", text=text, steps=2, bpe_size=300, seq_len=32,
                            batch_size=4, progress=False,
                            overrides={"hidden_size": 32, "num_layers": 2, "num_heads": 2,
                                       "intermediate_size": 64, "plot": False, "threads": 1})
    return {"root": root, "tok": tok, "units": units, "text_lm": text_lm}


def _train(inputs, recipe: str, *extra: str) -> Path:
    out = inputs["root"] / "runs" / recipe
    args = [f"units_dir={inputs['units']}", f"tokenizer_dir={inputs['tok']}",
            f"text_lm_dir={inputs['text_lm']}", f"output_dir={out}", f"corpus_dir=unused", *TINY,
            *extra]
    if recipe == "spiritlm-tiny":  # warm: the architecture is the text LM's
        args = [a for a in args if not a.startswith(("hidden_size", "num_layers", "num_heads",
                                                     "intermediate_size"))]
    return train_from_config(REPO / "configs" / "recipes" / f"{recipe}.yaml", args)


@pytest.fixture(scope="module")
def joint_model(inputs) -> Path:
    return _train(inputs, "sutlm-interleave-tiny")


@pytest.mark.parametrize("recipe", ["sutlm-speech-tiny", "sutlm-text-tiny", "sutlm-concat-tiny",
                                    "spiritlm-tiny"])
def test_every_joint_recipe_trains_into_one_vocabulary(inputs, joint_model, recipe):
    lm = load_speech_lm(_train(inputs, recipe))
    ref = load_speech_lm(joint_model)
    assert lm.vocab.to_dict() == ref.vocab.to_dict()  # like for like: one token space
    assert lm.meta["sequence"] == recipe.removeprefix("sutlm-").removesuffix("-tiny") \
        or (recipe == "spiritlm-tiny" and lm.meta["sequence"] == "mix")
    if recipe == "spiritlm-tiny":  # warm: the text LM's text rows are kept
        text_lm = load_speech_lm(inputs["text_lm"])
        assert lm.meta["init"] == "warm" and lm.text_tokenizer is not None
        assert lm.model.config.hidden_size == text_lm.model.config.hidden_size


@pytest.mark.parametrize("prompt,modality", [(SPEECH, SPEECH), (SPEECH, TEXT), (TEXT, SPEECH),
                                             (TEXT, TEXT)])
def test_forced_output_modality(joint_model, prompt, modality):
    from speechlm.generation.modality import banned_ids, generate_modality, prompt_ids

    lm = load_speech_lm(joint_model)
    segment = Segment(SPEECH, (1, 2, 3)) if prompt == SPEECH else Segment(TEXT, (5, 6))
    ids = prompt_ids(lm, [segment], modality)
    # a marker is appended only where the modality changes
    assert (ids[-1] == marker_id(lm.vocab, modality)) == (prompt != modality)
    out = generate_modality(lm, [segment], modality, 12, temperature=1.0, seed=0)
    size = lm.vocab.family("units" if modality == SPEECH else "text").size
    assert out.modality == modality and all(0 <= t < size for t in out.tokens)
    lo, hi = family_range(lm.vocab, modality)
    banned = banned_ids(lm, modality)
    assert not banned[lo:hi].any() and banned[:lo].sum() == lo - 1 and banned[hi:].all()


def test_eval_pairs_with_prefix_in_a_direction(joint_model, inputs, tmp_path, capsys):
    pairs = tmp_path / "user.jsonl"
    pairs.write_text("".join(json.dumps(r) + "\n" for r in [
        {"prefix": "The cat sat.", "sentence_good": "It was happy.", "sentence_bad": "It were happy."},
        {"prefix": "We ran home.", "sentence_good": "We were late.", "sentence_bad": "We was late."},
        {"sentence_good": "She likes tea.", "sentence_bad": "She like tea."}]))
    out = tmp_path / "eval"
    assert main(["eval", "--model", str(joint_model), "--suite", "", "--pairs", str(pairs),
                 "--modality", "s2t", "--out", str(out), "--cache", str(tmp_path / "cache"),
                 "--no-reference", "--no-balance"]) == 0  # 3 pairs: score them all
    results = json.loads((out / "results.json").read_text())
    entry = results["pairs:user:s2t"]
    assert entry["n"] == entry["pairs"] == 3 and entry["modality"] == "s2t"
    assert 0 <= entry["accuracy"] <= 1
    # a malformed line fails naming FILE:LINE
    pairs.write_text(json.dumps({"prefix": 3, "sentence_good": "A.", "sentence_bad": "B."}) + "\n")
    assert main(["eval", "--model", str(joint_model), "--suite", "", "--pairs", str(pairs),
                 "--modality", "s2t", "--out", str(out)]) == 2
    assert "user.jsonl:1: field 'prefix'" in capsys.readouterr().err


def test_a_model_without_text_fails_clearly_for_s2t(inputs, tmp_path, capsys):
    from speechlm.lm.model import build_model, save_speech_lm
    from speechlm.lm.vocab import SpeechVocab

    vocab = SpeechVocab.for_units(8)  # a GSLM-style model: units only
    gslm = save_speech_lm(tmp_path / "gslm", build_model(tiny_lm_config(vocab), 0), vocab,
                          "speech", tokenizer_dir=str(inputs["tok"]))
    pairs = tmp_path / "p.jsonl"
    pairs.write_text(json.dumps({"sentence_good": "A cat.", "sentence_bad": "A cats."}) + "\n")
    assert main(["eval", "--model", str(gslm), "--suite", "", "--pairs", str(pairs),
                 "--modality", "s2t", "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert "needs a joint speech–text model" in err and "trained without text" in err
    from speechlm.generation.modality import generate_modality

    with pytest.raises(ConfigError, match="without text"):
        generate_modality(load_speech_lm(gslm), [Segment(SPEECH, (1,))], TEXT, 4)


def test_crossmodal_analyses_on_a_trained_model(joint_model):
    from speechlm.eval.crossmodal import few_shot_asr, representation_similarity

    lm = load_speech_lm(joint_model)
    sentences = ["the cat sat", "a dog ran far", "we were late"]
    units = [np.array([1, 2, 3]), np.array([4, 5, 6, 7]), np.array([2, 2, 1])]
    sim = representation_similarity(lm, sentences, units)
    assert len(sim["matched"]) == lm.model.config.num_hidden_layers + 1
    assert all(-1 <= v <= 1 for v in sim["matched"] + sim["shuffled"])
    asr = few_shot_asr(lm, sentences, units, shots=1, max_new_tokens=4)
    assert asr["n"] == 2 and asr["wer"] >= 0
