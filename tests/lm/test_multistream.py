"""K > 1 token streams: the toy recipe (train, SIGKILL, resume, generate), the HF model, warm init."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from speechlm.cli import main
from speechlm.generation.sampling import generate_codes
from speechlm.lm.init.cold import cold_init
from speechlm.lm.layout import get_layout
from speechlm.lm.model import load_speech_lm
from speechlm.lm.multistream import MultiStreamForCausalLM
from speechlm.lm.plots import read_metrics
from speechlm.lm.streams import TokenSpace
from speechlm.lm.vocab import SpeechVocab
from speechlm.tokenizers.tokens import TokenDataset

from .conftest import MULTISTREAM, REPO, TINY

SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)


def _toy_args(units_dir, streams_dir, out, *extra):
    return [f"units_dir={units_dir}", f"tokens_dir={streams_dir}", f"tokenizer_dir={units_dir / 'tok'}",
            f"output_dir={out}", *TINY, *extra]


def _train(args, env=None):
    return subprocess.run([sys.executable, "-m", "speechlm", "train", "--config", str(MULTISTREAM), *args],
                          cwd=REPO, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=300)


def test_k3_toy_recipe_resumes_exactly_after_sigkill_and_generates(units_dir, streams_dir, tmp_path):
    steps = 10
    full = _train(_toy_args(units_dir, streams_dir, tmp_path / "full", f"max_steps={steps}", "save_every=3"))
    assert full.returncode == 0, full.stderr
    kill_at = random.Random("k3-kill").randint(4, steps - 2)  # a random step after the first checkpoint
    args = _toy_args(units_dir, streams_dir, tmp_path / "killed", f"max_steps={steps}", "save_every=3")
    killed = _train(args, env={"SPEECHLM_KILL_AT_STEP": str(kill_at)})
    assert killed.returncode == -9, f"expected SIGKILL at step {kill_at}: {killed.stderr}"
    resumed = _train([*args, "--resume"])
    assert resumed.returncode == 0, resumed.stderr
    a = {r["step"]: r for r in read_metrics(tmp_path / "full")}
    b = {r["step"]: r for r in read_metrics(tmp_path / "killed")}
    assert sorted(b) == list(range(1, steps + 1))
    for step in range(1, steps + 1):
        assert abs(a[step]["loss"] - b[step]["loss"]) <= 1e-5, (step, kill_at)
        if "valid_loss" in a[step]:
            assert abs(a[step]["valid_loss"] - b[step]["valid_loss"]) <= 1e-5
    lm = load_speech_lm(tmp_path / "killed")
    assert isinstance(lm.model, MultiStreamForCausalLM)
    assert lm.space.streams == ("units", "duration", "word_start") and lm.spec.layout == "delay"
    assert lm.space.row_sizes == (24, 10, 6)
    out = tmp_path / "gen.json"
    assert main(["generate", "--model", str(tmp_path / "killed"), "--prompt-codes",
                 "1 5 7 7; 0 1 3 2; 1 0 1 0", "--max-new-tokens", "6", "--temperature", "0.8,1,1",
                 "--top-k", "5,3,2", "--seed", "2", "--out", str(out)]) == 0
    codes = json.loads(out.read_text())["samples"][0]["codes"]
    assert [len(v) for v in codes.values()] == [6, 6, 6]
    assert max(codes["units"]) < 20 and max(codes["duration"]) < 6 and max(codes["word_start"]) < 2


def test_toy_recipe_builds_its_k3_dataset_from_units(units_dir, tmp_path):
    """tokens_dir missing: the pipeline derives it from units_dir (derive_streams)."""
    from speechlm.pipeline import train_from_config

    tokens = tmp_path / "derived"
    run = train_from_config(MULTISTREAM, _toy_args(units_dir, tokens, tmp_path / "run", "max_steps=2",
                                                   "layout=parallel", "delays=null", "depth_layers=1"))
    data = TokenDataset(tokens)
    assert data.stream_names == ["units", "duration", "word_start"]
    record = data.split("train")[0]
    assert record["duration"].tolist() == np.minimum(np.ceil(np.log2(record.durations)), 5).astype(int).tolist()
    assert record["word_start"][0] == 1 and record["word_start"].sum() == len(record.words)
    assert load_speech_lm(run).model.depth is not None


@pytest.mark.parametrize("layout,depth", [("parallel", 0), ("delay", 1), ("coarse_first", 0),
                                          ("flatten", 0)])
def test_greedy_codes_follow_the_model_step_by_step(layout, depth):
    """KV-cached greedy generation == the argmax of one teacher-forced forward over its output
    (any layout, with and without the depth decoder): the cache and the row conditioning are right."""
    vocab = SpeechVocab.for_units(12).add_family("duration", 5, kind="prosody").add_family(
        "flag", 2, kind="marker")
    space = TokenSpace(vocab, ("units", "duration", "flag"), get_layout(layout, 3))
    model = cold_init(space, "tiny", seed=1, depth_layers=depth, **SMALL).eval()
    prompt = np.array([[1, 5, 7], [0, 4, 2], [1, 0, 1]])
    new = generate_codes(model, space, prompt, 5, temperature=0.0)
    assert new.shape == (3, 5) and new[0].max() < 12 and new[1].max() < 5 and new[2].max() < 2
    codes = np.concatenate([prompt, new], axis=1)
    ids, stream = space.encode(codes)
    ids = np.concatenate([np.full((ids.shape[0], 1), vocab.bos_id), ids], axis=1)   # (R, 1 + S)
    batch = torch.from_numpy(ids)[None] if space.n_rows > 1 else torch.from_numpy(ids)
    with torch.no_grad():
        logits = model(input_ids=batch).logits                                      # teacher forced
    logits = logits[0] if space.n_rows > 1 else logits                              # (R, 1 + S, V)
    frame = np.where(stream >= 0, space.layout.positions(8) % 8, -1)
    ranges = space.code_ranges()
    for r, s in zip(*np.nonzero((stream >= 0) & (frame >= 3))):
        lo, hi = ranges[stream[r, s]]
        assert ids[r, s + 1] == lo + int(logits[r, s, lo:hi].argmax()), (layout, r, s)


def test_multistream_model_round_trips_through_hf_auto_classes(tmp_path):
    """Saved with save_pretrained, loaded by AutoModelForCausalLM in a fresh process that only
    imported speechlm (registration), same logits."""
    vocab = SpeechVocab.for_units(12).add_family("duration", 5, kind="prosody")
    space = TokenSpace(vocab, ("units", "duration"), get_layout("parallel", 2))
    model = cold_init(space, "tiny", seed=0, depth_layers=1, **SMALL).eval()
    model.save_pretrained(tmp_path / "m")
    ids = torch.randint(0, 9, (2, 2, 7), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expect = model(input_ids=ids).logits
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "m")
    with torch.no_grad():
        assert torch.allclose(loaded(input_ids=ids).logits, expect, atol=1e-6)
    code = ("import transformers, speechlm, torch; "
            f"m = transformers.AutoModelForCausalLM.from_pretrained({str(tmp_path / 'm')!r}); "
            "print(type(m).__name__, m.config.row_vocab_sizes)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == "MultiStreamForCausalLM"


def test_unread_rows_are_predicted_but_never_read(tmp_path):
    """A row in unread_rows has a head but its inputs do not change any logits (saved and loaded
    with the config); the other rows' inputs still do."""
    vocab = SpeechVocab.for_units(12).add_family("state", 5, kind="marker")
    space = TokenSpace(vocab, ("units", "state"), get_layout("delay", 2, [1, 1]))
    model = cold_init(space, "tiny", 0, 0, [1], **SMALL).eval()
    model.save_pretrained(tmp_path / "m")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "m").eval()
    assert model.config.unread_rows == [1]
    assert model.embeddings[1] is None  # no input table: no parameters that never get a gradient
    ids = torch.randint(3, 9, (1, 2, 7), generator=torch.Generator().manual_seed(0))
    other_state, other_units = ids.clone(), ids.clone()
    other_state[:, 1] = 3
    other_units[:, 0, 2] = 10
    with torch.no_grad():
        logits = model(input_ids=ids).logits
        assert logits.shape[1] == 2 and torch.isfinite(logits[:, 1, :, :space.row_sizes[1]]).all()
        assert torch.equal(model(input_ids=other_state).logits, logits)
        assert not torch.equal(model(input_ids=other_units).logits, logits)
    with pytest.raises(ValueError, match="unread_rows"):
        cold_init(space, "tiny", 0, 0, [0], **SMALL)


@pytest.mark.parametrize("depth", [0, 1])
def test_every_trainable_parameter_gets_a_gradient(depth):
    """What DDP without find_unused_parameters needs: no trainable parameter is left out of the
    loss (the decoders' own one-row tables, unused under inputs_embeds, are frozen)."""
    vocab = SpeechVocab.for_units(12).add_family("state", 5, kind="marker")
    space = TokenSpace(vocab, ("units", "state"), get_layout("delay", 2, [0, 1]))
    model = cold_init(space, "tiny", 0, depth, **SMALL)
    ids = torch.randint(3, 9, (2, 2, 7), generator=torch.Generator().manual_seed(0))
    from speechlm.lm.loop import lm_loss

    lm_loss(model, ids, ids).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing and not model.backbone.get_input_embeddings().weight.requires_grad


def test_multistream_warm_init_keeps_the_text_lm_backbone(tmp_path):
    from speechlm.lm.init.warm import warm_init
    from speechlm.lm.model import build_model, model_config, save_speech_lm

    text_vocab = SpeechVocab.for_text(50)
    text_lm = build_model(model_config("tiny", text_vocab, **SMALL), seed=0)
    save_speech_lm(tmp_path / "text", text_lm, text_vocab, "text")
    vocab = SpeechVocab.for_units(12).add_family("duration", 5, kind="prosody")
    space = TokenSpace(vocab, ("units", "duration"), get_layout("delay", 2))
    model = warm_init(tmp_path / "text", space, seed=0)
    src = text_lm.model.state_dict()
    for key, value in model.backbone.state_dict().items():
        if "embed_tokens" not in key:
            assert torch.equal(value, src[key]), key
    for row in range(2):  # shared specials copied into every row's table; heads start equal
        assert torch.equal(model.embeddings[row].weight[:4], src["embed_tokens.weight"][:4])
        assert torch.equal(model.heads[row].weight, model.embeddings[row].weight)
