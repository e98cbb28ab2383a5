"""`speechlm eval --suite prosody`: do continuations carry the prompt's prosody?

For ``prompts`` held-out utterances (voices never trained on) the model hears the first
``prompt_seconds`` of their tokens and samples ``samples`` continuations of as many unit steps as
the real next ``continuation_seconds`` hold (per-stream temperatures: the model's saved ones).
Each continuation's F0 contour (50 Hz frames) comes from

* the predicted F0 stream when the model has one: pGSLM ``f0`` tokens decoded with the bin edges
  saved in the model, SpiRit-LM ``pitch`` tokens through the pitch VQ decoder; the speaker offset
  is the prompt's own mean log-F0 (unseen voices), durations from the ``duration`` stream or the
  units' mean training durations;
* otherwise (unit-only models) the vocoded continuation, measured with Praat like the reference.

``stream_loss`` is the teacher-forced loss of each stream on the prompts' whole utterances.
Metrics (pGSLM's and an STSP-like one), each with a 95 % interval (bootstrap over prompts, or
Wilson for proportions): ``logf0_min_mae`` (mean over prompts of the smallest, over samples,
mean |log F0 - log F0_ref| on frames voiced in both), ``f0_std`` (Hz, within a continuation),
``f0_prompt_corr`` (Pearson r over prompts of the prompt's and the continuation's mean log-F0) and
``style_preservation`` (share of vocoded continuations the style classifier labels with the
prompt's style; chance = the most frequent prompt style's share). The real continuations give the
reference value of each; ``per_prompt`` keeps each prompt's figures, so two models evaluated on
the same prompts compare pairwise.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from speechlm.core.errors import CheckpointError, ConfigError, DataError
from speechlm.core.progress import progress_bar
from speechlm.data.corpus import Corpus
from speechlm.tokenizers.prosody.f0 import F0Config, extract_f0, unit_f0
from speechlm.tokenizers.tokens import TokenDataset

log = logging.getLogger(__name__)

FRAME_RATE = 50.0  # contours are compared on the 20 ms unit frame grid


@dataclass
class ProsodyEvalConfig:
    corpus_dir: str
    tokens_dir: str | None = None        # default: the dataset the model was trained on
    vocoder_dir: str | None = None       # units-only or F0-aware (``logf0`` stream) vocoder
    style_classifier: str | None = None  # ``speechlm prosody style-classifier`` directory
    split: str = "heldout"
    prompts: int = 20
    samples: int = 20
    prompt_seconds: float = 3.0
    continuation_seconds: float = 2.0
    seed: int = 0
    plots: int = 4
    threads: int = 1                     # torch threads (more only slow tiny models down)
    show_progress: bool = True

    def validate(self) -> None:
        if min(self.prompts, self.samples) < 1 or min(self.prompt_seconds,
                                                      self.continuation_seconds) <= 0:
            raise ConfigError(f"prosody eval: prompts/samples >= 1 and positive seconds, got {self}")


# ------------------------------------------------------------------ statistics

def bootstrap_ci(values: np.ndarray, stat=np.mean, n: int = 2000, seed: int = 0) -> list[float]:
    """95 % percentile interval of ``stat`` over resamples of the rows of ``values``."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return [float("nan"), float("nan")]
    rng = np.random.default_rng(seed)
    stats = [stat(values[rng.integers(0, len(values), len(values))]) for _ in range(n)]
    return [float(np.nanpercentile(stats, 2.5)), float(np.nanpercentile(stats, 97.5))]


def pearson(pairs: np.ndarray) -> float:
    """Pearson r of the two columns of ``pairs`` (nan when either is constant)."""
    x, y = pairs[:, 0], pairs[:, 1]
    if x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def logf0_mae(contour: np.ndarray, reference: np.ndarray) -> float | None:
    """Mean |log F0 - log F0_ref| over frames voiced in both (None if there is none)."""
    n = min(contour.size, reference.size)
    both = (contour[:n] > 0) & (reference[:n] > 0)
    if not both.any():
        return None
    return float(np.mean(np.abs(np.log(contour[:n][both]) - np.log(reference[:n][both]))))


def _mean_logf0(contour: np.ndarray) -> float | None:
    voiced = contour[contour > 0]
    return float(np.mean(np.log(voiced))) if voiced.size else None


def _f0_std(contour: np.ndarray) -> float | None:
    voiced = contour[contour > 0]
    return float(np.std(voiced)) if voiced.size > 1 else None


# ------------------------------------------------------------------ model + data

def check_dataset(lm, dataset: TokenDataset) -> None:
    """CheckpointError when the dataset's streams are not the model's (name, size, tokenizer)."""
    for info in lm.spec.streams:
        try:
            spec = dataset.stream(info.family)
        except DataError:
            raise CheckpointError(f"model/dataset stream mismatch: {lm.path} reads streams "
                                  f"{[s.family for s in lm.spec.streams]}, {dataset.path} has "
                                  f"{dataset.stream_names}") from None
        size = lm.vocab.family(info.family).size
        made_by = spec.tokenizer and info.tokenizer_dir and \
            Path(spec.tokenizer).resolve() != Path(info.tokenizer_dir).resolve()
        if spec.vocab_size != size or made_by:
            raise CheckpointError(f"model/dataset stream mismatch: {lm.path} reads {info.family} "
                                  f"with {size} codes from {info.tokenizer_dir}, {dataset.path} "
                                  f"has {spec.vocab_size} codes from {spec.tokenizer}")


class ProsodyDecoder:
    """Turns a model's generated streams into per-frame F0 and per-unit durations, with the
    tokenizer records the model saved (checked against the tokenizers when they are loaded)."""

    def __init__(self, lm, mean_durations: np.ndarray) -> None:
        from speechlm.tokenizers.prosody import load_prosody_tokenizer
        from speechlm.tokenizers.prosody.saved import check_same, restore

        self.streams = [s.family for s in lm.spec.streams]
        records = lm.meta.get("prosody") or {}
        where = str(Path(lm.path) / "speechlm.json")
        self.unit = restore(records["unit-prosody"], where) if "unit-prosody" in records else None
        self.pitch = None
        if "pitch-vq" in records and "pitch" in self.streams:
            self.pitch = load_prosody_tokenizer(records["pitch-vq"]["path"])
            check_same(records["pitch-vq"], self.pitch, str(lm.path))
        if "f0" in self.streams and self.unit is None:
            raise CheckpointError(f"{where}: the model has an f0 stream but no saved F0 bin edges")
        self.mean_durations = mean_durations

    @property
    def f0_source(self) -> str:
        if "f0" in self.streams:
            return "predicted F0 stream (pGSLM bins saved in the model)"
        if self.pitch is not None:
            return "predicted pitch stream (pitch VQ decoder)"
        return "vocoded continuation (Praat F0)"

    @property
    def has_f0(self) -> bool:
        return "f0" in self.streams or self.pitch is not None

    def durations(self, codes: np.ndarray) -> np.ndarray:
        if "duration" in self.streams and self.unit is not None:
            return self.unit.decode_durations(codes[self.streams.index("duration")])
        return self.mean_durations[codes[0]]

    def contour(self, codes: np.ndarray, durations: np.ndarray, offset: float) -> np.ndarray:
        """(frames,) Hz of generated ``(K, T)`` codes; ``offset`` = the voice's mean log-F0."""
        if "f0" in self.streams:
            return self.unit.contour(codes[self.streams.index("f0")], durations, offset)
        frames = np.repeat(codes[self.streams.index("pitch")], durations)
        steps = frames[:: self.pitch.model_config.downsample]
        return self.pitch.decode(steps, offset, n_frames=frames.size)


def _mean_durations(dataset: TokenDataset, n_units: int) -> np.ndarray:
    """Each unit's mean run length over the training split (at least 1 frame)."""
    table = dataset.table("train", ["units", "durations"]).to_pydict()
    units = np.concatenate([np.asarray(u) for u in table["units"]])
    frames = np.concatenate([np.asarray(d) for d in table["durations"]])
    sums = np.bincount(units, frames, minlength=n_units)
    counts = np.bincount(units, minlength=n_units)
    return np.maximum(1, np.round(np.divide(sums, counts, out=np.full(n_units, 2.0),
                                            where=counts > 0))).astype(np.int64)


@dataclass
class Prompt:
    id: str
    style: str | None
    codes: np.ndarray        # (K, Tp) prompt codes
    n_new: int               # unit steps of the real continuation
    prompt_f0: np.ndarray    # (frames,) Hz of the prompt audio
    ref_f0: np.ndarray       # (frames,) Hz of the real continuation
    samples: np.ndarray      # prompt audio (speaker reference for the vocoder)
    ref_audio: np.ndarray    # real continuation audio


def select_prompts(dataset: TokenDataset, corpus: Corpus, streams: list[str],
                   cfg: ProsodyEvalConfig, f0_config: F0Config) -> list[Prompt]:
    """The first ``cfg.prompts`` utterances (by id) of the split that are long enough."""
    rate = dataset.frame_rate
    records = {r.id: r for r in dataset.split(cfg.split)}
    codes = dict(zip([r.id for r in dataset.split(cfg.split)], dataset.streams(cfg.split, streams)))
    need = cfg.prompt_seconds + cfg.continuation_seconds
    prompts = []
    for utt in sorted(corpus.utterances(cfg.split), key=lambda u: u.id):
        rec = records.get(utt.id)
        if rec is None or rec.durations.sum() < need * rate:
            continue
        ends = np.cumsum(rec.durations)
        n_prompt = int(np.searchsorted(ends, cfg.prompt_seconds * rate, side="right"))
        n_new = int(np.searchsorted(ends, need * rate, side="right")) - n_prompt
        if n_prompt < 1 or n_new < 1:
            continue
        samples = utt.samples()
        f0 = extract_f0(samples, f0_config)
        frames = unit_f0(f0, f0_config.hop_s, np.ones(samples.size // 320, np.int64), FRAME_RATE)
        split_at = int(ends[n_prompt - 1] * FRAME_RATE / rate)
        stop = split_at + int(cfg.continuation_seconds * FRAME_RATE)
        hop = int(16000 / FRAME_RATE)
        prompts.append(Prompt(utt.id, utt.style, codes[utt.id][:, :n_prompt], n_new,
                              frames[:split_at], frames[split_at:stop], samples[: split_at * hop],
                              samples[split_at * hop: stop * hop]))
        if len(prompts) == cfg.prompts:
            break
    if not prompts:
        raise DataError(f"{dataset.path}: no {cfg.split} utterance is {need:g} s long (prompt + "
                        "continuation)")
    return prompts


def stream_losses(lm, records: list[np.ndarray]) -> dict[str, float]:
    """Teacher-forced next-token loss (nats per token) of each stream over ``(K, T)`` records,
    framed like training (``<bos> ... <eos>``) and cut to the model's training block."""
    import torch

    from speechlm.lm.sequences import sequence_frame, utterance_tokens

    space = lm.space
    before = len(sequence_frame(space.vocab)[0])
    limit = (lm.spec.seq_len or 10**9) - before - 1 - max(space.layout.delays or (0,))
    sums, counts = np.zeros(space.n_streams), np.zeros(space.n_streams)
    for codes in records:
        ids, stream = space.encode(codes[:, :limit])                       # (R, S)
        framed = utterance_tokens(space.vocab, ids)                        # (R, S + framing)
        where = np.full(framed.shape, -1)
        where[:, before:before + ids.shape[1]] = stream
        x = torch.from_numpy(framed)[None] if space.n_rows > 1 else torch.from_numpy(framed)
        with torch.no_grad():
            logits = lm.model(input_ids=x, use_cache=False).logits       # (1, [R,] S', V)
        logp = torch.log_softmax(logits.float().reshape(framed.shape[0], framed.shape[1], -1)[:, :-1], -1)
        nll = -logp.gather(-1, torch.from_numpy(framed[:, 1:])[..., None])[..., 0].numpy()
        for k in range(space.n_streams):
            hit = where[:, 1:] == k
            sums[k] += nll[hit].sum()
            counts[k] += hit.sum()
    return {name: float(sums[k] / max(counts[k], 1)) for k, name in enumerate(space.streams)}


def _f0_of_audio(audio: np.ndarray, f0_config: F0Config) -> np.ndarray:
    f0 = extract_f0(audio, f0_config)
    return unit_f0(f0, f0_config.hop_s, np.ones(audio.size // 320, np.int64), FRAME_RATE)


# ------------------------------------------------------------------ the suite

def evaluate_prosody(model_dir: str | Path, cfg: ProsodyEvalConfig, out_dir: str | Path | None = None
                     ) -> dict:
    """Sample continuations of held-out prompts and score their prosody; returns the ``prosody``
    entry of ``results.json`` (and writes a contour plot into ``out_dir``)."""
    from speechlm.core.threads import torch_threads

    with torch_threads(cfg.threads):
        return _evaluate(model_dir, cfg, out_dir)


def _evaluate(model_dir: str | Path, cfg: ProsodyEvalConfig, out_dir: str | Path | None) -> dict:
    from speechlm.generation.sampling import generate_codes
    from speechlm.lm.model import load_speech_lm
    from speechlm.tokenizers.prosody.vocoder_stream import LOGF0, logf0_feature

    cfg.validate()
    start = time.perf_counter()
    lm = load_speech_lm(model_dir)
    if lm.kind != "speech":
        raise ConfigError(f"{model_dir}: the prosody suite needs a speech LM")
    tokens_dir = cfg.tokens_dir or lm.meta.get("units_dir")
    if not tokens_dir:
        raise ConfigError(f"{model_dir}: records no training dataset; pass --tokens")
    dataset = TokenDataset(tokens_dir)
    check_dataset(lm, dataset)
    streams = [s.family for s in lm.spec.streams]
    decoder = ProsodyDecoder(lm, _mean_durations(dataset, lm.vocab.family("units").size))
    f0_config = F0Config()
    vocoder = clf = None
    if cfg.vocoder_dir:
        from speechlm.lm.modeldir import check_units
        from speechlm.vocoder import load_vocoder

        vocoder = load_vocoder(cfg.vocoder_dir)
        check_units(lm, vocoder.config.vocab_size, model_dir, cfg.vocoder_dir, "vocoder")
        if LOGF0 in vocoder.streams and not decoder.has_f0:
            raise ConfigError(f"{cfg.vocoder_dir}: an F0-aware vocoder needs a model that predicts "
                              f"F0 (streams {streams}); use a units-only vocoder")
    elif not decoder.has_f0:
        raise ConfigError(f"{model_dir}: a unit-only model's F0 is measured on vocoded audio: "
                          "pass --vocoder")
    if cfg.style_classifier:
        from speechlm.eval.style import load_style_classifier

        clf = load_style_classifier(cfg.style_classifier)
        if clf.clip_seconds != cfg.continuation_seconds:
            log.warning("%s was trained on %s but judges %g s continuations (train it with "
                        "--clip-seconds %g)", cfg.style_classifier,
                        f"{clf.clip_seconds:g} s clips" if clf.clip_seconds else "whole utterances",
                        cfg.continuation_seconds, cfg.continuation_seconds)
    sampling = lm.meta.get("sampling") or {}
    temps = list(sampling.get("temperature") or [1.0] * len(streams))
    top_k = [k or None for k in (sampling.get("top_k") or [0] * len(streams))]
    prompts = select_prompts(dataset, Corpus(cfg.corpus_dir), streams, cfg, f0_config)

    def synthesize(codes: np.ndarray, durations: np.ndarray, contour: np.ndarray | None,
                   speaker) -> np.ndarray:
        extra = {LOGF0: logf0_feature(contour)} if LOGF0 in vocoder.streams else None
        return vocoder.synthesize(codes[0], durations, speaker=speaker, streams=extra)

    rows = []
    with progress_bar("prosody continuations", total=len(prompts) * cfg.samples, unit="samples",
                      enabled=cfg.show_progress) as advance:
        for i, p in enumerate(prompts):
            offset = _mean_logf0(p.prompt_f0)
            offset = offset if offset is not None else float(np.log(150.0))
            speaker = vocoder.speaker_vector(p.samples).numpy() if vocoder is not None and \
                vocoder.config.speaker_dim else None
            contours, style = [], None
            for s in range(cfg.samples):
                codes = generate_codes(lm.model, lm.space, p.codes, p.n_new, temps, top_k,
                                       seed=cfg.seed * 100_003 + i * 1009 + s)
                durations = decoder.durations(codes)
                contour = decoder.contour(codes, durations, offset) if decoder.has_f0 else None
                audio = None
                if vocoder is not None and (contour is None or (s == 0 and clf is not None)):
                    audio = synthesize(codes, durations, contour, speaker)
                if contour is None:
                    contour = _f0_of_audio(audio, f0_config)
                if s == 0 and clf is not None and p.style is not None and audio is not None:
                    style = clf.predict(audio)
                contours.append(contour)
                advance()
            rows.append({"id": p.id, "style": p.style, "predicted_style": style,
                         "real_style": clf.predict(p.ref_audio) if clf and p.style else None,
                         "contours": contours, "prompt_f0": p.prompt_f0, "ref_f0": p.ref_f0})
    result = summarize(rows, cfg)
    full = dataset.streams(cfg.split, streams)
    ids = [r.id for r in dataset.split(cfg.split)]
    chosen = {p.id for p in prompts}
    result["stream_loss"] = stream_losses(lm, [c for i, c in zip(ids, full) if i in chosen])
    result.update({"model": str(Path(model_dir).resolve()), "streams": streams,
                   "f0_source": decoder.f0_source, "tokens_dir": str(Path(tokens_dir).resolve()),
                   "vocoder": cfg.vocoder_dir, "style_classifier": cfg.style_classifier,
                   "style_classifier_clip_seconds": clf.clip_seconds if clf else None,
                   "temperature": temps, "top_k": top_k, "config": asdict(cfg),
                   "seconds": round(time.perf_counter() - start, 1)})
    if out_dir is not None and cfg.plots:
        result["plot"] = str(plot_contours(rows[: cfg.plots], Path(out_dir) / "prosody_f0.png"))
    return result


def _logf0_pairs(per_prompt: list[dict], key: str) -> np.ndarray:
    """(n, 2): each prompt's mean log-F0 and its ``key`` one, where both exist."""
    return np.array([(r["prompt_logf0"], r[key]) for r in per_prompt
                     if r["prompt_logf0"] is not None and r[key] is not None]).reshape(-1, 2)


def prompt_metric(per_prompt: list[dict], metric: str) -> float | None:
    """``logf0_min_mae``, ``f0_prompt_corr`` or ``style_preservation`` of ``per_prompt`` rows
    (all of a run's, or any resample of them): the value :func:`summarize` reports."""
    if metric == "logf0_min_mae":
        maes = [r[metric] for r in per_prompt if r[metric] is not None]
        return float(np.mean(maes)) if maes else None
    if metric == "f0_prompt_corr":
        pairs = _logf0_pairs(per_prompt, "continuation_logf0")
        return pearson(pairs) if len(pairs) > 1 else None
    if metric == "style_preservation":
        judged = [r for r in per_prompt if r["predicted_style"] is not None]
        return sum(r["predicted_style"] == r["style"] for r in judged) / len(judged) \
            if judged else None
    raise ValueError(f"no per-prompt metric {metric!r}")


def summarize(rows: list[dict], cfg: ProsodyEvalConfig) -> dict:
    """The four metrics with intervals and the real continuations' values as reference."""
    from speechlm.eval.style import wilson_interval

    stds, ref_stds, per_prompt = [], [], []
    for r in rows:
        per_sample = [m for m in (logf0_mae(c, r["ref_f0"]) for c in r["contours"]) if m is not None]
        means = [m for m in map(_mean_logf0, r["contours"]) if m is not None]
        per_prompt.append({"id": r["id"], "style": r["style"],
                           "predicted_style": r["predicted_style"], "real_style": r["real_style"],
                           "logf0_min_mae": min(per_sample) if per_sample else None,
                           "prompt_logf0": _mean_logf0(r["prompt_f0"]),
                           "continuation_logf0": float(np.mean(means)) if means else None,
                           "real_logf0": _mean_logf0(r["ref_f0"])})
        sample_std = [v for v in map(_f0_std, r["contours"]) if v is not None]
        if sample_std:
            stds.append(float(np.mean(sample_std)))
        ref_std = _f0_std(r["ref_f0"])
        if ref_std is not None:
            ref_stds.append(ref_std)
    maes = np.array([r["logf0_min_mae"] for r in per_prompt if r["logf0_min_mae"] is not None])
    pairs_a = _logf0_pairs(per_prompt, "continuation_logf0")
    ref_a = _logf0_pairs(per_prompt, "real_logf0")
    out = {
        "prompts": len(rows), "samples": cfg.samples,
        "logf0_min_mae": {"value": prompt_metric(per_prompt, "logf0_min_mae"),
                          "ci95": bootstrap_ci(maes), "n": len(maes)},
        "f0_std": {"value": float(np.mean(stds)) if stds else None,
                   "ci95": bootstrap_ci(np.array(stds)), "n": len(stds),
                   "reference": float(np.mean(ref_stds)) if ref_stds else None},
        "f0_prompt_corr": {"value": prompt_metric(per_prompt, "f0_prompt_corr"),
                           "ci95": bootstrap_ci(pairs_a, pearson), "n": len(pairs_a),
                           "reference": pearson(ref_a) if len(ref_a) > 1 else None},
    }
    judged = [r for r in rows if r["predicted_style"] is not None]
    if judged:
        hits = sum(r["predicted_style"] == r["style"] for r in judged)
        labels = [r["style"] for r in judged]
        real = sum(r["real_style"] == r["style"] for r in judged)
        out["style_preservation"] = {
            "value": hits / len(judged), "ci95": list(wilson_interval(hits, len(judged))),
            "n": len(judged), "chance": max(labels.count(x) for x in set(labels)) / len(labels),
            "reference": real / len(judged)}
    else:
        out["style_preservation"] = {"value": None, "ci95": [None, None], "n": 0,
                                     "skipped": "needs --vocoder, --style-classifier and a corpus "
                                                "with style labels"}
    out["per_prompt"] = per_prompt  # so two models compare prompt by prompt (paired)
    return out


def plot_contours(rows: list[dict], path: Path) -> Path:
    """Prompt + real continuation + sampled continuations' F0, one panel per prompt."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 1, figsize=(8, 2.2 * len(rows)), squeeze=False)
    for ax, r in zip(axes[:, 0], rows):
        n = r["prompt_f0"].size
        t = np.arange(n + max(r["ref_f0"].size, *(c.size for c in r["contours"]))) / FRAME_RATE
        masked = lambda x: np.where(x > 0, x, np.nan)  # noqa: E731 - unvoiced frames not drawn
        ax.plot(t[:n], masked(r["prompt_f0"]), color="black", label="prompt")
        ax.plot(t[n:n + r["ref_f0"].size], masked(r["ref_f0"]), color="black", ls="--",
                label="real continuation")
        for j, c in enumerate(r["contours"][:3]):
            ax.plot(t[n:n + c.size], masked(c), alpha=0.7, label="samples" if j == 0 else None)
        ax.axvline(n / FRAME_RATE, color="grey", lw=0.5)
        ax.set_ylabel("F0 (Hz)")
        ax.set_title(f"{r['id']} ({r['style'] or 'no style label'})", fontsize=9)
    axes[0, 0].legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("seconds")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
