from __future__ import annotations

import json

from speechlm.cli import main

from .conftest import GSLM, overrides


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
