"""`speechlm generate`: continue a prompt (units, audio, text, or K-stream codes) with an LM."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("generate", help="sample a continuation from a speech or text LM",
                            description="Sample from a trained LM (KV cache). The prompt is units "
                            "(--prompt-units '3 17 17 42'), audio (--prompt-audio WAV, encoded with "
                            "the tokenizer the model records, or --tokenizer), text (text LMs) or, "
                            "for multi-stream models, one code row per stream (--prompt-codes "
                            "'3 17 42; 0 1 1; 1 0 0'). --stream runs the same generation step by "
                            "step through a streaming Session (same units for the same seed).")
    parser.add_argument("--model", required=True, help="model directory (run dir or checkpoint)")
    prompt = parser.add_mutually_exclusive_group()
    prompt.add_argument("--prompt-units", default=None, help="space/comma separated unit ids")
    prompt.add_argument("--prompt-audio", default=None, help="WAV file to encode as the prompt")
    prompt.add_argument("--prompt-text", default=None, help="text prompt (text LMs)")
    prompt.add_argument("--prompt-codes", default=None,
                        help="multi-stream models: one row of codes per stream, rows separated by ';'")
    parser.add_argument("--tokenizer", default=None, help="speech tokenizer dir for --prompt-audio")
    parser.add_argument("--vocoder", default=None, help="unit vocoder dir: also write audio (--wav)")
    parser.add_argument("--wav", default=None, help="write prompt + continuation audio here "
                        "(needs --vocoder; sample i > 0 gets -i before the extension)")
    parser.add_argument("--max-new-tokens", type=int, default=100,
                        help="new tokens (multi-stream models: new frames)")
    parser.add_argument("--temperature", default="1.0",
                        help="0 = greedy; multi-stream models take one value per stream (a,b,c)")
    parser.add_argument("--top-k", default=None, help="as --temperature (per stream allowed)")
    parser.add_argument("--top-p", type=float, default=None)
    parser.add_argument("--samples", type=int, default=1, help="continuations (seeds seed..seed+n-1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stream", action="store_true",
                        help="generate through a streaming Session (speech LMs, one stream)")
    parser.add_argument("--out", default=None, help="write the result as JSON here")
    parser.set_defaults(handler=_generate)


def _ints(text: str, flag: str) -> list[int]:
    from speechlm.core.errors import DataError

    try:
        return [int(t) for t in text.replace(",", " ").split()]
    except ValueError:
        raise DataError(f"{flag} {text!r}: expected integers separated by spaces") from None


def _per_stream(text: str | None, cast, flag: str):
    """``"0.8"`` -> 0.8, ``"0.8,1,1"`` -> [0.8, 1.0, 1.0] (one per stream)."""
    from speechlm.core.errors import ConfigError

    if text is None:
        return None
    try:
        values = [cast(v) for v in str(text).split(",")]
    except ValueError:
        raise ConfigError(f"{flag} {text!r}: expected a number or one per stream, comma separated") from None
    return values[0] if len(values) == 1 else values


def _generate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from speechlm.generation.pipeline import Sampling, SpeechPipeline

    pipeline = SpeechPipeline.load(args.model, args.tokenizer, args.vocoder,
                                   need_tokenizer=args.prompt_audio is not None)
    sampling = Sampling(args.max_new_tokens, _per_stream(args.temperature, float, "--temperature"),
                        _per_stream(args.top_k, int, "--top-k"), args.top_p)
    if pipeline.lm.space.n_rows > 1 or args.prompt_codes is not None:
        results = _codes(pipeline, args, sampling)
    elif pipeline.lm.kind == "text":
        results = _text(pipeline, args, sampling)
    else:
        results = _units(pipeline, args, sampling)
    if args.out:
        Path(args.out).write_text(json.dumps({"model": args.model, "stream": args.stream,
                                              "samples": results}, indent=2), encoding="utf-8")
    for r in results:
        print(r["text"] if "text" in r else " ".join(map(str, r["units"])))
    return 0


def _units(pipeline, args, sampling) -> list[dict]:
    """One-stream speech LM: units or audio prompt -> units (+ audio with a vocoder)."""
    from pathlib import Path

    from speechlm.core.errors import ConfigError
    from speechlm.data.audio import read_audio, write_wav
    from speechlm.tokenizers.semantic.dsp import check_clip

    if args.prompt_audio is not None:
        prompt = pipeline.encode_audio(check_clip(read_audio(Path(args.prompt_audio)), args.prompt_audio))
    else:
        prompt = _ints(args.prompt_units or "", "--prompt-units")
        pipeline.lm.encode_units(prompt)  # out-of-range units fail before any work
    if args.wav and pipeline.vocoder is None:
        raise ConfigError("--wav needs --vocoder DIR")
    results = []
    for i in range(args.samples):
        seed = args.seed + i
        units, ended = _stream(pipeline, prompt, sampling, seed) if args.stream else \
            pipeline.continue_units(prompt, sampling, seed)
        results.append({"seed": seed, "prompt_units": prompt, "units": units, "ended": ended})
        if args.wav:
            wav = Path(args.wav)
            path = wav if i == 0 else wav.with_name(f"{wav.stem}-{i}{wav.suffix}")
            write_wav(path, pipeline.vocode(prompt + units))
            results[-1]["wav"] = str(path)
    return results


def _stream(pipeline, prompt: list[int], sampling, seed: int) -> tuple[list[int], bool]:
    """The same continuation, step by step through a Session."""
    from speechlm.generation.session import Session

    session = Session(pipeline, sampling, seed=seed)
    session.push_units(prompt)
    session.end_turn()
    units: list[int] = []
    while session.state == "speaking":
        units += session.step().tokens
    return units, session.ended


def _text(pipeline, args, sampling) -> list[dict]:
    from speechlm.core.errors import ConfigError

    if args.prompt_text is None or args.stream:
        raise ConfigError(f"{args.model} is a text LM: pass --prompt-text (no --stream)")
    lm = pipeline.lm
    prompt = lm.encode_text(args.prompt_text)
    from speechlm.generation.sampling import generate

    return [{"seed": args.seed + i, "text": lm.decode_text(generate(
        lm.model, prompt, sampling.max_new_tokens, sampling.temperature, sampling.top_k,
        sampling.top_p, lm.vocab.eos_id, args.seed + i))} for i in range(args.samples)]


def _codes(pipeline, args, sampling) -> list[dict]:
    """Multi-stream models: K rows of codes in, ``--max-new-tokens`` new frames of all K out."""
    import numpy as np

    from speechlm.core.errors import ConfigError

    space = pipeline.lm.space
    if args.prompt_codes is None or args.stream:
        raise ConfigError(f"{args.model} reads {space.n_streams} streams {list(space.streams)} "
                          f"through the {space.layout.name} layout: pass --prompt-codes with one "
                          "row per stream separated by ';' (no --stream)")
    rows = [_ints(row, "--prompt-codes") for row in args.prompt_codes.split(";")]
    if len(rows) != space.n_streams or len({len(r) for r in rows}) != 1:
        raise ConfigError(f"--prompt-codes: need {space.n_streams} rows of equal length "
                          f"({list(space.streams)}), got lengths {[len(r) for r in rows]}")
    codes = np.asarray(rows, dtype=np.int64)
    results = []
    for i in range(args.samples):
        new = pipeline.continue_codes(codes, args.max_new_tokens, sampling, args.seed + i)
        results.append({"seed": args.seed + i, "units": new[0].tolist(),
                        "codes": {name: row.tolist() for name, row in zip(space.streams, new)}})
    return results
