"""Tokenizer comparison in one run: mfcc, ssl-tiny, whisper, whisper+logmel (and hf:PATH) at K = 100 and 500.

Per feature extractor the encoder is built once (ssl-tiny: trained with the default
TokenizerTrainConfig, i.e. the demo's settings) and k-means is fitted at each K on the train split.
Per (features, K), on the corpus' held-out voices:

* ABX within / across speaker (units), PNMI and bitrate: ``evaluate_tokenizer``, the code behind
  ``speechlm tokenizer eval --json`` (seeded triplets, the same for every row);
* frame alignment: PNMI with the units shifted by -2..2 frames against the phone alignments
  (the peak must be at 0);
* tokenization RTF: wall seconds per audio second of ``tok.encode`` over the held-out clips,
  1 thread, and its ratio to mfcc measured in the same run;
* resynthesis: the unit vocoder trained with configs/vocoder/demo.yaml for ``--vocoder-steps``
  fixed steps on the tokenizer's units (each held-out clip resynthesised in its own voice), then Whisper tiny.en WER of the resynthesised held-out utterances divided by
  the WER of the originals (the same utterances). For whisper units the judge shares its model
  with the tokenizer, so the pocketsphinx ratio is reported beside it.

The baseline is mfcc at the same K. Writes benchmarks/results/tokenizer_compare.json and
tokenizer_compare.md (the table the README shows).

    .venv/bin/python benchmarks/tokenizer_compare.py CORPUS [--hf PATH] [--units 100 500]
        [--vocoder-steps 600] [--resynth 30] [--triplets 2000]

CORPUS defaults to a fresh `speechlm corpus synth --hours 0.5 --voices 12 --seed 0` (the demo's).
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
import torch  # noqa: E402

from speechlm.core.config import build_config, parse_overrides, read_yaml_mapping  # noqa: E402
from speechlm.data.corpus import Corpus  # noqa: E402
from speechlm.eval.asr import transcribe_all, wer  # noqa: E402
from speechlm.eval.tokenizer_metrics import evaluate_tokenizer, phone_frames, pnmi  # noqa: E402
from speechlm.tokenizers import load_tokenizer  # noqa: E402
from speechlm.tokenizers.semantic.extractors import make_extractor  # noqa: E402
from speechlm.tokenizers.semantic.kmeans import KMeansQuantizer  # noqa: E402
from speechlm.tokenizers.semantic.tokenizer import (TokenizerTrainConfig, UnitTokenizer,  # noqa: E402
                                                    fit_tokenizer)
from speechlm.vocoder import VocoderTrainConfig, resynthesize, train_vocoder  # noqa: E402

DEMO_SSL = {"ssl_steps": 540}  # what `speechlm demo` trained for ssl-tiny (cli/demo.py)
DEMO_VOCODER = Path(__file__).resolve().parents[1] / "configs" / "vocoder" / "demo.yaml"
METRICS = ("abx_within", "abx_across", "pnmi", "bitrate", "tokens_per_second")


def build_extractor(features: str, corpus: Path, work: Path, ssl: dict):
    """The encoder of ``features`` and the seconds it took to build (ssl-tiny trains here)."""
    start = time.perf_counter()
    if features == "ssl-tiny":
        cfg = build_config(TokenizerTrainConfig, {"corpus": str(corpus), "out": str(work / "unused"),
                                                  "features": "ssl-tiny", **ssl}, "tokenizer_compare")
        extractor = fit_tokenizer(cfg, show_progress=False).extractor
    else:
        extractor = make_extractor(features)
    return extractor, time.perf_counter() - start


def pnmi_by_shift(tok_dir: Path, utts: list, shifts=(-2, -1, 0, 1, 2)) -> dict[int, float]:
    """PNMI with units moved by ``shift`` frames against the phone alignments: the frame grid is
    right when the peak is at 0."""
    tok = load_tokenizer(tok_dir)
    pairs = {s: ([], []) for s in shifts}
    for utt in utts:
        units, _ = tok.encode(utt.samples(), dedup=False)
        labels = phone_frames(utt.phones, units.size, tok.frame_rate)
        for shift, (phones, unit_list) in pairs.items():
            for i, label in enumerate(labels):
                if label is not None and 0 <= i + shift < units.size:
                    phones.append(label)
                    unit_list.append(units[i + shift])
    ids = {p: i for i, p in enumerate(sorted(set(pairs[0][0])))}
    return {s: pnmi(np.array([ids[p] for p in phones]), np.array(units))
            for s, (phones, units) in pairs.items()}


def encode_rtf(tok_dir: Path, clips: list[np.ndarray]) -> float:
    tok = load_tokenizer(tok_dir)
    tok.encode(clips[0])  # warm up
    start = time.perf_counter()
    for x in clips:
        tok.encode(x)
    return (time.perf_counter() - start) / (sum(x.size for x in clips) / 16000)


def resynthesis(tok_dir: Path, corpus: Path, work: Path, steps: int, refs: list[str],
                clips: list[np.ndarray], originals: dict[str, list[str]]) -> dict:
    values = {**read_yaml_mapping(DEMO_VOCODER), "corpus": str(corpus), "tokenizer": str(tok_dir),
              "out": str(work / "vocoder"), "steps": steps, "progress": False, "tensorboard": False}
    voc = train_vocoder(build_config(VocoderTrainConfig, values, str(DEMO_VOCODER)))
    tok = load_tokenizer(tok_dir)
    wavs = [resynthesize(tok, voc, x, speaker=x) for x in clips]  # each clip in its own voice
    out = {}
    for asr, hyps in originals.items():
        resynth = transcribe_all(wavs, asr=asr)
        out[asr] = {"wer_original": wer(refs, hyps), "wer_resynth": wer(refs, resynth),
                    "wer_ratio": wer(refs, resynth) / max(wer(refs, hyps), 1e-9),
                    "example": {"ref": refs[0], "original": hyps[0], "resynth": resynth[0]}}
    return out


def markdown(rows: list[dict]) -> str:
    lines = ["| features | K | ABX within ↓ | ABX across ↓ | PNMI ↑ | bitrate (bit/s) | "
             "tokenize RTF (× mfcc) | resynth WER ratio, Whisper ↓ | build s (× mfcc) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = f"{r['resynthesis']['whisper']['wer_ratio']:.2f}" if r["resynthesis"] else "–"
        if "pocketsphinx" in r["resynthesis"]:
            ratio += f" (pocketsphinx {r['resynthesis']['pocketsphinx']['wer_ratio']:.2f})"
        lines.append(f"| `{r['features']}` | {r['units']} | {100 * r['abx_within']:.1f} % | "
                     f"{100 * r['abx_across']:.1f} % | {r['pnmi']:.3f} | {r['bitrate']:.0f} | "
                     f"{r['rtf']:.4f} ({r['rtf_vs_mfcc']:.1f}×) | {ratio} | "
                     f"{r['build_seconds']:.0f} ({r['build_vs_mfcc']:.0f}×) |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", nargs="?", default=None)
    parser.add_argument("--features", nargs="+",
                        default=["mfcc", "logmel", "ssl-tiny", "whisper", "whisper+logmel"],
                        help="extractors to compare (mfcc is the baseline and always included)")
    parser.add_argument("--hf", default=None, help="a local HF HuBERT/wav2vec2 directory to add")
    parser.add_argument("--units", type=int, nargs="+", default=[100, 500])
    parser.add_argument("--vocoder-steps", type=int, default=600)
    parser.add_argument("--resynth", type=int, default=30,
                        help="held-out utterances resynthesised (0: no vocoders, no resynthesis)")
    parser.add_argument("--triplets", type=int, default=2000)
    parser.add_argument("--split", default="heldout", help="evaluation split (default heldout)")
    parser.add_argument("--ssl", nargs="*", default=[], metavar="KEY=VALUE",
                        help="TokenizerTrainConfig keys for ssl-tiny (default: the demo's)")
    parser.add_argument("--name", default="tokenizer_compare")
    parser.add_argument("--demo", default="whisper+logmel",
                        help="the row the JSON headlines (the demo's tokenizer)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    ssl = {**DEMO_SSL, **parse_overrides(args.ssl)}
    features = list(dict.fromkeys(["mfcc", *args.features] + ([f"hf:{args.hf}"] if args.hf else [])))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        corpus = Path(args.corpus) if args.corpus else work / "corpus"
        if args.corpus is None:
            from speechlm.data.synth import synthesize_corpus
            synthesize_corpus(corpus, hours=0.5, voices=12, seed=0, show_progress=False)
        heldout = list(Corpus(corpus).utterances(args.split))
        held_clips = [u.samples() for u in heldout]
        refs = [u.text for u in heldout[: args.resynth]]
        originals = {asr: transcribe_all(held_clips[: args.resynth], asr=asr)
                     for asr in ("whisper", "pocketsphinx") if args.resynth}
        train = [u.samples() for u in Corpus(corpus).utterances("train")]
        rows = []
        for name in features:
            extractor, build_s = build_extractor(name, corpus, work / name, ssl)
            t = time.perf_counter()
            feats = np.concatenate([extractor(x) for x in train])
            build_s += time.perf_counter() - t
            for k in args.units:
                t = time.perf_counter()
                quantizer = KMeansQuantizer.fit(feats, k, seed=0, weights=extractor.dim_weights())
                tok_dir = UnitTokenizer(extractor, quantizer).save(work / f"{name.replace(':', '_')}-{k}")
                metrics = evaluate_tokenizer(tok_dir, corpus, split=args.split,
                                             n_triplets=args.triplets, show_progress=False)
                judges = {a: h for a, h in originals.items()
                          if a == "whisper" or name.startswith("whisper")}
                row = {"features": name, "units": k, **{m: metrics[m] for m in METRICS},
                       "abx_within_features": metrics["abx_within_features"],
                       "abx_across_features": metrics["abx_across_features"],
                       "build_seconds": build_s + time.perf_counter() - t,
                       "rtf": encode_rtf(tok_dir, held_clips),
                       "pnmi_by_shift": pnmi_by_shift(tok_dir, heldout),
                       "resynthesis": resynthesis(tok_dir, corpus, work / f"voc-{name}-{k}",
                                                  args.vocoder_steps, refs,
                                                  held_clips[: args.resynth], judges)
                       if args.resynth else {}}
                rows.append(row)
                print(f"{name:10s} K={k:4d} ABX {100 * row['abx_within']:.1f}/"
                      f"{100 * row['abx_across']:.1f} % PNMI {row['pnmi']:.3f} RTF {row['rtf']:.4f}",
                      flush=True)
        corpus_info = {"path": str(corpus), "split": args.split, "heldout_utterances": len(heldout),
                       "heldout_seconds": round(sum(x.size for x in held_clips) / 16000, 1),
                       "train_utterances": len(train)}
    for r in rows:
        base = next(b for b in rows if b["features"] == "mfcc" and b["units"] == r["units"])
        r["rtf_vs_mfcc"] = r["rtf"] / base["rtf"]
        r["build_vs_mfcc"] = r["build_seconds"] / base["build_seconds"]
        r["beats_mfcc"] = {m: (r[m] < base[m]) if m.startswith("abx") else (r[m] > base[m])
                           for m in ("abx_within", "abx_across", "pnmi")}
    table = markdown(rows)
    (RESULTS / f"{args.name}.md").write_text(table)
    head = next((r for r in rows if r["features"] == args.demo and r["units"] == args.units[0]),
                rows[-1])
    base = next(r for r in rows if r["features"] == "mfcc" and r["units"] == args.units[0])
    path = write_result(
        args.name, {"units": args.units, "vocoder_steps": args.vocoder_steps,
                    "resynth_utterances": args.resynth, "triplets": args.triplets,
                    "threads": 1, "headline": head, "corpus": corpus_info},
        head["abx_within"], base["abx_within"],
        f"ABX within (units) of {head['features']} at K={args.units[0]}; baseline = mfcc",
        rows=rows, seconds=round(time.perf_counter() - start, 1))
    print(table)
    print(f"wrote {path} and {RESULTS / (args.name + '.md')}")


if __name__ == "__main__":
    main()
