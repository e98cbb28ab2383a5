"""Two-channel dialogues -> frame-synchronous token streams for full-duplex LMs.

Duplex models need time, not just content, so nothing is deduplicated: every stream has one code
per tokenizer frame (20 ms at 50 Hz) and all streams are aligned on that grid::

    units   what the system channel says: its units, and one *silence unit* wherever the system
            channel is silent by its events (so "the system is silent" is one code, dGSLM-style)
    state   the system's state per frame, from the events (STATES): idle, query (the user is
            asking), non_query (audio not addressed to the system: VITA's silence mode),
            speak (the system channel sounds), interrupted (from the system's cut after a
            barge-in to the end of the user's interrupting question: LSLM's stop token)
    user    the user channel's units as a streaming listener fixes them ``user_lookahead`` frames
            after they arrive (:func:`heard_units`): what the model hears at inference, where
            this stream is fed, not sampled
    chars   the system's words letter by letter from each word's first frame, 0 elsewhere
            (Moshi's aligned inner-monologue text, with characters instead of BPE)

:func:`tokenize_dialogues` writes a token dataset (:func:`speechlm.tokenizers.tokens.write_token_dataset`)
with one record per dialogue; ``meta.json`` records ``silence_unit`` and the state labels.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np

from speechlm.core.errors import ConfigError, DataError
from speechlm.core.progress import progress_bar
from speechlm.core.threads import with_torch_threads
from speechlm.data.dialogue import DialogueCorpus
from speechlm.data.dialogue.record import SYSTEM, USER, Dialogue, merge
from speechlm.tokenizers.streaming import StreamingTokenizer
from speechlm.tokenizers.tokens import StreamSpec, TokenRecord, write_token_dataset

log = logging.getLogger(__name__)

STATES = ("idle", "query", "non_query", "speak", "interrupted")
CHARS = "abcdefghijklmnopqrstuvwxyz'"        # text codes 1..27; 0 = no letter in this frame
LISTEN_CONTEXT = 20     # past frames a streaming listener re-encodes with each new frame
DIALOGUE_STREAMS = ("units", "state", "user", "chars")


def frame_mask(spans: list[tuple[float, float]], n_frames: int, rate: float) -> np.ndarray:
    """Frames whose centre lies inside one of ``spans`` (seconds)."""
    centres = (np.arange(n_frames) + 0.5) / rate
    mask = np.zeros(n_frames, dtype=bool)
    for start, end in spans:
        mask |= (centres >= start) & (centres < end)
    return mask


def state_codes(d: Dialogue, n_frames: int, rate: float) -> np.ndarray:
    """Per-frame index into :data:`STATES` (later rules win: speak over everything)."""
    state = np.zeros(n_frames, dtype=np.int64)
    queries = d.of("turn", USER)
    state[frame_mask([(e.start, e.end) for e in queries], n_frames, rate)] = STATES.index("query")
    state[frame_mask([(e.start, e.end) for e in d.of("non_query")], n_frames, rate)] = \
        STATES.index("non_query")
    stopped = []
    for i in d.of("interruption"):
        query = next((q for q in queries if abs(q.start - i.start) <= 0.01), None)
        stopped.append((i.start, query.end if query else i.end))
    state[frame_mask(stopped, n_frames, rate)] = STATES.index("interrupted")
    state[frame_mask(d.sounding(SYSTEM), n_frames, rate)] = STATES.index("speak")
    return state


def text_codes(d: Dialogue, n_frames: int, rate: float) -> np.ndarray:
    """The system's words, one letter per frame from each word's first frame (0 elsewhere)."""
    text = np.zeros(n_frames, dtype=np.int64)
    words = d.words[SYSTEM]
    for i, (word, start, end) in enumerate(words):
        first = int(start * rate)
        stop = min(n_frames, int(words[i + 1][1] * rate) if i + 1 < len(words) else n_frames)
        letters = [CHARS.index(c) + 1 for c in word.lower() if c in CHARS][: max(0, stop - first)]
        text[first:first + len(letters)] = letters
    return text


def _on_grid(units, n_frames: int) -> np.ndarray:
    """Exactly ``n_frames`` units: cut, or the last one repeated."""
    units = np.asarray(units, dtype=np.int64)[:n_frames]
    return np.pad(units, (0, n_frames - units.size), mode="edge")


def _channel_units(tok, samples: np.ndarray, n_frames: int) -> np.ndarray:
    units, _ = tok.encode(samples, dedup=False)
    return _on_grid(units, n_frames)


def heard_units(tok, samples: np.ndarray, n_frames: int, lookahead: int) -> np.ndarray:
    """The unit of every frame as a listener streaming 20 ms frames fixes it, ``lookahead``
    frames after the frame (the last ones at the end of input): a duplex model is trained on
    what it will hear. Offline units, which see the whole clip, differ from these near every
    onset (mfcc, look-ahead 1: ~6 % of frames), exactly where hearing early matters."""
    listener = StreamingTokenizer(tok, lookahead, LISTEN_CONTEXT, chunk=1)
    hop = listener.hop
    units = [u for k in range(samples.size // hop)
             for u in listener.push_frames(samples[k * hop:(k + 1) * hop])]
    return _on_grid(units + listener.flush_frames(), n_frames)


@with_torch_threads
def tokenize_dialogues(tokenizer_dir: str | Path, dialogue_dir: str | Path, out_dir: str | Path,
                       user_lookahead: int, threads: int = 1, show_progress: bool = True) -> Path:
    """Encode both channels of every dialogue into the frame-level streams of this module; the
    user channel as heard with ``user_lookahead`` frames of look-ahead (:func:`heard_units`),
    which must be the look-ahead of the models trained on it (their delays give it)."""
    if user_lookahead < 1:
        raise ConfigError(f"user_lookahead={user_lookahead}: a streaming listener fixes a frame "
                          f"at the earliest one frame after it (use >= 1)")
    from speechlm.tokenizers.semantic.tokenizer import load_tokenizer

    tok = load_tokenizer(tokenizer_dir)
    corpus = DialogueCorpus(dialogue_dir)
    rate = float(tok.frame_rate)
    raw: dict[str, list[tuple[Dialogue, dict[str, np.ndarray], np.ndarray]]] = {}
    silent_units: Counter = Counter()
    with progress_bar("tokenizing dialogues", total=len(corpus), unit="dialogues",
                      enabled=show_progress) as advance:
        for d in corpus.dialogues():
            audio = d.samples()
            n = int(audio.shape[1] * rate / d.sample_rate)
            system = _channel_units(tok, audio[SYSTEM], n)
            sounding = frame_mask(merge(d.sounding(SYSTEM)), n, rate)
            silent_units.update(system[~sounding].tolist())
            streams = {"state": state_codes(d, n, rate),
                       "user": heard_units(tok, audio[USER], n, user_lookahead),
                       "chars": text_codes(d, n, rate)}
            raw.setdefault(d.split, []).append((d, streams, np.where(sounding, system, -1)))
            advance()
    if not silent_units:
        raise DataError(f"{dialogue_dir}: the system channel is never silent; cannot pick a "
                        f"silence unit")
    silence = silent_units.most_common(1)[0][0]
    splits = {split: [TokenRecord(d.id, d.speakers[SYSTEM], split,
                                  np.where(system < 0, silence, system), np.ones(system.size, np.int64),
                                  " ".join(e.text for e in d.of("turn", SYSTEM)), [], streams)
                      for d, streams, system in items] for split, items in raw.items()}
    tok_path = str(Path(tokenizer_dir).resolve())
    specs = [StreamSpec("units", "units", tok.vocab_size, rate, tok_path),
             StreamSpec("state", "marker", len(STATES), rate, derived="dialogue events"),
             StreamSpec("user", "units", tok.vocab_size, rate, tok_path),
             StreamSpec("chars", "text", len(CHARS) + 1, rate, derived="system words, letters")]
    meta = {"dedup": False, "features": tok.features_name, "kind": "dialogue",
            "corpus": str(Path(dialogue_dir).resolve()), "silence_unit": int(silence),
            "states": list(STATES), "chars": CHARS, "user_lookahead": int(user_lookahead),
            "listen_context": LISTEN_CONTEXT}
    write_token_dataset(out_dir, splits, specs, meta)
    log.info("tokenized dialogues %s into %s (silence unit %d)",
             {k: len(v) for k, v in splits.items()}, out_dir, silence)
    return Path(out_dir)
