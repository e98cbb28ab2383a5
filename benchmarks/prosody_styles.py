"""Are the synthetic speaking styles distinguishable? Measured on held-out voices.

Synthesizes a styled corpus (``--styles neutral,excited,sad,question,whisper``), then per style on
the held-out voices: mean F0, F0 range (p90/p10, semitones), the change of mean F0 against the
same voice's neutral utterances (semitones), final F0 rise (the last 80 ms of voicing against
the median), voiced fraction, spectral flatness, voiced onsets per second and words per second
(pitch statistics skip utterances less than 20% voiced, i.e. whispered ones). Then trains the style classifier
(:mod:`speechlm.eval.style`) on the training voices and scores the held-out voices against chance.

    .venv/bin/python benchmarks/prosody_styles.py [--hours 0.3] [--voices 12] [--heldout-voices 4]

Writes benchmarks/results/prosody_styles.json (value = held-out accuracy, baseline = chance, the
majority style's share) and prosody_styles.png.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, write_result  # noqa: E402

import numpy as np  # noqa: E402

from speechlm.data.corpus import Corpus  # noqa: E402
from speechlm.data.synth import synthesize_corpus  # noqa: E402
from speechlm.eval.style import train_style_classifier  # noqa: E402
from speechlm.tokenizers.prosody import extract_f0  # noqa: E402
from speechlm.tokenizers.prosody.features import FEATURE_NAMES, frame_features, pool  # noqa: E402

STYLES = ["neutral", "excited", "sad", "question", "whisper"]
MIN_VOICED = 0.2  # whispered utterances have (almost) no F0: pitch statistics skip them


def per_utterance(corpus: Corpus, split: str) -> list[dict]:
    rows = []
    for utt in corpus.utterances(split):
        samples = utt.samples()
        f0 = extract_f0(samples)
        voiced = np.log(f0[f0 > 0])
        feats = dict(zip(FEATURE_NAMES, pool(frame_features(samples, f0, 0.01))))
        rows.append({"style": utt.style, "speaker": utt.speaker,
                     "mean_logf0": float(voiced.mean()) if voiced.size else np.nan,
                     "range_st": float(12 * (np.percentile(voiced, 90) - np.percentile(voiced, 10))
                                       / np.log(2)) if voiced.size > 10 else np.nan,
                     "final_rise_st": 12 * feats["final_rise"] / np.log(2),
                     "voiced_fraction": feats["voiced_fraction"], "flatness": feats["flatness"],
                     "onsets_per_s": feats["onset_rate"],
                     "words_per_s": len(utt.text.split()) / utt.duration})
    return rows


def summarise(rows: list[dict]) -> dict:
    neutral = {}
    for r in rows:
        if r["style"] == "neutral" and r["voiced_fraction"] >= MIN_VOICED:
            neutral.setdefault(r["speaker"], []).append(r["mean_logf0"])
    out = {}
    for style in STYLES:
        group = [r for r in rows if r["style"] == style]
        if not group:
            continue
        summary = {"utterances": len(group)}
        for key in ("voiced_fraction", "flatness", "onsets_per_s", "words_per_s"):
            summary[key] = float(np.mean([r[key] for r in group]))
        for key in ("range_st", "final_rise_st"):
            values = [r[key] for r in group if r["voiced_fraction"] >= MIN_VOICED]
            summary[key] = float(np.nanmean(values)) if values else None
        pitched = [r for r in group if r["voiced_fraction"] >= MIN_VOICED]
        summary["mean_f0_hz"] = (float(np.exp(np.mean([r["mean_logf0"] for r in pitched])))
                                 if pitched else None)
        shifts = [12 * (r["mean_logf0"] - np.mean(neutral[r["speaker"]])) / np.log(2)
                  for r in pitched if r["speaker"] in neutral]
        summary["f0_shift_vs_neutral_st"] = float(np.mean(shifts)) if shifts else None
        out[style] = summary
    return out


def plot(stats: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [("f0_shift_vs_neutral_st", "mean F0 vs neutral (st)"), ("range_st", "F0 range (st)"),
            ("final_rise_st", "final rise (st)"), ("words_per_s", "words / s"),
            ("voiced_fraction", "voiced fraction")]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3))
    names = list(stats)
    for ax, (key, title) in zip(axes, keys):
        ax.bar(names, [stats[s][key] or 0.0 for s in names], color="tab:blue")
        ax.set_title(title, fontsize=9)
        ax.tick_params(axis="x", labelrotation=60, labelsize=8)
    fig.suptitle("speaking styles on held-out voices")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hours", type=float, default=0.3)
    parser.add_argument("--voices", type=int, default=12)
    parser.add_argument("--heldout-voices", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        corpus_dir = Path(tmp) / "styled"
        synthesize_corpus(corpus_dir, hours=args.hours, voices=args.voices,
                          heldout_voices=args.heldout_voices, seed=args.seed, styles=STYLES,
                          show_progress=False)
        corpus = Corpus(corpus_dir)
        stats = summarise(per_utterance(corpus, "heldout"))
        for style, row in stats.items():
            print(style, {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()})
        report = train_style_classifier(corpus_dir, Path(tmp) / "clf", show_progress=False)
    heldout = report["splits"]["heldout"]
    print(f"classifier: held-out accuracy {heldout['accuracy']:.3f} (chance {heldout['chance']:.3f})")
    plot(stats, RESULTS / "prosody_styles.png")
    path = write_result("prosody_styles", vars(args) | {"styles": STYLES}, heldout["accuracy"],
                        heldout["chance"], "style classifier accuracy on held-out voices; "
                        "baseline = chance (majority style share)", per_style_heldout=stats,
                        classifier={k: v for k, v in report.items() if k != "corpus"},
                        seconds=round(time.monotonic() - start, 1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
