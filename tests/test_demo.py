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


def test_demo_reads_corpus_and_tokenizer_from_the_recipes(tmp_path):
    import pytest

    from speechlm.cli.demo import RECIPES, _config_dir, _shared_keys
    from speechlm.core.errors import SpeechLMError

    shared = _shared_keys(_config_dir("recipes", list(RECIPES.values()), None))
    assert shared["tokenizer_units"] > 0 and shared["corpus_hours"] > 0
    for name in RECIPES.values():  # recipes that disagree on the tokenizer are an error
        units = 100 if name.startswith("gslm") else 200
        (tmp_path / name).write_text(f"name: x\ntokenizer_units: {units}\n")
    with pytest.raises(SpeechLMError, match="tokenizer_units differs"):
        _shared_keys(tmp_path)
    with pytest.raises(SpeechLMError, match="not found"):
        _config_dir("vocoder", ["missing.yaml"], str(tmp_path))


def test_versus_reference_reads_interval_overlap():
    from speechlm.eval.report import versus_reference

    def entry(acc, lo, hi):
        return {"accuracy": acc, "ci95": [lo, hi], "n": 100}

    models = {"untrained": {"lexical": entry(0.50, 0.47, 0.53), "syntactic": entry(0.5, 0.45, 0.55)},
              "twist": {"lexical": entry(0.60, 0.57, 0.63), "syntactic": entry(0.52, 0.48, 0.56)},
              "worse": {"lexical": entry(0.40, 0.37, 0.43)}}
    out = versus_reference(models, "untrained")
    assert set(out) == {"twist", "worse"}
    assert out["twist"]["lexical"] == {"diff": 0.1, "separated": True}
    assert out["twist"]["syntactic"] == {"diff": 0.02, "separated": False}
    assert out["worse"]["lexical"]["separated"] and out["worse"]["lexical"]["diff"] < 0


def test_demo_report_lists_artifacts_and_the_reference_reading(tmp_path):
    import json

    from speechlm.eval.report import versus_reference, write_demo_report

    def entry(acc):
        return {"accuracy": acc, "ci95": [acc - 0.03, acc + 0.03], "n": 1000,
                "accuracy_mean": acc}

    models = {"untrained": {"results": {"lexical": entry(0.5)}},
              "twist-tiny": {"results": {"lexical": entry(0.6)}}}
    artifacts = {"corpus": "/w/corpus", "tokenizer": "/w/tok", "vocoder": "/w/voc"}
    report = {"models": models, "artifacts": artifacts,
              "versus_untrained": versus_reference(
                  {n: m["results"] for n, m in models.items()}, "untrained")}
    page = write_demo_report(report, tmp_path)
    text = page.read_text()
    assert "/w/voc" in text and "Against the untrained reference" in text and "+0.100" in text
    assert json.loads((tmp_path / "report.json").read_text())["artifacts"] == artifacts
    assert "twist-tiny vs untrained: lexical +0.100 (intervals separate)" in (
        tmp_path / "report.md").read_text()


def test_parallel_stages_follow_dependencies_and_report_failures(tmp_path, capsys):
    import pytest

    from speechlm.cli.demo import Job
    from speechlm.core.errors import SpeechLMError

    stages = Stages(reuse=True, record=tmp_path / "timings.json")
    jobs = [Job("first", ["--version"], False), Job("second", ["--version"], False, ("first",)),
            Job("built", ["--version"], True), Job("other", ["--version"], False)]
    stages.run_parallel(jobs, 2, tmp_path / "logs")
    out = capsys.readouterr().out
    assert out.index("[demo] first:") < out.index("[demo] second ...")  # waited for its input
    assert "built: reusing" in out and set(stages.timings) == {"first", "second", "built", "other"}
    assert (tmp_path / "logs" / "second.log").read_text().startswith("speechlm")
    bad = [Job("bad", ["no-such-command"], False), Job("after", ["--version"], False, ("bad",))]
    with pytest.raises(SpeechLMError, match=r"(?s)no-such-command` failed with status 2.*invalid"):
        stages.run_parallel(bad, 2, tmp_path / "logs")
    assert "after" not in stages.timings
