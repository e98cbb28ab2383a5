"""The README's codec table: codec at each bitrate vs unit-vocoder resynthesis vs Griffin-Lim,
plus the distillation check (codebook-1 ABX/PNMI, speaker probe), in one invocation.

    python benchmarks/codec_quality.py --corpus CORPUS --codec CODEC --distilled CODEC_DISTILLED \
        --tokenizer TOK --vocoder VOC [--limit 20] [--name codec_quality]

Both codecs are evaluated by ``speechlm.eval.codec_metrics.evaluate_codec`` on the same held-out
utterances; the unit vocoder (``TOK`` + ``VOC``) and Griffin-Lim from the same predicted mel are
the baselines of the same run. ``value`` = mel distance of the undistilled codec at the largest
k with <= 6 kbit/s, ``baseline`` = the unit vocoder's mel distance. The Must-show checks of issue 14
are computed from the numbers and stored under ``checks``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402

from speechlm.eval.codec_metrics import evaluate_codec  # noqa: E402

MAX_BITRATE = 6000.0


def checks(plain: dict, distilled: dict) -> dict:
    """Issue 14's Must-show items as booleans, with the numbers they compare."""
    ks = [k for k in map(str, plain["codebooks_evaluated"]) if plain["bitrate"][k] <= MAX_BITRATE]
    k = ks[-1]
    unit = plain.get("baselines", {}).get("unit_vocoder")  # None: run without --vocoder
    out = {"k_at_6kbps": int(k), "bitrate": plain["bitrate"][k],
           "mel_distance_beats_unit_vocoder": unit and plain["mel_distance"][k] < unit["mel_distance"],
           "speaker_similarity_beats_unit_vocoder":
               unit and plain["speaker_similarity"][k] > unit["speaker_similarity"],
           "wer_ratio_at_most_1.3": plain["wer_ratio"][k] <= 1.3,
           "quality_monotonic_in_codebooks": plain["monotonic"],
           "min_codebook_usage": min(plain["codebook_usage_per_codebook"]),
           "every_codebook_at_least_half_used": min(plain["codebook_usage_per_codebook"]) >= 0.5}
    sp, sd = plain["semantic"]["codebook1"], distilled["semantic"]["codebook1"]
    out["distilled_codebook1_better_abx_pnmi"] = (sd["abx_within"] < sp["abx_within"]
                                                  and sd["abx_across"] < sp["abx_across"]
                                                  and sd["pnmi"] > sp["pnmi"])
    probe = distilled["speaker_probe"]
    out["distilled_voice_mostly_outside_codebook1"] = probe["rest"] > probe["codebook1"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--codec", required=True, help="codec trained without distillation")
    parser.add_argument("--distilled", required=True, help="codec trained with --distill TOK")
    parser.add_argument("--tokenizer", required=True, help="unit tokenizer (also the distillation teacher)")
    parser.add_argument("--vocoder", default=None, help="unit vocoder trained on --tokenizer's units "
                        "(the baseline; without it the baseline checks are null)")
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--name", default="codec_quality")
    args = parser.parse_args()
    start = time.monotonic()
    plain = evaluate_codec(args.codec, args.corpus, limit=args.limit, tokenizer_dir=args.tokenizer,
                           vocoder_dir=args.vocoder, threads=args.threads)
    # the distilled codec is there for where its information sits: no second ASR pass
    distilled = evaluate_codec(args.distilled, args.corpus, limit=args.limit,
                               tokenizer_dir=args.tokenizer, asr=None, threads=args.threads)
    result = checks(plain, distilled)
    k = str(result["k_at_6kbps"])
    # baseline = the unit vocoder, or without one the codec's own first codebook
    baseline, name = ((plain["baselines"]["unit_vocoder"]["mel_distance"], "unit vocoder") if args.vocoder
                      else (plain["mel_distance"]["1"], "the same codec with 1 codebook"))
    path = write_result(
        args.name, {"corpus": str(Path(args.corpus).resolve()), "limit": args.limit,
                    "tokenizer": str(Path(args.tokenizer).resolve()),
                    "vocoder": str(Path(args.vocoder).resolve()) if args.vocoder else None},
        plain["mel_distance"][k], baseline,
        f"mel distance at {k} codebooks ({plain['bitrate'][k]:.0f} bit/s); baseline = {name}",
        checks=result, codec=plain, distilled=distilled, seconds=round(time.monotonic() - start, 1))
    print(f"wrote {path}")
    for key, value in result.items():
        print(f"  {key}: {value}")


if __name__ == "__main__":
    main()
