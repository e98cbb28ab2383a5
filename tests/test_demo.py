"""Demo plumbing (the full `speechlm demo` takes minutes and is measured, not unit-tested)."""

from speechlm.cli.demo import Stages, find_model_dir, untrained_copy
from speechlm.lm.model import build_model, load_speech_lm, save_speech_lm
from speechlm.lm.vocab import SpeechVocab

from .conftest import tiny_lm_config


def test_stages_reuse_and_timing(tmp_path, capsys):
    out = tmp_path / "stage"
    out.mkdir()
    (out / "old").write_text("x")
    calls = []
    stages = Stages(reuse=True)
    stages.run("a", True, lambda: calls.append("a"))
    stages.run("b", False, lambda: calls.append("b"), [out])
    assert calls == ["b"] and not out.exists()  # a fresh stage starts from an empty output
    assert set(stages.timings) == {"a", "b"} and stages.timings["a"] == 0.0
    assert "a: reusing" in capsys.readouterr().out


def test_untrained_copy_and_find_model_dir(tmp_path):
    vocab = SpeechVocab.for_units(10)
    config = tiny_lm_config(vocab)
    run = tmp_path / "run"
    save_speech_lm(run / "checkpoint-000010", build_model(config, 0), vocab, "speech", "/tok")
    found = find_model_dir(run)
    assert found == run / "checkpoint-000010"
    copy = untrained_copy(found, tmp_path / "untrained", seed=0)
    lm = load_speech_lm(copy)
    assert lm.kind == "speech" and lm.tokenizer_dir == "/tok"
    assert lm.meta["init"] == "untrained"
    assert find_model_dir(tmp_path / "nothing-here") is None
