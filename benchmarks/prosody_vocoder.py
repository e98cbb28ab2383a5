"""Resynthesis with the F0-aware vocoder vs the units-only vocoder (same tokenizer, corpus, steps).

Held-out voices: audio -> units + durations (+ the input's log-F0 per unit frame for the
F0-aware one) -> audio, both spoken with the input clip's d-vector. Reported: F0 RMSE in cents
between the input and the resynthesis on frames voiced in both (median over utterances), the
voicing agreement, and Whisper WER of both and of the original audio (ratio F0-aware / units-only;
target <= 1). Value = F0-aware RMSE, baseline = units-only RMSE, in one run.

    python benchmarks/prosody_vocoder.py --work work/pb --limit 30
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from common import write_result


def rmse_cents(a: np.ndarray, b: np.ndarray) -> tuple[float | None, float]:
    """RMSE in cents on frames voiced in both, and the share of frames with the same voicing."""
    n = min(a.size, b.size)
    a, b = a[:n], b[:n]
    both = (a > 0) & (b > 0)
    agree = float(np.mean((a > 0) == (b > 0))) if n else 0.0
    if not both.any():
        return None, agree
    return float(np.sqrt(np.mean((1200 * np.log2(a[both] / b[both])) ** 2))), agree


def main() -> None:
    from speechlm.data.corpus import Corpus
    from speechlm.eval.asr import transcribe_all, wer
    from speechlm.tokenizers import load_tokenizer
    from speechlm.tokenizers.prosody.f0 import F0Config, extract_f0, unit_f0
    from speechlm.tokenizers.prosody.vocoder_stream import LOGF0, LogF0Stream
    from speechlm.vocoder import load_vocoder

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("work/prosody-lm"))
    parser.add_argument("--limit", type=int, default=30)
    parser.add_argument("--split", default="heldout")
    parser.add_argument("--name", default="prosody_vocoder")
    args = parser.parse_args()
    start = time.perf_counter()
    tok = load_tokenizer(args.work / "tok")
    vocoders = {"units_only": load_vocoder(args.work / "voc-units"),
                "f0_aware": load_vocoder(args.work / "voc-f0")}
    f0_config, stream = F0Config(), LogF0Stream()

    def frame_f0(audio: np.ndarray) -> np.ndarray:
        return unit_f0(extract_f0(audio, f0_config), f0_config.hop_s,
                       np.ones(audio.size // 320, np.int64), tok.frame_rate)

    rows = {name: {"rmse": [], "agree": [], "audio": []} for name in vocoders}
    originals, texts = [], []
    for utt in list(Corpus(args.work / "corpus").utterances(args.split))[: args.limit]:
        samples = utt.samples()
        units, durations = tok.encode(samples)
        reference = frame_f0(samples)
        for name, voc in vocoders.items():
            extra = {LOGF0: stream(samples, int(durations.sum()), tok.frame_rate)} \
                if LOGF0 in voc.streams else None
            audio = voc.synthesize(units, durations, speaker=samples, streams=extra)
            rmse, agree = rmse_cents(frame_f0(audio), reference)
            if rmse is not None:
                rows[name]["rmse"].append(rmse)
            rows[name]["agree"].append(agree)
            rows[name]["audio"].append(audio)
        originals.append(samples)
        texts.append(utt.text)
    wers = {"original": wer(texts, transcribe_all(originals))}
    for name in vocoders:
        wers[name] = wer(texts, transcribe_all(rows[name]["audio"]))
    summary = {name: {"f0_rmse_cents_median": float(np.median(r["rmse"])),
                      "f0_rmse_cents_mean": float(np.mean(r["rmse"])),
                      "voicing_agreement": float(np.mean(r["agree"])), "wer": wers[name],
                      "utterances_with_voiced_overlap": len(r["rmse"])}
               for name, r in rows.items()}
    ratio = wers["f0_aware"] / wers["units_only"] if wers["units_only"] else None
    config = {"limit": args.limit, "split": args.split, "work": str(args.work),
              "vocoders": {n: v.config.to_dict() for n, v in vocoders.items()},
              "steps": {n: v.info.get("training", {}).get("steps") for n, v in vocoders.items()}}
    path = write_result(args.name, config, summary["f0_aware"]["f0_rmse_cents_median"],
                        summary["units_only"]["f0_rmse_cents_median"],
                        "median F0 RMSE (cents) of resynthesis vs input, F0-aware (value) vs "
                        "units-only vocoder (baseline); Whisper WER in summary",
                        summary=summary, wer_original=wers["original"], wer_ratio=ratio,
                        seconds=round(time.perf_counter() - start, 1))
    print(f"wrote {path}: " + ", ".join(f"{n} {s['f0_rmse_cents_median']:.0f} cents WER "
                                        f"{s['wer']:.3f}" for n, s in summary.items()))


if __name__ == "__main__":
    main()
