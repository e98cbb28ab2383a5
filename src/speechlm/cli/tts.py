"""`speechlm tts`: zero-shot TTS with a codec LM (VALL-E, or a single-model layout with a TTS task)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("tts", help="text + a voice prompt -> speech in that voice (codec LM)",
                            description="Phonemize TEXT with espeak-ng, take the voice from the first "
                            "--prompt-seconds of --prompt-audio, and generate codec tokens with a "
                            "VALL-E run dir (AR + NAR) or a codec LM trained with the tts task. Long "
                            "texts are synthesized sentence by sentence.")
    parser.add_argument("--model", required=True, help="model/run directory (speechlm train output)")
    parser.add_argument("--text", required=True, help="text to speak (English)")
    parser.add_argument("--prompt-audio", required=True, help="voice prompt audio file")
    parser.add_argument("--prompt-seconds", type=float, default=3.0,
                        help="seconds of the prompt to use (default 3)")
    parser.add_argument("--out", required=True, help="output .wav (16 kHz)")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.set_defaults(handler=_tts)


def _tts(args: argparse.Namespace) -> int:
    from speechlm.core.threads import torch_threads
    from speechlm.data.audio import read_audio, write_wav
    from speechlm.generation.codec_tts import CodecGenerator

    with torch_threads(args.threads):
        generator = CodecGenerator(args.model)
        prompt = read_audio(args.prompt_audio)
        out = generator.tts(args.text, prompt, args.prompt_seconds, args.temperature, args.top_k,
                            args.seed, source=args.prompt_audio)
    write_wav(args.out, out.audio)
    seconds = out.audio.size / generator.codec.sample_rate
    print(f"{args.out}: {seconds:.2f} s, {out.codes.shape[1]} frames x {out.codes.shape[0]} "
          f"codebooks, {out.frames_per_second:.1f} frames/s (LM), RTF "
          f"{out.lm_seconds / max(seconds, 1e-9):.2f}")
    return 0
