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
from pathlib import Path

import numpy as np
import torch

from speechlm.core.checkpoint import atomic_dir
from speechlm.core.errors import CheckpointError, ConfigError, DataError
from speechlm.core.files import read_artefact_dir
from speechlm.core.progress import progress_bar
from speechlm.core.threads import with_torch_threads
from speechlm.data.corpus import Corpus
from speechlm.tokenizers.semantic.dsp import HOP
from speechlm.tokenizers.semantic.extractors import (FeatureExtractor, MfccExtractor, SslTinyExtractor,
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


@with_torch_threads
def train_tokenizer(corpus_dir: str | Path, out_dir: str | Path, features: str = "ssl-tiny",
                    units: int = 100, layer: int | None = None, seed: int = 0, *,
                    threads: int = 1, split: str = "train", max_hours: float | None = None,
                    max_points: int = 100_000, ssl_steps: int = 1200, ssl_minutes: float = 1.7,
                    ssl_config: dict | None = None, show_progress: bool = True) -> Path:
    """Fit a unit tokenizer on ``split`` of a corpus and save it to ``out_dir``; returns the path.

    ``ssl-tiny`` first trains the encoder (two HuBERT iterations sharing ``ssl_steps`` and the
    ``ssl_minutes`` time budget), then clusters layer ``layer`` (default: the middle one).
    """
    if units < 2:
        raise ConfigError(f"--units {units}: need at least 2")
    start = time.monotonic()
    corpus = Corpus(corpus_dir)
    if features == "ssl-tiny":
        extractor, training = _train_ssl_tiny(corpus, split, units, layer, seed, threads, max_hours,
                                             max_points, ssl_steps, ssl_minutes, ssl_config or {},
                                             show_progress)
        clips = None
    else:
        extractor = make_extractor(features, layer)  # fail on a bad spec before reading audio
        training = {}
        clips = _load_train_audio(corpus, split, max_hours, show_progress)
    if clips is None:
        clips = training.pop("_clips")
    feats = _extract_all(extractor, clips, f"{extractor.name} features", show_progress)
    quantizer = KMeansQuantizer.fit(np.concatenate(feats), units, seed, max_points, threads=threads)
    training.update(corpus=str(Path(corpus_dir).resolve()), split=split, seed=seed,
                    frames=int(sum(f.shape[0] for f in feats)),
                    seconds=round(time.monotonic() - start, 1))
    tok = UnitTokenizer(extractor, quantizer, info={"training": training})
    path = tok.save(out_dir)
    log.info("saved %s tokenizer (K=%d) to %s in %.0f s", extractor.name, units, path,
             time.monotonic() - start)
    return path


def _train_ssl_tiny(corpus: Corpus, split: str, units: int, layer: int | None, seed: int,
                    threads: int, max_hours: float | None, max_points: int, steps: int,
                    minutes: float, overrides: dict, show_progress: bool):
    from speechlm.tokenizers.semantic.ssl_tiny import (SslTiny, SslTinyConfig, mel_frontend,
                                                       train_masked_prediction)

    clips = _load_train_audio(corpus, split, max_hours, show_progress)
    try:
        config = SslTinyConfig(**overrides)
    except TypeError as err:
        raise ConfigError(f"ssl-tiny config: {err}") from None
    layer = max(1, config.layers // 2) if layer is None else layer  # middle layer (see docs)
    if not 0 <= layer <= config.layers:
        raise ConfigError(f"--layer {layer}: ssl-tiny has layers 0..{config.layers}")
    target_k = 100
    torch.manual_seed(seed)
    model = SslTiny(SslTinyConfig(**{**config.to_dict(), "n_targets": target_k}))
    mels = [mel_frontend(torch.from_numpy(c), model.fbank).numpy() for c in clips]

    # iteration 1: targets = k-means of MFCCs
    mfccs = _extract_all(MfccExtractor(), clips, "mfcc targets", show_progress)
    km1 = KMeansQuantizer.fit(np.concatenate(mfccs), target_k, seed, max_points, threads=threads)
    targets = [km1.assign(f) for f in mfccs]
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
    training = {"iteration1": iter1, "iteration2": {**iter2, "target_layer": target_layer},
                "_clips": clips}
    return SslTinyExtractor(model, layer), training
