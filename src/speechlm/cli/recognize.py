"""`speechlm recognize`: speech -> phonemes with a codec LM trained with the asr task (VioLA)."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("recognize", help="speech -> phonemes with a multitask codec LM (VioLA)",
                            description="Encode AUDIO with the model's codec and let a codec LM "
                            "trained with the asr task write its phonemes (greedy).")
    parser.add_argument("--model", required=True, help="model directory (speechlm train output)")
    parser.add_argument("--audio", required=True, help="audio file to read")
    parser.add_argument("--json", action="store_true", help="print a JSON object instead of text")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.set_defaults(handler=_recognize)


def _recognize(args: argparse.Namespace) -> int:
    from speechlm.core.threads import torch_threads
    from speechlm.data.audio import read_audio
    from speechlm.generation.codec_tts import CodecGenerator

    with torch_threads(args.threads):
        out = CodecGenerator(args.model).recognize(read_audio(args.audio), source=args.audio)
    if args.json:
        print(json.dumps({"audio": args.audio, "phonemes": out.phonemes, "lm_seconds": out.lm_seconds}))
    else:
        print(" ".join(out.phonemes))
    return 0
