"""`speechlm generate`: continue a unit prompt (or a WAV via a speech tokenizer) with a speech LM."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("generate", help="sample a continuation from a speech LM",
                            description="Sample units from a trained speech LM (KV cache). The "
                            "prompt is units (--prompt-units '3 17 17 42') or audio (--prompt-audio "
                            "WAV, encoded with --tokenizer, default: the one the LM was trained with).")
    parser.add_argument("--model", required=True, help="model directory (run dir or checkpoint)")
    prompt = parser.add_mutually_exclusive_group()
    prompt.add_argument("--prompt-units", default=None, help="space/comma separated unit ids")
    prompt.add_argument("--prompt-audio", default=None, help="WAV file to encode as the prompt")
    prompt.add_argument("--prompt-text", default=None, help="text prompt (text LMs)")
    parser.add_argument("--tokenizer", default=None, help="speech tokenizer dir for --prompt-audio")
    parser.add_argument("--max-new-tokens", type=int, default=100)
    parser.add_argument("--temperature", type=float, default=1.0, help="0 = greedy")
    parser.add_argument("--top-k", type=int, default=None)
    parser.add_argument("--top-p", type=float, default=None)
    parser.add_argument("--samples", type=int, default=1, help="continuations (seeds seed..seed+n-1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write the result as JSON here")
    parser.set_defaults(handler=_generate)


def _parse_units(text: str) -> list[int]:
    from speechlm.core.errors import DataError

    try:
        return [int(t) for t in text.replace(",", " ").split()]
    except ValueError:
        raise DataError(f"--prompt-units {text!r}: expected integers separated by spaces") from None


def _generate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from speechlm.core.errors import CheckpointError, ConfigError
    from speechlm.generation.sampling import generate
    from speechlm.lm.model import load_speech_lm

    lm = load_speech_lm(args.model)
    if args.prompt_text is not None:
        prompt = lm.encode_text(args.prompt_text)
    elif args.prompt_audio is not None:
        from speechlm.data.audio import read_audio
        from speechlm.tokenizers import load_tokenizer
        from speechlm.tokenizers.semantic.dsp import check_clip

        tok_dir = args.tokenizer or lm.tokenizer_dir
        if tok_dir is None:
            raise ConfigError(f"{args.model}: no tokenizer recorded; pass --tokenizer")
        tok = load_tokenizer(tok_dir)
        if tok.vocab_size != lm.vocab.family("units").size:
            raise CheckpointError(f"{tok_dir}: tokenizer has {tok.vocab_size} units but the model "
                                  f"{args.model} was trained on {lm.vocab.family('units').size}")
        units, _ = tok.encode(check_clip(read_audio(Path(args.prompt_audio)), args.prompt_audio))
        prompt = lm.encode_units([int(u) for u in units])
    else:
        prompt = lm.encode_units(_parse_units(args.prompt_units or ""))
    results = []
    for i in range(args.samples):
        new = generate(lm.model, prompt, args.max_new_tokens, temperature=args.temperature,
                       top_k=args.top_k, top_p=args.top_p, eos_id=lm.vocab.eos_id, seed=args.seed + i)
        if lm.kind == "text":
            results.append({"seed": args.seed + i, "text": lm.decode_text(new)})
        else:
            results.append({"seed": args.seed + i, "units": lm.decode_units(new),
                            "ended": bool(new and new[-1] == lm.vocab.eos_id)})
    if args.out:
        Path(args.out).write_text(json.dumps({"model": args.model, "prompt_ids": prompt,
                                              "samples": results}, indent=2), encoding="utf-8")
    for r in results:
        print(r["text"] if "text" in r else " ".join(map(str, r["units"])))
    return 0
