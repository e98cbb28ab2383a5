"""Offline full-duplex benchmark (``speechlm eval --suite duplex``), in the style of Full-Duplex-Bench.

The user channel of held-out dialogues (voices never trained on) is fed 20 ms at a time through a
:class:`~speechlm.generation.session.Session` in simulated real time: frame ``t`` goes in, and the
audio the session returns for it is the system channel at frame ``t``. Nothing waits for the
future. Three kinds of system are scored by the same code:

* ``duplex``: a duplex model (``duplex-tiny``, ``dgslm-tiny``), which decides every frame itself;
* ``turn-based``: a continuation LM behind the Session's turn logic, with end-of-turn decided by a
  VAD endpoint (``endpoint_ms`` of user silence) and barge-in by the Session's energy detector;
* ``reference``: the dialogue's recorded system channel (what the corpus script did), the scale
  every metric is read against.

Scoring is from time-aligned voice activity: **webrtcvad** (the WebRTC GMM VAD, aggressiveness
``vad_mode``) on 20 ms frames of the recorded system output; gaps up to ``GAP_S`` are joined into
one segment. Against the dialogue's events:

* ``interruption_stop_latency``: for each user query that starts while the system is speaking
  (by VAD), the time from its onset to the moment the output falls silent: the first run of more
  than ``GAP_S`` of 20 ms frames quieter than ``QUIET_DBFS`` (Full-Duplex-Bench's user
  interruption). The end of the VAD segment is kept as ``interruption_stop_latency_vad_*``: it
  trails the audio by ~100 ms (webrtcvad's hang-over), so on the recorded system channel, silent
  60-120 ms after each barge-in, the VAD reads 229 ms p95 and the energy 90 / 121 ms p50 / p95
  (71 held-out dialogues);
* ``turn_taking_latency``: query end -> start of the first response (a system segment of at
  least ``RESPONSE_S``, or a shorter one that the user's next query cuts: not a backchannel)
  starting within ``[end - 0.7 s, end + 3 s]``; ``silence_query_accuracy`` is the share of
  queries that get one;
* ``false_response_rate``: share of non-query segments (noise, a third voice, side talk) during
  which, or within 1 s after which, a response starts (before the next query);
* ``takeover_rate_pause``: share of the user's mid-turn pauses in which a response starts;
* ``backchannel_rate``: system segments shorter than ``BACKCHANNEL_S`` starting inside user
  queries, per minute of query;
* ``frame_compute``: wall time of each ``push`` (one frame), p50/p95, against the 20 ms frame;
* ``reply_wer``: does the system's voice say what it means to? The whole system output of a
  dialogue is transcribed by the evaluation ASR (Whisper, :mod:`speechlm.eval.asr`) and scored
  against the words it intended: its text stream (Moshi's inner monologue, read one letter per
  frame) or, for the recorded channel, the words the script left it. Systems without a text
  stream (dgslm, turn-based) have none to score against (``None``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from speechlm.core.errors import ConfigError
from speechlm.data.audio import SAMPLE_RATE
from speechlm.data.dialogue.record import SYSTEM, USER, Dialogue
from speechlm.eval.asr import DEFAULT_ASR, normalize, transcribe, wer

FRAME = 320                 # samples per 20 ms frame
FRAME_S = FRAME / SAMPLE_RATE
GAP_S = 0.1                 # VAD gaps up to this are inside one segment
QUIET_DBFS = -40.0          # an output frame below this RMS is silent (corpus dither: -50 dBFS)
RESPONSE_S = 0.5            # a system segment at least this long is a response
BACKCHANNEL_S = 1.0         # shorter segments inside a user query are backchannels
RESPONSE_WINDOW = (-0.7, 3.0)   # a response to a query starts within this of its end (s)

Segment = tuple[float, float]


@dataclass(frozen=True)
class DuplexConfig:
    endpoint_ms: float = 500.0      # turn-based: user silence that ends a turn
    vad_mode: int = 2               # webrtcvad aggressiveness 0..3
    max_dialogues: int | None = None
    threads: int = 1                # torch threads while running sessions (frame compute)
    asr: str | None = DEFAULT_ASR   # reply_wer's recogniser (None: not scored)
    yield_threshold: float | None = None  # duplex models (None: DuplexEngine's default)


def vad_frames(audio: np.ndarray, mode: int = 2) -> np.ndarray:
    """webrtcvad speech decision for every 20 ms frame of 16 kHz float audio."""
    import webrtcvad

    vad = webrtcvad.Vad(mode)
    pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
    n = pcm.size // FRAME
    return np.array([vad.is_speech(pcm[i * FRAME:(i + 1) * FRAME].tobytes(), SAMPLE_RATE)
                     for i in range(n)], dtype=bool)


def segments(active: np.ndarray) -> list[Segment]:
    """Active frames -> (start, end) seconds, gaps up to :data:`GAP_S` joined."""
    out: list[Segment] = []
    edges = np.flatnonzero(np.diff(np.concatenate([[0], active.astype(np.int8), [0]])))
    for start, end in zip(edges[::2], edges[1::2]):
        s, e = start * FRAME_S, end * FRAME_S
        if out and s - out[-1][1] <= GAP_S:
            out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


def quiet_frames(audio: np.ndarray) -> np.ndarray:
    """Whether each 20 ms frame's RMS is below :data:`QUIET_DBFS`."""
    n = audio.size // FRAME
    rms = np.sqrt(np.mean(np.square(audio[:n * FRAME].reshape(n, FRAME), dtype=np.float64), axis=1))
    return rms < 10 ** (QUIET_DBFS / 20)


def silent_from(quiet: np.ndarray, t: float) -> float:
    """Start (s) of the first run of quiet frames longer than :data:`GAP_S` at or after ``t``
    (the end of the audio when the output never falls silent again)."""
    need = int(round(GAP_S / FRAME_S)) + 1
    run = 0
    for i in range(int(t / FRAME_S), quiet.size):
        run = run + 1 if quiet[i] else 0
        if run == need:
            return (i - need + 1) * FRAME_S
    return quiet.size * FRAME_S


def _pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def score_dialogue(d: Dialogue, system: list[Segment], quiet: np.ndarray | None = None
                   ) -> dict[str, list[float] | int | float]:
    """Raw per-dialogue measurements (lists of latencies, counts) for :func:`summarize`.

    ``system`` are the VAD segments of the output, ``quiet`` its silent frames
    (:func:`quiet_frames`; without it the stop is the VAD segment's end)."""
    queries = d.of("turn", USER)
    # a response: long enough not to be a backchannel, or cut short by the user's next query
    responses = [s for s in system if s[1] - s[0] >= RESPONSE_S or
                 any(s[0] < q.start < s[1] for q in queries)]
    stop, stop_vad, onsets, latency, answered = [], [], [], [], 0
    for q in queries:
        speaking = next((s for s in system if s[0] < q.start < s[1]), None)
        if speaking is not None:
            onsets.append(q.start)
            stop_vad.append(speaking[1] - q.start)
            stop.append(stop_vad[-1] if quiet is None else silent_from(quiet, q.start) - q.start)
        lo, hi = q.end + RESPONSE_WINDOW[0], q.end + RESPONSE_WINDOW[1]
        reply = next((s for s in responses if lo <= s[0] <= hi and s[0] > q.start), None)
        if reply is not None:
            answered += 1
            latency.append(reply[0] - q.end)
    starts = sorted(q.start for q in queries)
    false = 0
    non_query = d.of("non_query")
    for n in non_query:
        until = min([n.end + 1.0] + [s for s in starts if s >= n.start])
        false += any(n.start <= s[0] <= until for s in responses)
    pauses = d.of("pause", USER)
    takeovers = sum(any(p.start <= s[0] < p.end for s in responses) for p in pauses)
    backchannels = sum(any(q.start < s[0] < q.end - 0.2 for q in queries)
                       for s in system if s[1] - s[0] < BACKCHANNEL_S)
    return {"stop": stop, "stop_vad": stop_vad, "stop_onsets": onsets, "latency": latency,
            "queries": len(queries),
            "answered": answered, "non_query": len(non_query), "false": false,
            "pauses": len(pauses),
            "takeovers": takeovers, "backchannels": backchannels,
            "query_minutes": sum(q.duration for q in queries) / 60}


def summarize(parts: Iterable[dict], compute_s: list[float], cpu_s: list[float] | None = None,
              reply_wer: float | None = None) -> dict:
    """Per-dialogue measurements -> the ``duplex`` entry of ``results.json``."""
    parts = list(parts)
    total = {k: sum(p[k] for p in parts) for k in ("queries", "answered", "non_query", "false",
                                                    "pauses", "takeovers", "backchannels",
                                                    "query_minutes")}
    stop = [x for p in parts for x in p["stop"]]
    stop_vad = [x for p in parts for x in p["stop_vad"]]
    latency = [x for p in parts for x in p["latency"]]
    ms = lambda v: None if v is None else round(1000 * v, 1)  # noqa: E731
    ratio = lambda a, b: round(a / b, 4) if b else None      # noqa: E731
    out = {
        "frame_ms": FRAME_S * 1000, "dialogues": len(parts),
        "interruption_stop_latency_p50_ms": ms(_pct(stop, 50)),
        "interruption_stop_latency_p95_ms": ms(_pct(stop, 95)),
        "interruptions": len(stop),
        "interruption_stopped_200ms": ratio(sum(x <= 0.2 for x in stop), len(stop)),
        "interruption_stop_latency_vad_p50_ms": ms(_pct(stop_vad, 50)),
        "interruption_stop_latency_vad_p95_ms": ms(_pct(stop_vad, 95)),
        "turn_taking_latency_ms": ms(_pct(latency, 50)),
        "turn_taking_latency_mean_ms": ms(float(np.mean(latency)) if latency else None),
        "turn_taking_latency_p90_ms": ms(_pct(latency, 90)),
        "takeover_rate_pause": ratio(total["takeovers"], total["pauses"]),
        "pauses": total["pauses"],
        "backchannel_rate": ratio(total["backchannels"], total["query_minutes"]),
        "backchannel_rate_unit": "system backchannels per minute of user query",
        "silence_query_accuracy": ratio(total["answered"], total["queries"]),
        "queries": total["queries"],
        "false_response_rate": ratio(total["false"], total["non_query"]),
        "non_query_segments": total["non_query"],
        "reply_wer": None if reply_wer is None else round(reply_wer, 4),
    }
    if compute_s:
        out.update(frame_compute_p50_ms=ms(_pct(compute_s, 50)),
                   frame_compute_p95_ms=ms(_pct(compute_s, 95)),
                   frame_compute_p95_over_frame=round(_pct(compute_s, 95) / FRAME_S, 3))
    if cpu_s:  # CPU time of the frame's thread: what the frame costs without other jobs' load
        out.update(frame_cpu_p50_ms=ms(_pct(cpu_s, 50)), frame_cpu_p95_ms=ms(_pct(cpu_s, 95)),
                   frame_cpu_p95_over_frame=round(_pct(cpu_s, 95) / FRAME_S, 3))
    return out


def monologue(letters: list[str]) -> str:
    """The words of a text stream written one letter per frame (a frame without one ends a word)."""
    return " ".join("".join(c or " " for c in letters).split())


def run_session(session, user: np.ndarray, endpoint_ms: float | None, vad_mode: int = 2
                ) -> tuple[np.ndarray, list[float], list[float], str]:
    """Feed ``user`` frame by frame; returns the system audio (same length), per-frame wall
    and thread CPU times, and the words of its text stream (empty without one).

    ``endpoint_ms`` (turn-based sessions): after that much user silence by VAD the session is
    told the turn ended. Duplex sessions decide for themselves (``None``)."""
    user_vad = vad_frames(user, vad_mode) if endpoint_ms is not None else None
    quiet_needed = None if endpoint_ms is None else int(round(endpoint_ms / 1000 / FRAME_S))
    out, times, cpu, letters, quiet = [], [], [], [], 0
    for i in range(user.size // FRAME):
        start, start_cpu = time.perf_counter(), time.thread_time()
        step = session.push(user[i * FRAME:(i + 1) * FRAME])
        audio = step.audio
        if user_vad is not None:
            quiet = 0 if user_vad[i] else quiet + 1
            if quiet >= quiet_needed and session.state == "listening":
                session.end_turn()
        times.append(time.perf_counter() - start)
        cpu.append(time.thread_time() - start_cpu)
        out.append(audio)
        letters.append(step.text)
    audio = np.concatenate(out) if out else np.zeros(0, np.float32)
    return audio, times, cpu, monologue(letters)


def evaluate_duplex(model_dir: str | None, dialogues: list[Dialogue], vocoder_dir: str | None,
                    config: DuplexConfig, sampling=None, seed: int = 0,
                    show_progress: bool = True) -> dict:
    """Score one system on ``dialogues``; ``model_dir=None`` scores the recorded system channel.

    Returns ``{"duplex": summary, "per_dialogue": [...], "system": kind}``."""
    from speechlm.core.progress import progress_bar
    from speechlm.core.threads import torch_threads

    session, kind = None, "reference"
    if model_dir is not None:
        if vocoder_dir is None:
            raise ConfigError("--suite duplex scores the system's audio: pass --vocoder DIR "
                              "(a unit vocoder of the model's tokenizer)")
        from speechlm.generation.pipeline import Sampling, SpeechPipeline
        from speechlm.generation.session import Session

        pipeline = SpeechPipeline.load(model_dir, vocoder_dir=vocoder_dir, need_tokenizer=True)
        session = Session(pipeline, sampling or Sampling(100, 0.8, 20), seed=seed,
                          yield_threshold=config.yield_threshold)
        kind = "duplex" if session.duplex is not None else "turn-based"
    parts, compute, cpu, per, meant, heard = [], [], [], [], [], []
    with torch_threads(config.threads), \
            progress_bar(f"duplex eval ({kind})", total=len(dialogues), unit="dialogues",
                         enabled=show_progress) as advance:
        for i, d in enumerate(dialogues):
            audio = d.samples()
            if session is None:
                system, times, cpu_times = audio[SYSTEM], [], []
                text = " ".join(w for w, _, _ in d.words[SYSTEM])
            else:
                session.reset(seed=seed * 100_003 + i)   # each dialogue its own draws
                system, times, cpu_times, text = run_session(
                    session, audio[USER], None if kind == "duplex" else config.endpoint_ms,
                    config.vad_mode)
            words = {}
            if config.asr and (session is None or (session.duplex is not None and
                                                   session.duplex.text_row is not None)):
                meant.append(text)
                heard.append(transcribe(system, config.asr, threads=config.threads))
                words = {"meant": meant[-1], "heard": heard[-1]}
            segs = segments(vad_frames(system, config.vad_mode))
            part = score_dialogue(d, segs, quiet_frames(system))
            parts.append(part)
            compute += times
            cpu += cpu_times
            per.append({"id": d.id, "system_segments": [[round(a, 2), round(b, 2)] for a, b in segs],
                        "stops": [[round(t, 2), round(x, 3)]   # barge-in onset, stop latency (s)
                                  for t, x in zip(part["stop_onsets"], part["stop"])],
                        **{k: v for k, v in part.items() if not isinstance(v, list)}, **words})
            advance()
    reply_wer = wer(meant, heard) if any(normalize(t) for t in meant) else None
    return {"system": kind, "duplex": summarize(parts, compute, cpu, reply_wer),
            "per_dialogue": per}


def heldout_dialogues(dialogue_dir: str, split: str = "heldout",
                      limit: int | None = None) -> list[Dialogue]:
    """The dialogues the benchmark plays (metadata validated as they are read)."""
    from speechlm.data.dialogue import DialogueCorpus

    dialogues = list(DialogueCorpus(dialogue_dir).dialogues(split))
    if not dialogues:
        raise ConfigError(f"{dialogue_dir}: no {split!r} dialogues to evaluate on")
    return dialogues[:limit] if limit else dialogues


def plot_timeline(dialogue: Dialogue, system: list[Segment], path, title: str) -> None:
    """User turns / non-query audio vs the system's voice activity of one dialogue."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 2.2))
    colours = {"query": "tab:blue", "non_query": "tab:gray"}
    for start, end, label in dialogue.user_segments():
        ax.broken_barh([(start, end - start)], (1, 0.8), color=colours[label])
    for i in dialogue.of("interruption"):
        ax.axvline(i.start, color="tab:red", lw=1)
    ax.broken_barh([(a, b - a) for a, b in system], (0, 0.8), color="tab:orange")
    ax.set_yticks([0.4, 1.4], ["system (VAD)", "user"])
    ax.set_xlabel("seconds (red: scripted barge-in)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_duplex_results(result: dict, out_dir, model: str, dialogues: list[Dialogue]) -> None:
    """``results.json`` (the ``duplex`` entry), ``run.json`` (per dialogue), ``report.md`` and a
    timeline plot of the first dialogue."""
    import json
    from pathlib import Path

    from speechlm.core.files import atomic_write_json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "results.json", {"duplex": result["duplex"]})
    atomic_write_json(out / "run.json", {"model": model, "system": result["system"],
                                         "vad": "webrtcvad", "per_dialogue": result["per_dialogue"]})
    first = result["per_dialogue"][0]
    plot_timeline(dialogues[0], [tuple(s) for s in first["system_segments"]], out / "timeline.png",
                  f"{model} ({result['system']}): {first['id']}")
    rows = "\n".join(f"| {k} | {v} |" for k, v in result["duplex"].items())
    (out / "report.md").write_text(
        f"# Duplex benchmark: {model} ({result['system']})\n\nVAD: webrtcvad on 20 ms frames of "
        f"the system output; stops: output below {QUIET_DBFS:g} dBFS for more than "
        f"{1000 * GAP_S:.0f} ms; {len(dialogues)} held-out dialogues fed frame by frame.\n\n"
        f"| metric | value |\n|---|---|\n{rows}\n\n![timeline](timeline.png)\n\n"
        f"```json\n{json.dumps(result['duplex'], indent=2)}\n```\n", encoding="utf-8")
