"""Unit edit rate of streaming (chunked) tokenization against offline tokenization of whole clips.

The Session hears audio in chunks: :class:`speechlm.generation.streaming.StreamingTokenizer`
fixes each frame's unit once ``lookahead`` frames after it have arrived, computing it over a
window with ``context`` frames before it. The ``ssl-tiny`` encoder is bidirectional, so its units
depend on the right context it is denied; ``mfcc`` looks only +-3 frames ahead. For each
tokenizer, left context (the Session's 50 frames, and the whole past) and look-ahead this script
pushes the held-out utterances in 20 ms chunks and compares the deduplicated unit sequences
with offline ``tokenizer.encode(whole clip)`` (the baseline, edit rate 0 by definition, in the
same run): unit edit rate = Levenshtein distance / offline length, summed over utterances; also
the share of frames whose unit differs, the added latency (look-ahead) and the encode time
relative to offline.

    .venv/bin/python benchmarks/streaming_units.py --work work/streaming
    .venv/bin/python benchmarks/streaming_units.py --corpus demo-work/corpus --tokenizer demo-work/tok

Builds what is missing in --work (a 0.1 h corpus, an ssl-tiny tokenizer trained 400 steps, an
mfcc tokenizer; both K = 100). Writes benchmarks/results/streaming_units.json
(value = ssl-tiny unit edit rate at the Session's default look-ahead and context).
"""

from __future__ import annotations

import argparse
import inspect
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402

LOOKAHEADS = (0, 2, 4, 8, 16, 32)
CONTEXTS = (50, 10**6)  # left context frames: the Session's default (1 s), and the whole past
CHUNK = 320  # 20 ms pushes


def build(work: Path, corpus: Path | None, tokenizers: list[str] | None) -> tuple[Path, dict[str, Path]]:
    from speechlm.data.synth import synthesize_corpus
    from speechlm.tokenizers import train_tokenizer

    corpus = corpus or work / "corpus"
    if not (corpus / "meta.json").is_file():
        synthesize_corpus(corpus, hours=0.1, voices=6, heldout_voices=2, seed=0, show_progress=False)
    if tokenizers:
        return corpus, {Path(t).name: Path(t) for t in tokenizers}
    toks = {}
    for features in ("ssl-tiny", "mfcc"):
        out = work / features
        if not (out / "config.json").is_file():
            train_tokenizer(corpus, out, features=features, units=100, seed=0, ssl_steps=400,
                            ssl_minutes=0, show_progress=False)
        toks[features] = out
    return corpus, toks


def measure(tok, clips: list, lookahead: int, context: int) -> dict:
    from rapidfuzz.distance import Levenshtein

    from speechlm.tokenizers.streaming import StreamingTokenizer

    edits = units = frames = frame_diff = 0
    stream_s = offline_s = 0.0
    for samples in clips:
        t = time.perf_counter()
        frame_units, _ = tok.encode(samples, dedup=False)
        offline = [int(u) for u in tok.encode(samples, dedup=True)[0]]
        offline_s += time.perf_counter() - t
        t = time.perf_counter()
        stream = StreamingTokenizer(tok, lookahead=lookahead, context=context, chunk=1)
        fixed = []
        for start in range(0, samples.size, CHUNK):
            fixed += stream.push_frames(samples[start:start + CHUNK])
        fixed += stream.flush_frames()  # end of the clip: the rest, without look-ahead
        streamed = _dedup(fixed)
        stream_s += time.perf_counter() - t
        edits += Levenshtein.distance(streamed, offline)
        units += len(offline)
        frames += len(frame_units)
        frame_diff += sum(int(a != b) for a, b in zip(fixed, frame_units)) + abs(len(fixed) - len(frame_units))
    return {"lookahead_frames": lookahead, "latency_ms": lookahead * 20, "context_frames": context,
            "unit_edit_rate": edits / max(units, 1), "frame_unit_error": frame_diff / max(frames, 1),
            "offline_units": units, "encode_time_vs_offline": stream_s / max(offline_s, 1e-9)}


def _dedup(seq: list[int]) -> list[int]:
    return [u for i, u in enumerate(seq) if i == 0 or u != seq[i - 1]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="work/streaming")
    parser.add_argument("--corpus", default=None, help="corpus with a heldout split")
    parser.add_argument("--tokenizer", action="append", default=None, help="tokenizer dir (repeatable)")
    parser.add_argument("--utterances", type=int, default=30, help="held-out utterances")
    args = parser.parse_args()

    import torch

    from speechlm.data.corpus import Corpus
    from speechlm.generation.session import Session
    from speechlm.tokenizers import load_tokenizer

    torch.set_num_threads(1)
    corpus, toks = build(Path(args.work), Path(args.corpus) if args.corpus else None, args.tokenizer)
    clips = [u.samples() for _, u in zip(range(args.utterances), Corpus(corpus).utterances("heldout"))]
    rows = {}
    for name, path in toks.items():
        tok = load_tokenizer(path)
        rows[name] = []
        for context in CONTEXTS:
            for la in LOOKAHEADS:
                r = measure(tok, clips, la, context)
                rows[name].append(r)
                print(f"{name} context {context} look-ahead {la:2d}: unit edit rate "
                      f"{r['unit_edit_rate']:.3f}, frame error {r['frame_unit_error']:.3f}", flush=True)
    # the headline: ssl-tiny (the non-causal encoder) at the Session's defaults
    defaults = inspect.signature(Session.__init__).parameters
    lookahead = defaults["tokenizer_lookahead"].default
    context = defaults["tokenizer_context"].default
    head = "ssl-tiny" if "ssl-tiny" in rows else next(iter(rows))
    value = next(r["unit_edit_rate"] for r in rows[head]
                 if r["lookahead_frames"] == lookahead and r["context_frames"] == context)
    config = {"corpus": str(corpus), "tokenizers": {k: str(v) for k, v in toks.items()},
              "utterances": len(clips), "audio_s": sum(c.size for c in clips) / 16000,
              "chunk_samples": CHUNK, "contexts": list(CONTEXTS), "lookaheads": list(LOOKAHEADS),
              "session_defaults": {"tokenizer_lookahead": lookahead, "tokenizer_context": context},
              "threads": 1}
    path = write_result("streaming_units", config, value, 0.0,
                        f"unit edit rate vs offline ({head}, Session defaults: look-ahead "
                        f"{lookahead} frames = {lookahead * 20} ms, context {context} frames)",
                        rows=rows, note="baseline: offline tokenization of the whole clip "
                        "(edit rate 0); ratio is undefined for a zero baseline")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
