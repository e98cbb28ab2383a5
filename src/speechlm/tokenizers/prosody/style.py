"""Style tokens (SpiRit-LM Expressive): pooled prosodic/spectral features of each window of
about a second, quantised by k-means.

SpiRit-LM pools a pretrained expressive encoder and uses 100 clusters; without pretrained weights
we pool the features of :mod:`speechlm.tokenizers.prosody.features` and default to 32 clusters,
which a 0.1-0.25 h CPU corpus (a few hundred windows) can still fit.

Directory layout::

    TOK/config.json            format, kind "style", window_s, F0 settings, feature names
    TOK/centroids.safetensors  centroids (K, D) + feature mean/std (k-means on standardised features)
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from speechlm.core.checkpoint import atomic_dir
from speechlm.core.errors import CheckpointError, ConfigError
from speechlm.tokenizers.prosody.common import read_tracks, save_common
from speechlm.tokenizers.prosody.f0 import F0Config, extract_f0
from speechlm.tokenizers.prosody.features import FEATURE_NAMES, frame_features, pool, windows
from speechlm.tokenizers.semantic.kmeans import KMeansQuantizer
from speechlm.tokenizers.semantic.kmeans import dedup as run_length

log = logging.getLogger(__name__)

KIND = "style"


def window_features(samples: np.ndarray, f0: np.ndarray, hop_s: float,
                    window_s: float) -> np.ndarray:
    """(W, D) pooled features of consecutive ``window_s`` windows."""
    ff = frame_features(samples, f0, hop_s)
    per_window = max(1, int(round(window_s / hop_s)))
    return np.stack([pool(ff, a, b) for a, b in windows(f0.size, per_window)])


class StyleTokenizer:
    """``encode(samples) -> (tokens, durations)`` with one token per ``window_s`` seconds."""

    kind = KIND

    def __init__(self, quantizer: KMeansQuantizer, f0_config: F0Config, window_s: float = 1.0,
                 path: Path | None = None, info: dict | None = None) -> None:
        self.quantizer = quantizer
        self.f0_config = f0_config
        self.window_s = window_s
        self.path = path
        self.info = dict(info or {})

    @property
    def vocab_size(self) -> int:
        return self.quantizer.k

    @property
    def frame_rate(self) -> float:
        return 1.0 / self.window_s

    def encode(self, samples: np.ndarray, speaker: str | None = None,
               dedup: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(tokens, durations in windows), int64. ``speaker`` is accepted for a common signature
        with the other prosody tokenizers; features are normalised per utterance."""
        tokens = self.encode_f0(samples, extract_f0(samples, self.f0_config))
        return run_length(tokens) if dedup else (tokens, np.ones_like(tokens))

    def encode_f0(self, samples: np.ndarray, f0: np.ndarray) -> np.ndarray:
        """One token per window, from ``f0`` already extracted with ``self.f0_config``."""
        feats = window_features(samples, f0, self.f0_config.hop_s, self.window_s)
        return self.quantizer.assign(feats.astype(np.float32))

    def save(self, out_dir: str | Path) -> Path:
        with atomic_dir(out_dir) as tmp:
            self.quantizer.save(tmp / "centroids.safetensors")
            save_common(tmp, {"kind": KIND, "window_s": self.window_s, "f0": self.f0_config.to_dict(),
                              "features": list(FEATURE_NAMES), "frame_rate": self.frame_rate,
                              "streams": [{"name": "style", "vocab_size": self.vocab_size,
                                           "frame_rate": self.frame_rate}], **self.info}, None)
        self.path = Path(out_dir).resolve()
        return self.path

    @classmethod
    def load(cls, path: Path, config: dict) -> StyleTokenizer:
        try:
            f0_config = F0Config(**config["f0"])
            window_s = float(config["window_s"])
        except (KeyError, TypeError, ValueError, ConfigError) as err:
            raise CheckpointError(f"{path / 'config.json'}: bad style settings ({err})") from None
        quantizer = KMeansQuantizer.load(path / "centroids.safetensors")
        if quantizer.centroids.shape[1] != len(FEATURE_NAMES):
            raise CheckpointError(f"{path / 'centroids.safetensors'}: centroids have dim "
                                  f"{quantizer.centroids.shape[1]}, features {len(FEATURE_NAMES)}")
        return cls(quantizer, f0_config, window_s, path.resolve(),
                   {k: config[k] for k in ("training",) if k in config})


def train_style_tokenizer(corpus_dir: str | Path, out_dir: str | Path, *, split: str = "train",
                          k: int = 32, window_s: float = 1.0, f0_config: F0Config = F0Config(),
                          seed: int = 0, max_hours: float | None = None, threads: int = 1,
                          show_progress: bool = True) -> Path:
    """k-means over the window features of ``split``; saves the tokenizer to ``out_dir``."""
    if k < 2 or window_s <= 0:
        raise ConfigError(f"style tokenizer: need k >= 2 and window_s > 0 (got k={k}, "
                          f"window_s={window_s})")
    start = time.monotonic()
    tracks = read_tracks(corpus_dir, split, f0_config, max_hours,
                         extra=lambda samples, f0: window_features(samples, f0, f0_config.hop_s,
                                                                   window_s),
                         show_progress=show_progress)
    points = np.concatenate([track.extra for track in tracks]).astype(np.float32)
    quantizer = KMeansQuantizer.fit(points, k, seed, threads=threads)
    training = {"corpus": str(Path(corpus_dir).resolve()), "split": split, "seed": seed,
                "utterances": len(tracks), "windows": int(points.shape[0]),
                "seconds": round(time.monotonic() - start, 1)}
    path = StyleTokenizer(quantizer, f0_config, window_s, info={"training": training}).save(out_dir)
    log.info("saved style tokenizer (K=%d) to %s", k, path)
    return path
