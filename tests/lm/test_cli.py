from __future__ import annotations

import json

from speechlm.cli import main

from .conftest import GSLM, overrides, write_text


def test_train_and_generate_cli(units_dir, tmp_path, capsys):
    assert main(["train", "--config", str(GSLM), *overrides(units_dir, tmp_path / "r", "max_steps=2")]) == 0
    assert "trained" in capsys.readouterr().out
    out = tmp_path / "g.json"
    assert main(["generate", "--model", str(tmp_path / "r"), "--prompt-units", "3 4 5",
                 "--max-new-tokens", "5", "--top-k", "5", "--out", str(out)]) == 0
    sample = json.loads(out.read_text())["samples"][0]
    assert all(0 <= u < 20 for u in sample["units"])
    assert main(["generate", "--model", str(tmp_path / "r"), "--prompt-units", "3 99"]) == 2
    assert "out of range" in capsys.readouterr().err


def test_bad_key_is_one_line_error(capsys):
    assert main(["train", "--config", str(GSLM), "max_stepz=3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown key(s) max_stepz" in err and "max_steps" in err


def test_text_lm_train_cli(tmp_path, capsys):
    text = write_text(tmp_path / "t.txt", seed=0)
    out = tmp_path / "textlm"
    assert main(["text-lm", "train", "--out", str(out), "--text", str(text), "--steps", "2",
                 "--bpe-size", "300", "--seq-len", "32", "--batch-size", "4",
                 "--precision", "bf16"]) == 0
    assert f"text LM {out}: valid loss" in capsys.readouterr().out
    assert "precision: bf16" in (out / "config.yaml").read_text()
    assert main(["text-lm", "train", "--out", str(out), "--steps", "0"]) == 2
    assert "steps=0 must be >= 1" in capsys.readouterr().err


def test_text_lm_train_config_file_flags_and_overrides(tmp_path, capsys):
    """--config YAML, then flags, then key=value (the same rule as `speechlm train`)."""
    text = write_text(tmp_path / "t.txt", seed=1)
    config = tmp_path / "textlm.yaml"
    config.write_text(f"out: {tmp_path / 'from-yaml'}\ntext: {text}\nsteps: 5\nbpe_size: 300\n"
                      "seq_len: 32\nbatch_size: 4\nlr: 1.0e-3\n")
    assert main(["text-lm", "train", "--config", str(config), "--steps", "2", "seed=3"]) == 0
    resolved = (tmp_path / "from-yaml" / "config.yaml").read_text()
    assert "max_steps: 2" in resolved and "seed: 3" in resolved and "lr: 0.001" in resolved
    assert main(["text-lm", "train", "--config", str(config), "stepz=3"]) == 2
    err = capsys.readouterr().err
    assert "textlm.yaml: unknown key(s) stepz; valid keys:" in err and "bpe_size" in err
