"""Training core: recipe runs, exact SIGKILL resume, crash-safe saves, NaN stop, clear errors."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from dataclasses import replace

import pytest
import torch
from transformers import AutoModelForCausalLM

from speechlm.core.checkpoint import latest_checkpoint, list_checkpoints
from speechlm.core.errors import CheckpointError, ConfigError, DataError, TrainingError
from speechlm.lm import checkpoints as checkpoints_mod
from speechlm.lm import loop as loop_mod
from speechlm.lm import precision as precision_mod
from speechlm.lm.model import load_speech_lm
from speechlm.lm.plots import read_metrics
from speechlm.pipeline import train_from_config

from ..conftest import tiny_lm_config
from .conftest import GSLM, REPO, TWIST, make_token_dataset, overrides, write_text


def test_gslm_recipe_trains_and_saves_hf_dir(units_dir, tmp_path):
    run = train_from_config(GSLM, overrides(units_dir, tmp_path / "run", "max_steps=8",
                                            "save_every=4", "keep_last=1", "plot=true"))
    rows = read_metrics(run)
    assert [r["step"] for r in rows] == list(range(1, 9))
    assert all("loss" in r for r in rows) and rows[-1]["loss"] < rows[0]["loss"]
    assert "valid_loss" in rows[2] and "valid_loss" in rows[-1]
    assert [p.name for p in list_checkpoints(run)] == ["checkpoint-00000008"]
    assert (run / "loss.png").is_file() and (run / "config.yaml").is_file()
    lm = load_speech_lm(run)
    assert lm.kind == "speech" and lm.vocab.family("units").size == 20 and not lm.model.training
    assert lm.encode_units([0, 19]) == [1, 4, 23] and lm.decode_units([1, 4, 23, 2]) == [0, 19]
    hf = AutoModelForCausalLM.from_pretrained(run)
    assert hf.config.vocab_size == 24


def test_cpu_bf16_trains_with_math_attention_and_restores_the_caller(units_dir, tmp_path):
    """bf16 autocast on CPU: the math attention kernel for short blocks (faster than the CPU flash
    kernel in bf16), fp32 weights saved; the model's kernel and torch threads come back after."""
    from speechlm.lm.config import TrainConfig
    from speechlm.lm.model import build_model
    from speechlm.lm.precision import resolve_attention
    from speechlm.lm.vocab import SpeechVocab

    assert resolve_attention(TrainConfig(seq_len=128), "bf16") == "eager"
    assert resolve_attention(TrainConfig(seq_len=1024), "bf16") == "sdpa"
    assert resolve_attention(TrainConfig(seq_len=128), "fp32") == "sdpa"
    assert resolve_attention(TrainConfig(attention="sdpa"), "bf16") == "sdpa"
    vocab = SpeechVocab.for_units(20)
    model = build_model(tiny_lm_config(vocab), seed=0)
    used = []
    model.register_forward_pre_hook(lambda m, _: used.append(m.config._attn_implementation))
    gen = torch.Generator().manual_seed(0)
    seqs = [torch.randint(0, 20, (1, 40), generator=gen).numpy() for _ in range(30)]
    cfg = TrainConfig(output_dir=str(tmp_path / "bf16"), max_steps=6, seq_len=32, batch_size=4,
                      warmup_steps=1, eval_every=3, precision="bf16", threads=1, tensorboard=False,
                      progress=False, plot=False)
    threads = torch.get_num_threads()
    run = _train_on(cfg, model, vocab, seqs, seqs[:4])
    rows = read_metrics(run)
    assert len(rows) == 6 and all(torch.isfinite(torch.tensor(r["loss"])) for r in rows)
    assert rows[-1]["valid_loss"] < rows[2]["valid_loss"]
    assert set(used) == {"eager"} and model.config._attn_implementation == "sdpa"
    resolved = (run / "config.yaml").read_text()
    assert "precision: bf16" in resolved and "attention: eager" in resolved
    assert torch.get_num_threads() == threads
    saved = load_speech_lm(run)
    assert saved.model.dtype == torch.float32 and saved.model.config._attn_implementation == "sdpa"
    # the next run in the same process may use another precision (accelerate's state is per run)
    _train_on(replace(cfg, output_dir=str(tmp_path / "fp32"), precision="fp32", max_steps=1), model,
              vocab, seqs, [])


def _train_on(cfg, model, vocab, train, valid):
    """The generic loop on (1, T) unit records with the pretrain builder."""
    from speechlm.lm.checkpoints import ModelSpec
    from speechlm.lm.loop import train_loop
    from speechlm.lm.modeldir import ModelMeta
    from speechlm.lm.recipes.pretrain import loop_data
    from speechlm.lm.streams import TokenSpace

    data = loop_data(cfg, TokenSpace.single(vocab), {"train": train, "valid": valid}, "test data")
    return train_loop(cfg, model, ModelSpec(vocab, ModelMeta.single("speech")), data)


def test_bf16_without_native_support_warns(monkeypatch, caplog):
    from speechlm.lm.config import TrainConfig
    from speechlm.lm.precision import resolve_precision

    monkeypatch.setattr(precision_mod, "native_bf16", lambda: False)
    assert resolve_precision(TrainConfig(name="r", precision="bf16")) == "bf16"
    assert "r: precision=bf16 but this machine has no native bf16" in caplog.text
    if not torch.cuda.is_available():
        assert resolve_precision(TrainConfig(precision="auto")) == "fp32"


def test_models_built_from_one_config_do_not_share_it():
    from speechlm.lm.model import build_model
    from speechlm.lm.vocab import SpeechVocab

    config = tiny_lm_config(SpeechVocab.for_units(20), layers=1)
    a, b = build_model(config, seed=0), build_model(config, seed=0)
    a.set_attn_implementation("eager")
    assert b.config._attn_implementation == "sdpa" and config is not a.config


def _run(args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "speechlm", "train", "--config", str(GSLM), *args],
                          cwd=REPO, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_sigkill_resume_matches_uninterrupted(units_dir, tmp_path, precision):
    steps = 10
    base = overrides(units_dir, tmp_path / "full", f"max_steps={steps}", "save_every=3",
                     f"precision={precision}")
    full = _run(base)
    assert full.returncode == 0, full.stderr
    kill_at = random.Random(f"{precision}-kill").randint(4, steps - 2)  # after the first checkpoint
    killed_args = overrides(units_dir, tmp_path / "killed", f"max_steps={steps}", "save_every=3",
                            f"precision={precision}")
    killed = _run(killed_args, env={"SPEECHLM_KILL_AT_STEP": str(kill_at)})
    assert killed.returncode == -9, f"expected SIGKILL at step {kill_at}: {killed.stderr}"
    assert max(r["step"] for r in read_metrics(tmp_path / "killed")) == kill_at
    resumed = _run([*killed_args, "--resume"])
    assert resumed.returncode == 0, resumed.stderr
    a = {r["step"]: r for r in read_metrics(tmp_path / "full")}
    b = {r["step"]: r for r in read_metrics(tmp_path / "killed")}
    assert sorted(b) == list(range(1, steps + 1))  # records after the checkpoint were replaced
    for step in range(1, steps + 1):
        assert abs(a[step]["loss"] - b[step]["loss"]) <= 1e-5, (step, kill_at)
        if "valid_loss" in a[step]:
            assert abs(a[step]["valid_loss"] - b[step]["valid_loss"]) <= 1e-5


def test_crash_during_save_keeps_previous_checkpoint(units_dir, tmp_path, monkeypatch):
    real = checkpoints_mod.write_model_dir
    calls = []

    def flaky(out_dir, *args, **kwargs):
        calls.append(out_dir)
        real(out_dir, *args, **kwargs)
        if len(calls) == 2:
            raise OSError("disk full while saving")

    monkeypatch.setattr(checkpoints_mod, "write_model_dir", flaky)
    with pytest.raises(OSError, match="disk full"):
        train_from_config(GSLM, overrides(units_dir, tmp_path / "run", "max_steps=6", "save_every=2"))
    assert [p.name for p in (tmp_path / "run").iterdir() if p.name.startswith((".tmp", "checkpoint"))] \
        == ["checkpoint-00000002"]
    assert load_speech_lm(tmp_path / "run" / "checkpoint-00000002").kind == "speech"


def test_nan_loss_stops_and_keeps_last_good(units_dir, tmp_path, monkeypatch):
    real = loop_mod.lm_loss
    seen = []

    def poisoned(model, ids, labels, weights=None):
        seen.append(1)
        loss = real(model, ids, labels, weights)
        return loss * float("nan") if len(seen) == 4 else loss

    monkeypatch.setattr(loop_mod, "lm_loss", poisoned)
    with pytest.raises(TrainingError, match=r"loss is nan .*at step 4.*checkpoint-00000002"):
        train_from_config(GSLM, overrides(units_dir, tmp_path / "run", "max_steps=6", "save_every=2",
                                          "eval_every=100"))
    assert latest_checkpoint(tmp_path / "run").name == "checkpoint-00000002"


def test_clear_errors(units_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"gslm-tiny.yaml: unknown key\(s\) stepz; valid keys: .*max_steps"):
        train_from_config(GSLM, ["stepz=3"])
    with pytest.raises(ConfigError, match=r"lr=-1.0 must be a positive"):
        train_from_config(GSLM, ["lr=-1"])
    with pytest.raises(ConfigError, match=r"batch_size='big': must be an integer"):
        train_from_config(GSLM, ["batch_size=big"])
    empty = make_token_dataset(tmp_path / "empty", utterances={"train": 0, "valid": 2})
    with pytest.raises(DataError, match=r"empty/data/train.parquet: split .train. not found"):
        train_from_config(GSLM, overrides(empty, tmp_path / "e", "max_steps=2"))
    # resume against data made by another tokenizer (vocab 30 instead of 20)
    run = train_from_config(GSLM, overrides(units_dir, tmp_path / "r", "max_steps=2"))
    other = make_token_dataset(tmp_path / "other", vocab_size=30)
    with pytest.raises(CheckpointError, match="was the tokenizer retrained"):
        train_from_config(GSLM, overrides(other, run, "max_steps=4"), resume=True)
    with pytest.raises(CheckpointError, match="not found"):
        load_speech_lm(tmp_path / "nothing")
    (run / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="cannot load model"):
        load_speech_lm(run)


def test_twist_warm_init_from_text_lm(units_dir, tmp_path):
    from speechlm.lm.textlm import train_text_lm

    text = write_text(tmp_path / "t.txt", seed=0)
    text_lm = train_text_lm(tmp_path / "textlm", text=text, steps=3, bpe_size=300, seq_len=32,
                            batch_size=4, progress=False,
                            overrides={"hidden_size": 32, "num_layers": 2, "num_heads": 2,
                                       "intermediate_size": 64, "plot": False, "threads": 1})
    tlm = load_speech_lm(text_lm)
    assert tlm.kind == "text" and tlm.encode_text("The cat")[0] == tlm.vocab.bos_id
    tiny = [o for o in overrides(units_dir, tmp_path / "warm", "max_steps=1")
            if not o.startswith(("hidden_size", "num_layers", "num_heads", "intermediate_size"))]
    run = train_from_config(TWIST, [*tiny, f"text_lm_dir={text_lm}", "lr=1e-12", "warmup_steps=0"])
    warm = load_speech_lm(run)
    assert warm.meta["init"] == "warm" and warm.model.config.vocab_size == 24
    src, dst = tlm.model.state_dict(), warm.model.state_dict()
    key = "model.layers.1.mlp.down_proj.weight"
    assert torch.allclose(src[key], dst[key], atol=1e-6)  # transformer kept (lr ~ 0)
    emb = "model.embed_tokens.weight"
    assert torch.allclose(src[emb][:4], dst[emb][:4], atol=1e-6)  # shared specials copied
    with pytest.raises(ConfigError, match="cannot be set with init=warm"):
        train_from_config(TWIST, [*tiny, f"text_lm_dir={text_lm}", "hidden_size=64"])


def test_ddp_two_processes_gloo(units_dir, tmp_path):
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "-m", "speechlm", "train", "--config", str(GSLM),
           *overrides(units_dir, tmp_path / "ddp", "max_steps=4", "save_every=4")]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, start_new_session=True)
    try:
        _, stderr = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher's worker processes too
        raise
    assert proc.returncode == 0, stderr[-3000:]
    rows = read_metrics(tmp_path / "ddp")
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert rows[0]["tokens"] == 2 * 4 * 32  # two ranks x batch 4 x seq 32
    assert load_speech_lm(tmp_path / "ddp").kind == "speech"


def test_lm_loss_matches_hf_and_compiles_without_graph_breaks():
    from speechlm.lm.loop import lm_loss
    from speechlm.lm.model import build_model
    from speechlm.lm.vocab import SpeechVocab

    vocab = SpeechVocab.for_units(20)
    model = build_model(tiny_lm_config(vocab), seed=0)
    ids = torch.randint(4, vocab.size, (3, 16), generator=torch.Generator().manual_seed(0))
    labels = ids.clone()
    labels[1, 5:] = -100
    ours, hf = lm_loss(model, ids, labels), model(input_ids=ids, labels=labels).loss
    assert torch.allclose(ours, hf, atol=1e-6)
    explained = torch._dynamo.explain(lm_loss)(model, ids, ids)
    assert explained.graph_break_count == 0 and explained.graph_count == 1


def test_best_model_is_kept_and_published(units_dir, tmp_path):
    run = train_from_config(GSLM, overrides(units_dir, tmp_path / "run", "max_steps=9", "lr=2e-2",
                                            "eval_every=3", "save_every=9"))
    rows = [r for r in read_metrics(run) if "valid_loss" in r]
    best = json.loads((run / "best.json").read_text())
    low = min(rows, key=lambda r: r["valid_loss"])
    assert best["best_step"] == low["step"] and best["best_valid_loss"] == low["valid_loss"]
    assert best["final_model"] == "best" and best["last_eval_step"] == 9
    final = (run / "model.safetensors").read_bytes()
    assert final == (run / "best" / "model.safetensors").read_bytes()
    last = train_from_config(GSLM, overrides(units_dir, tmp_path / "last", "max_steps=9", "lr=2e-2",
                                             "eval_every=3", "save_every=9", "final_model=last"))
    assert (last / "model.safetensors").read_bytes() == \
        (latest_checkpoint(last) / "model.safetensors").read_bytes()
    with pytest.raises(ConfigError, match="keep_best"):
        train_from_config(GSLM, overrides(units_dir, tmp_path / "x", "keep_best=false"))


def test_resume_skips_a_damaged_checkpoint_or_fails_in_one_line(units_dir, tmp_path):
    """A truncated model.safetensors (as a full disk or a killed copy leaves it): --resume names
    the damaged checkpoint and continues exactly from the previous one; none intact: one line."""
    args = overrides(units_dir, tmp_path / "run", "max_steps=9", "save_every=3", "keep_last=3")
    assert _run(args).returncode == 0
    before = {r["step"]: r for r in read_metrics(tmp_path / "run")}
    weights = tmp_path / "run" / "checkpoint-00000009" / "model.safetensors"
    size = weights.stat().st_size
    weights.write_bytes(weights.read_bytes()[: size // 2])
    resumed = _run([*args, "--resume"])
    assert resumed.returncode == 0, resumed.stderr
    assert (f"checkpoint-00000009 is damaged: model.safetensors has {size // 2} bytes, {size} when "
            "saved") in resumed.stderr
    assert "resuming from checkpoint-00000006" in resumed.stderr
    after = {r["step"]: r for r in read_metrics(tmp_path / "run")}
    assert sorted(after) == list(range(1, 10))
    for step in range(1, 10):
        assert abs(after[step]["loss"] - before[step]["loss"]) <= 1e-5, step
    for ckpt in list_checkpoints(tmp_path / "run"):
        (ckpt / "model.safetensors").write_bytes(b"\0" * 10)
    broken = _run([*args, "--resume"])
    assert broken.returncode == 2
    last = broken.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "no intact checkpoint to resume from" in last
    assert "checkpoint-00000009 is damaged" in last and "checkpoint-00000003 is damaged" in last
    assert "Traceback" not in broken.stderr


def test_test_split_loss_of_the_final_model_is_reported_not_used_for_selection(tmp_path, caplog):
    units = make_token_dataset(tmp_path / "units", utterances={"train": 60, "valid": 8, "test": 8})
    run = train_from_config(GSLM, overrides(units, tmp_path / "run", "max_steps=9", "lr=2e-2",
                                            "eval_every=3", "save_every=9"))
    best = json.loads((run / "best.json").read_text())
    rows = [r for r in read_metrics(run) if "valid_loss" in r]
    assert best["best_valid_loss"] == min(r["valid_loss"] for r in rows)  # selected on valid
    assert best["test_step"] == best["best_step"] and best["test_loss"] > 0
    assert best["test_loss"] not in [r["valid_loss"] for r in rows]  # another split
    # the reported figure is the published final model's loss on test
    from speechlm.lm.recipes.pretrain import dataset_space, loop_data, read_splits
    from speechlm.lm.config import TrainConfig
    from speechlm.lm.loop import lm_loss, loss_mass
    from speechlm.tokenizers.tokens import TokenDataset

    cfg = TrainConfig(seq_len=32, eval_blocks=4)
    dataset = TokenDataset(units)
    data = loop_data(cfg, dataset_space(dataset, cfg), read_splits(dataset, ["units"]), "t")
    final = load_speech_lm(run).model
    with torch.no_grad():
        total = sum(lm_loss(final, data.test.input_ids[i:i + 4], data.test.labels[i:i + 4]).item()
                    * loss_mass(data.test[i:i + 4]).item() for i in range(0, len(data.test), 4))
    assert abs(total / loss_mass(data.test).item() - best["test_loss"]) < 1e-5
    # an old dataset without a test split still trains, with a warning and no test figure
    train_from_config(GSLM, overrides(make_token_dataset(tmp_path / "old"), tmp_path / "r2", "max_steps=3"))
    assert "has no test split" in caplog.text
    assert "test_loss" not in json.loads((tmp_path / "r2" / "best.json").read_text())
