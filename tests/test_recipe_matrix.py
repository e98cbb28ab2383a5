"""benchmarks/recipe_matrix.py: overrides, intervals over seeds, paired contrasts, the table
(training and scoring are the pipeline's and the harness's, tested where they live)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from recipe_matrix import (MatrixConfig, interval, markdown, parse_args,  # noqa: E402
                           recipe_overrides, run_overrides, summarize)


def test_overrides_apply_to_all_recipes_or_to_the_named_one(tmp_path):
    cfg = MatrixConfig(work=tmp_path, overrides=("max_steps=50", "twist-tiny:lr=1e-3",
                                                 "gslm-tiny:seq_len=64"))
    assert recipe_overrides(cfg, "twist-tiny") == ["max_steps=50", "lr=1e-3"]
    assert recipe_overrides(cfg, "configs/recipes/gslm-tiny.yaml") == ["max_steps=50",
                                                                        "seq_len=64"]
    run = run_overrides(cfg, "gslm-tiny", 2)
    assert f"corpus_dir={tmp_path / 'corpus'}" in run and "seed=2" in run
    assert f"output_dir={tmp_path / 'runs' / 'gslm-tiny-seed2'}" in run


def test_cli_builds_the_config():
    cfg, out = parse_args(["--recipes", "gslm-tiny,twist-tiny", "--seeds", "2", "--lexical-n",
                           "50", "--corpus", "c", "--out", "r.json", "max_steps=10"])
    assert cfg.recipes == ("gslm-tiny", "twist-tiny") and cfg.seeds == (0, 1)
    assert cfg.sizes == {"lexical": 50} and cfg.corpus == Path("c") and cfg.tokenizer is None
    assert cfg.overrides == ("max_steps=10",) and out == Path("r.json")


def test_interval_is_a_student_t_interval_over_seeds():
    one = interval([0.6])
    assert one["ci95"] == [0.6, 0.6]
    three = interval([0.5, 0.6, 0.7])
    half = 4.302653 * 0.1 / 3 ** 0.5  # t(0.975, 2) * sd / sqrt(n)
    assert three["mean"] == pytest.approx(0.6)
    assert three["ci95"] == pytest.approx([0.6 - half, 0.6 + half], abs=1e-4)


def _run(acc, untrained, loss):
    bench = {"accuracy": acc, "ci95": [acc - 0.03, acc + 0.03], "n": 1000,
             "accuracy_mean": acc, "untrained": {"accuracy": untrained}}
    return {"train": {"best_valid_loss": loss, "test_loss": loss + 0.01, "tok_s": 1000},
            "eval": {"benchmarks": {"lexical": bench}}}


def test_summary_pairs_seeds_and_the_table_shows_every_row():
    cfg = MatrixConfig(recipes=("gslm-tiny", "twist-tiny"), seeds=(0, 1, 2))
    runs = {"gslm-tiny": {s: _run(0.55 + 0.01 * s, 0.50, 2.0) for s in range(3)},
            "twist-tiny": {s: _run(0.60 + 0.01 * s, 0.49, 1.9) for s in range(3)}}
    summary = summarize(cfg, runs)
    twist = summary["recipes"]["twist-tiny"]
    assert twist["benchmarks"]["lexical"]["mean"] == pytest.approx(0.61)
    assert twist["untrained"]["lexical"]["mean"] == pytest.approx(0.49)
    diff = summary["contrasts"]["twist-tiny - gslm-tiny"]
    # paired by seed: the differences are all 0.05, so the interval is a point
    assert diff["lexical"]["mean"] == pytest.approx(0.05)
    assert diff["lexical"]["ci95"] == pytest.approx([0.05, 0.05])
    assert diff["best_valid_loss"]["mean"] == pytest.approx(-0.1)
    assert summary["contrasts"]["twist-tiny - untrained"]["lexical"]["mean"] == pytest.approx(0.12)
    table = markdown({"summary": summary, "config": {"recipes": list(cfg.recipes),
                                                     "seeds": [0, 1, 2], "command": "x"}})
    for row in ("| gslm-tiny | 0.560", "| untrained (twist-tiny arch.) | 0.490",
                "| untrained (gslm-tiny arch.) | 0.500",
                "| twist-tiny - gslm-tiny | 0.050 [0.050, 0.050]"):
        assert row in table
    same = {"gslm-tiny": runs["gslm-tiny"], "twist-tiny": {s: _run(0.6, 0.50, 1.9) for s in range(3)}}
    table = markdown({"summary": summarize(cfg, same), "config": {
        "recipes": list(cfg.recipes), "seeds": [0, 1, 2], "command": "x"}})
    assert "| untrained (gslm-tiny, twist-tiny arch.) | 0.500" in table  # one row when identical


def test_crossmodal_analyses_get_intervals_contrasts_and_columns():
    cfg = MatrixConfig(recipes=("sutlm-concat-tiny", "sutlm-interleave-tiny"), seeds=(0, 1))
    runs = {}
    for name, gap, wer in (("sutlm-concat-tiny", 0.01, 0.9), ("sutlm-interleave-tiny", 0.03, 0.7)):
        runs[name] = {}
        for s in (0, 1):
            run = _run(0.5, 0.5, 2.0)
            run["eval"].update(similarity_gap=gap + 0.01 * s, asr_wer=wer)
            runs[name][s] = run
    summary = summarize(cfg, runs)
    assert summary["recipes"]["sutlm-interleave-tiny"]["similarity_gap"]["mean"] == pytest.approx(0.035)
    diff = summary["contrasts"]["sutlm-interleave-tiny - sutlm-concat-tiny"]
    assert diff["similarity_gap"]["ci95"] == pytest.approx([0.02, 0.02])
    assert diff["asr_wer"]["mean"] == pytest.approx(-0.2)
    table = markdown({"summary": summary, "config": {"recipes": list(cfg.recipes),
                                                     "seeds": [0, 1], "command": "x"}})
    assert "| recipe | lexical | similarity_gap | asr_wer | best valid loss" in table
    assert "| sutlm-interleave-tiny - sutlm-concat-tiny | 0.000 [0.000, 0.000] | 0.020 [0.020, 0.020]" \
        in table
