"""benchmarks/prosody_lm.py: the issue's claims as paired per-seed differences against the
unit-only GSLM (training and the prosody suite are tested where they live)."""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import pytest  # noqa: E402
from prosody_lm import bootstrap_contrasts, markdown, paired_contrasts  # noqa: E402


def _entry(value: float, reference: float | None = None) -> dict:
    return {"value": value, "reference": reference}


def _seeds(mae: list[float], corr: list[float], std: list[float], style: list[float]) -> dict:
    return {str(s): {"logf0_min_mae": _entry(mae[s]), "f0_prompt_corr": _entry(corr[s]),
                     "f0_std": _entry(std[s], reference=0.20),
                     "style_preservation": _entry(style[s])} for s in range(3)}


def test_claims_are_paired_by_seed_and_judged_by_direction():
    per_seed = {
        "gslm": _seeds([0.30, 0.32, 0.31], [0.10, 0.12, 0.11], [0.30, 0.30, 0.30],
                       [0.40, 0.42, 0.41]),
        "pgslm": _seeds([0.20, 0.22, 0.21], [0.10, 0.13, 0.10], [0.21, 0.19, 0.22],
                        [0.0, 0.0, 0.0]),
        "spiritlm": _seeds([0.3] * 3, [0.1] * 3, [0.3] * 3, [0.41, 0.40, 0.43]),
    }
    by = {(c["recipe"], c["metric"]): c for c in paired_contrasts(per_seed)}
    mae = by["pgslm-tiny", "logf0_min_mae"]
    assert mae["values"] == [-0.1, -0.1, -0.1] and mae["better"] == "lower" and mae["holds"]
    assert not by["pgslm-tiny", "f0_prompt_corr"]["holds"]  # differences 0, +0.01, -0.01
    spread = by["pgslm-tiny", "f0_std distance to real"]  # distance to the real spread: 0.01..0.02 vs 0.1
    assert spread["mean"] < 0 and spread["holds"]
    assert not by["spiritlm-expressive-tiny", "style_preservation"]["holds"]  # +0.01, -0.02, +0.02
    table = markdown({r: {m: {"mean": 0.5, "per_seed": [0.5]} for m in
                          ("logf0_min_mae", "f0_std", "f0_prompt_corr", "style_preservation")}
                      for r in per_seed}, list(by.values()),
                     {"seeds": [0, 1, 2], "steps": 200, "overrides": "o", "prompts": 4,
                      "samples": 2})
    assert "| pgslm-tiny | logf0_min_mae (lower) | -0.100 [-0.100, -0.100] | yes |" in table


def test_a_seed_without_a_value_is_left_out_of_the_pairing():
    per_seed = {r: _seeds([0.3, 0.2, 0.1], [0.1] * 3, [0.2] * 3, [0.4] * 3)
                for r in ("gslm", "pgslm", "spiritlm")}
    per_seed["pgslm"]["1"]["logf0_min_mae"]["value"] = None
    mae = next(c for c in paired_contrasts(per_seed) if c["metric"] == "logf0_min_mae")
    assert mae["seeds"] == ["0", "2"] and mae["values"] == [0.0, 0.0]


def _rows(mae: float, shift: float, hit_every: int, n: int = 30) -> list[dict]:
    """n prompts; continuation log-F0 = prompt log-F0 + shift * noise; every hit_every-th style
    judged right."""
    rng = np.random.default_rng(0)
    base = np.linspace(4.5, 5.5, n)
    return [{"id": f"p{i}", "style": "sad", "predicted_style": "sad" if i % hit_every == 0 else "x",
             "real_style": "sad", "logf0_min_mae": mae + 0.01 * (i % 3),
             "prompt_logf0": float(base[i]),
             "continuation_logf0": float(base[i] + shift * rng.normal()),
             "real_logf0": float(base[i])} for i in range(n)]


def test_bootstrap_pairs_prompts_and_resamples_seeds():
    rows = {"gslm": {s: _rows(0.40, 0.5, 4) for s in "012"},
            "pgslm": {s: _rows(0.20, 0.05, 4) for s in "012"},
            "spiritlm": {s: _rows(0.40, 0.5, 4) for s in "012"}}
    by = {(c["recipe"], c["metric"]): c for c in bootstrap_contrasts(rows, n=300)}
    mae = by["pgslm-tiny", "logf0_min_mae"]
    assert mae["mean"] == pytest.approx(-0.2) and mae["holds"] and mae["prompts"] == 30
    assert mae["ci95"][0] == pytest.approx(-0.2) and mae["ci95"][1] == pytest.approx(-0.2)
    corr = by["pgslm-tiny", "f0_prompt_corr"]  # tight continuation vs a noisy one
    assert corr["mean"] > 0.3 and corr["holds"] and corr["ci95"][0] < corr["mean"]
    style = by["spiritlm-expressive-tiny", "style_preservation"]  # identical rows: no difference
    assert style["mean"] == 0 and not style["holds"]
    assert ("pgslm-tiny", "f0_std") not in by  # not kept per prompt
    rows["spiritlm"]["1"] = rows["spiritlm"]["1"][:-1]
    with pytest.raises(SystemExit, match="same prompts"):
        bootstrap_contrasts(rows, n=10)
