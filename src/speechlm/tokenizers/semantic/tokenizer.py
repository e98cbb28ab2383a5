"""Unit tokenizer = feature extractor + k-means; a directory loadable by path.

Directory layout::

    TOK/config.json            format, features, layer, units (K), frame_rate, dim, training info
    TOK/centroids.safetensors  centroids (K, D) + feature mean/std (k-means runs on standardised features)
    TOK/encoder.safetensors    ssl-tiny weights            (features = ssl-tiny)
    TOK/encoder/               copy of the HF model         (features = hf)
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from speechlm.core.checkpoint import atomic_dir
from speechlm.core.config import build_config, config_to_dict
from speechlm.core.errors import CheckpointError, ConfigError, DataError
from speechlm.core.files import read_artefact_dir
from speechlm.core.progress import progress_bar
from speechlm.core.threads import torch_threads
from speechlm.data.corpus import Corpus
from speechlm.tokenizers.semantic.dsp import HOP
from speechlm.tokenizers.semantic.extractors import (FeatureExtractor, SslTinyExtractor,
                                                     load_extractor, make_extractor)
from speechlm.tokenizers.semantic.kmeans import KMeansQuantizer, dedup

log = logging.getLogger(__name__)

FORMAT = "speechlm-unit-tokenizer"
VERSION = 1


class UnitTokenizer:
    """``encode(samples) -> (units, durations)``; see :class:`speechlm.tokenizers.base.SpeechTokenizer`.

    >>> tok = load_tokenizer("runs/tok")                      # doctest: +SKIP
    >>> units, durations = tok.encode(samples)                # doctest: +SKIP
    """

    def __init__(self, extractor: FeatureExtractor, quantizer: KMeansQuantizer,
                 path: Path | None = None, info: dict | None = None) -> None:
        self.extractor = extractor
        self.quantizer = quantizer
        self.path = path
        self.info = dict(info or {})

    @property
    def vocab_size(self) -> int:
        return self.quantizer.k

    @property
    def frame_rate(self) -> float:
        return self.extractor.frame_rate

    @property
    def features_name(self) -> str:
        return self.extractor.name

    def features(self, samples: np.ndarray) -> np.ndarray:
        """(len // 320, D) standardised continuous features (what k-means sees)."""
        return self.quantizer.normalize(self.extractor(samples))

    def encode(self, samples: np.ndarray, dedup: bool = True) -> tuple[np.ndarray, np.ndarray]:
        units = self.quantizer.assign(self.extractor(samples))
        if dedup:
            return _dedup(units)
        return units, np.ones_like(units)

    def config(self) -> dict:
        return {"format": FORMAT, "version": VERSION, **self.extractor.config(),
                "units": self.vocab_size, "frame_rate": self.frame_rate, "hop": HOP,
                "sample_rate": 16000, **self.info}

    def save(self, out_dir: str | Path) -> Path:
        with atomic_dir(out_dir) as tmp:
            self.extractor.save(tmp)
            self.quantizer.save(tmp / "centroids.safetensors")
            (tmp / "config.json").write_text(json.dumps(self.config(), indent=2))
        self.path = Path(out_dir).resolve()
        return self.path


_dedup = dedup


def load_tokenizer(path: str | Path) -> UnitTokenizer:
    """Load a tokenizer directory; ``CheckpointError`` naming the path if missing or corrupt."""
    path = Path(path)
    config = read_artefact_dir(path, "tokenizer", weights=("centroids.safetensors",), fmt=FORMAT)
    quantizer = KMeansQuantizer.load(path / "centroids.safetensors")
    extractor = load_extractor(path, config)
    if quantizer.centroids.shape[1] != extractor.dim:
        raise CheckpointError(f"{path}: centroids have dim {quantizer.centroids.shape[1]} but the "
                              f"{config['features']} extractor gives {extractor.dim}")
    info = {k: config[k] for k in ("training",) if k in config}
    return UnitTokenizer(extractor, quantizer, path.resolve(), info)


def _load_train_audio(corpus: Corpus, split: str, max_hours: float | None,
                      show_progress: bool) -> list[np.ndarray]:
    table = corpus.table(split, ["duration"])
    total = sum(table.column("duration").to_pylist())
    if max_hours is not None:
        total = min(total, max_hours * 3600)
    clips: list[np.ndarray] = []
    seconds = 0.0
    with progress_bar(f"reading {split} audio", total=total, unit="s", enabled=show_progress) as advance:
        for utt in corpus.utterances(split):
            if seconds >= total:
                break
            samples = utt.samples()
            if samples.size >= 400:
                clips.append(samples)
            seconds += utt.duration
            advance(utt.duration)
    if not clips:
        raise DataError(f"{corpus.root}: split {split!r} has no usable audio to train a tokenizer")
    return clips


def _extract_all(extractor, clips: list[np.ndarray], description: str, show_progress: bool) -> list[np.ndarray]:
    feats = []
    with progress_bar(description, total=len(clips), unit="utts", enabled=show_progress) as advance:
        for samples in clips:
            feats.append(extractor(samples))
            advance()
    return feats


@dataclass(frozen=True)
class TokenizerTrainConfig:
    """Keys of ``speechlm tokenizer train`` (YAML via ``--config``, shortcut flags, ``key=value``)."""

    corpus: str = ""                 # corpus directory (required)
    out: str = ""                    # output tokenizer directory (required)
    features: str = "ssl-tiny"       # mfcc | logmel | ssl-tiny | whisper[:PATH][+logmel] | hf:PATH
    units: int = 100                 # k-means clusters K
    layer: int | None = None         # layer to cluster (ssl-tiny, hf: the middle one)
    seed: int = 0
    threads: int = 1                 # torch and faiss threads
    split: str = "train"             # corpus split the tokenizer is fitted on
    max_hours: float | None = None   # use at most this much audio
    max_points: int = 100_000        # frames k-means is fitted on (random subsample)
    ssl_steps: int = 1200            # ssl-tiny optimiser steps over both iterations
    ssl_minutes: float = 0.0         # optional wall-clock cap for ssl-tiny; 0 = steps only
    ssl_targets: Literal["mfcc", "logmel"] = "mfcc"  # features clustered for iteration 1's targets
    ssl_model: dict | None = None    # SslTinyConfig overrides, e.g. {dim: 64, layers: 2}

    def validate(self) -> list[str]:
        problems = [f"{key} is required" for key in ("corpus", "out") if not getattr(self, key)]
        if self.units < 2:
            problems.append(f"units={self.units}: need at least 2")
        for key in ("threads", "max_points", "ssl_steps"):
            if getattr(self, key) < 1:
                problems.append(f"{key}={getattr(self, key)}: must be >= 1")
        if self.ssl_minutes < 0 or (self.max_hours is not None and self.max_hours <= 0):
            problems.append("ssl_minutes must be >= 0 and max_hours > 0")
        if self.ssl_model is not None:
            from speechlm.tokenizers.semantic.ssl_tiny import SslTinyConfig

            known = {f.name for f in fields(SslTinyConfig)}
            if not isinstance(self.ssl_model, dict) or set(self.ssl_model) - known:
                problems.append(f"ssl_model={self.ssl_model!r}: expected a mapping of "
                                f"{', '.join(sorted(known))}")
        return problems


def fit_tokenizer(cfg: TokenizerTrainConfig, show_progress: bool = True) -> UnitTokenizer:
    """Fit a unit tokenizer on ``cfg.split`` of ``cfg.corpus`` in memory (``.save(dir)`` writes it).

    ``ssl-tiny`` first trains the encoder (two HuBERT iterations sharing ``ssl_steps``), then
    clusters layer ``layer`` (default: the middle one).
    """
    with torch_threads(cfg.threads):
        return _fit(cfg, show_progress)


def _fit(cfg: TokenizerTrainConfig, show_progress: bool) -> UnitTokenizer:
    start = time.monotonic()
    corpus = Corpus(cfg.corpus)
    if cfg.features == "ssl-tiny":
        extractor, training = _train_ssl_tiny(corpus, cfg, show_progress)
        clips = training.pop("_clips")
    else:
        extractor = make_extractor(cfg.features, cfg.layer)  # fail on a bad spec before reading audio
        training = {}
        clips = _load_train_audio(corpus, cfg.split, cfg.max_hours, show_progress)
    feats = _extract_all(extractor, clips, f"{extractor.name} features", show_progress)
    quantizer = KMeansQuantizer.fit(np.concatenate(feats), cfg.units, cfg.seed, cfg.max_points,
                                    threads=cfg.threads, weights=extractor.dim_weights())
    training.update(corpus=str(Path(cfg.corpus).resolve()), split=cfg.split, seed=cfg.seed,
                    frames=int(sum(f.shape[0] for f in feats)),
                    seconds=round(time.monotonic() - start, 1), config=config_to_dict(cfg))
    return UnitTokenizer(extractor, quantizer, info={"training": training})


def train_tokenizer(corpus_dir: str | Path, out_dir: str | Path, features: str = "ssl-tiny",
                    units: int = 100, layer: int | None = None, seed: int = 0, *,
                    show_progress: bool = True, **options) -> Path:
    """Fit a unit tokenizer on a corpus and save it to ``out_dir``; returns the path.

    ``options`` are the other keys of :class:`TokenizerTrainConfig` (``threads``, ``split``,
    ``max_hours``, ``ssl_steps``, ...); an unknown or bad one raises ``ConfigError``.
    """
    values = {"corpus": str(corpus_dir), "out": str(out_dir), "features": features,
              "units": units, "layer": layer, "seed": seed, **options}
    cfg = build_config(TokenizerTrainConfig, values, source="train_tokenizer")
    tok = fit_tokenizer(cfg, show_progress)
    path = tok.save(cfg.out)
    log.info("saved %s tokenizer (K=%d) to %s", tok.features_name, cfg.units, path)
    return path


def _train_ssl_tiny(corpus: Corpus, cfg: TokenizerTrainConfig, show_progress: bool):
    from speechlm.tokenizers.semantic.ssl_tiny import (SslTiny, SslTinyConfig, mel_frontend,
                                                       train_masked_prediction)

    clips = _load_train_audio(corpus, cfg.split, cfg.max_hours, show_progress)
    config = SslTinyConfig(**(cfg.ssl_model or {}))
    seed, threads, max_points, steps = cfg.seed, cfg.threads, cfg.max_points, cfg.ssl_steps
    minutes = cfg.ssl_minutes
    layer = max(1, config.layers // 2) if cfg.layer is None else cfg.layer  # middle layer (see docs)
    if not 0 <= layer <= config.layers:
        raise ConfigError(f"--layer {layer}: ssl-tiny has layers 0..{config.layers}")
    target_k = 100
    torch.manual_seed(seed)
    model = SslTiny(SslTinyConfig(**{**config.to_dict(), "n_targets": target_k}))
    mels = [mel_frontend(torch.from_numpy(c), model.fbank).numpy() for c in clips]

    # iteration 1: targets = k-means of MFCCs (HuBERT) or of log-mel frames
    first = _extract_all(make_extractor(cfg.ssl_targets), clips, f"{cfg.ssl_targets} targets",
                         show_progress)
    km1 = KMeansQuantizer.fit(np.concatenate(first), target_k, seed, max_points, threads=threads)
    targets = [km1.assign(f) for f in first]
    budget = minutes * 60 if minutes else None
    iter1 = train_masked_prediction(model, mels, targets, steps // 2, seed,
                                    max_seconds=budget / 2 if budget else None,
                                    description="ssl-tiny iteration 1", show_progress=show_progress)
    # iteration 2: targets = k-means of the iteration-1 model's own features (HuBERT's 2nd
    # iteration); we warm-start from iteration 1 with a fresh prediction head to save CPU time.
    target_layer = max(1, config.layers - 1)
    iter1_feats = _extract_all(SslTinyExtractor(model, target_layer), clips, "iteration-1 features",
                               show_progress)
    km2 = KMeansQuantizer.fit(np.concatenate(iter1_feats), target_k, seed + 1, max_points, threads=threads)
    targets = [km2.assign(f) for f in iter1_feats]
    model.head.reset_parameters()
    iter2 = train_masked_prediction(model, mels, targets, steps - steps // 2, seed + 1,
                                    max_seconds=budget / 2 if budget else None,
                                    description="ssl-tiny iteration 2", show_progress=show_progress)
    training = {"iteration1": {**iter1, "targets": cfg.ssl_targets},
                "iteration2": {**iter2, "target_layer": target_layer},
                "_clips": clips}
    return SslTinyExtractor(model, layer), training
