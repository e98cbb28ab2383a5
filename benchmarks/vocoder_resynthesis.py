"""Resynthesis intelligibility of unit vocoders, with their baselines, in one run.

For each system (a tokenizer and a vocoder trained on its units) this runs ``speechlm vocoder
eval`` on the same held-out utterances: ASR WER of the original audio (the baseline every ratio
divides by), of the neural vocoder's resynthesis and of the Griffin-Lim baseline on the same
predicted mel, plus MCD and log-mel distance. Vocoder directories that do not exist yet are
trained first with ``--train-config`` (the demo's budget by default), so one invocation goes from
tokenizers to the table.

    .venv/bin/python benchmarks/vocoder_resynthesis.py --corpus C \
        --system ssl-tiny:TOK_SSL:VOC_SSL --system whisper:TOK_W:VOC_W [--limit 30] \
        [--asr whisper,pocketsphinx] [--train-config configs/vocoder/demo.yaml] [--name NAME]

Writes benchmarks/results/<name>.json (default vocoder_resynthesis.json): one entry per system
and a ``table`` of the figures the README shows.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--system", action="append", required=True, metavar="NAME:TOKENIZER:VOCODER")
    parser.add_argument("--limit", type=int, default=30)
    parser.add_argument("--split", default="heldout")
    parser.add_argument("--asr", default="whisper,pocketsphinx")
    parser.add_argument("--speaker", default="source")
    parser.add_argument("--train-config", default=str(ROOT / "configs" / "vocoder" / "demo.yaml"))
    parser.add_argument("--train-threads", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="evaluation threads")
    parser.add_argument("--name", default="vocoder_resynthesis")
    args = parser.parse_args()

    from speechlm.core.config import build_config, read_yaml_mapping
    from speechlm.eval.resynthesis import resynthesis_report
    from speechlm.vocoder import VocoderTrainConfig, train_vocoder

    systems = []
    for spec in args.system:
        name, tok, voc = spec.split(":", 2)
        if not (Path(voc) / "config.json").is_file():
            values = {**read_yaml_mapping(args.train_config), "corpus": args.corpus,
                      "tokenizer": tok, "out": voc, "threads": args.train_threads}
            train_vocoder(build_config(VocoderTrainConfig, values, args.train_config))
        report = resynthesis_report(tok, voc, args.corpus, split=args.split, limit=args.limit,
                                    asr=args.asr, speaker=args.speaker, threads=args.threads,
                                    out_dir=Path(voc) / "eval")
        systems.append({"system": name, **report})
        print(f"{name}: WER original {report['wer_original']:.3f}; " + ", ".join(
            f"{k[len('wer_resynth'):].lstrip('_') or 'neural'} {v:.3f}" for k, v in report.items()
            if k.startswith("wer_resynth")) + f"; ratio {report['wer_ratio']:.2f}", flush=True)

    table = []
    for s in systems:
        t = s["vocoder_training"]
        for judge, entry in s["by_asr"].items():
            table.append({"system": s["system"], "asr": judge,
                          **{k: v for k, v in entry.items() if k.startswith("wer_")},
                          **{k: v for k, v in s.items() if k.startswith(("mcd_db", "mel_l1"))},
                          "vocoder_steps": t.get("steps"), "vocoder_train_seconds": t.get("seconds")})
    first = systems[0]
    path = write_result(args.name, {"corpus": str(Path(args.corpus).resolve()), "split": args.split,
                                    "limit": args.limit, "asr": args.asr, "speaker": args.speaker,
                                    "train_config": args.train_config},
                        first["wer_ratio"], first["wer_ratio_griffin_lim"],
                        "WER ratio resynth / original (first system, first ASR); baseline = "
                        "Griffin-Lim on the same predicted mel", table=table, systems=systems)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
