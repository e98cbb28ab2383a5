"""pGSLM's prosody streams: one duration token and one F0 token per deduplicated unit.

Recipe (fairseq ``examples/textless_nlp/pgslm``): a unit's F0 is the mean of its voiced frames;
units without a voiced frame get their log-F0 by linear interpolation between voiced neighbours;
the speaker's mean log-F0 is subtracted (an unseen speaker's utterance uses its own mean); the
result is quantised into 32 bins at equal-mass quantiles of the voiced training values. Durations
are exact up to ``exact_durations`` frames and log-binned beyond (:func:`duration_bins`).

Directory layout::

    TOK/config.json        format, kind "unit-prosody", F0 config, frame_rate, bins, streams
    TOK/bins.safetensors   f0_edges, f0_centers (normalised log-F0), duration_edges, duration_centers
    TOK/speakers.json      mean log-F0 per training speaker + global mean

>>> tok = load_prosody_tokenizer("runs/prosody")                  # doctest: +SKIP
>>> p = tok.encode(samples, speaker="spk1")  # units from the recorded unit tokenizer  # doctest: +SKIP
>>> p.streams().shape                        # (3, U): units, duration tokens, F0 tokens  # doctest: +SKIP
>>> hz = tok.decode_f0(p.f0_tokens, p.offset)                     # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from speechlm.core.checkpoint import atomic_dir
from speechlm.core.errors import CheckpointError, ConfigError, DataError
from speechlm.tokenizers.prosody.bins import Bins, duration_bins, fit_quantiles
from speechlm.tokenizers.prosody.common import (fit_speaker_norm, load_tensors, read_speaker_norm,
                                                read_tracks, save_common)
from speechlm.tokenizers.prosody.f0 import (F0Config, SpeakerNorm, extract_f0, interpolate_unvoiced,
                                            unit_f0)

log = logging.getLogger(__name__)

KIND = "unit-prosody"
STREAMS = ("units", "duration", "f0")


@dataclass(frozen=True)
class UnitProsody:
    """pGSLM streams of one utterance, all aligned with its deduplicated units."""

    units: np.ndarray            # (U,) unit ids
    durations: np.ndarray        # (U,) frames per unit
    duration_tokens: np.ndarray  # (U,)
    f0_tokens: np.ndarray        # (U,) bin of normalised log-F0; ``unvoiced_token`` if no F0
    f0_hz: np.ndarray            # (U,) measured mean voiced F0 per unit, 0 = unvoiced
    offset: float                # mean log-F0 that was subtracted

    def streams(self) -> np.ndarray:
        """(3, U) int64: units, duration tokens, F0 tokens (the order of :data:`STREAMS`)."""
        return np.stack([self.units, self.duration_tokens, self.f0_tokens]).astype(np.int64)


@dataclass
class UnitProsodyTokenizer:
    f0_bins: Bins
    duration: Bins
    norm: SpeakerNorm
    f0_config: F0Config
    frame_rate: float
    interpolate: bool = True
    unit_tokenizer: Path | None = None  # used by encode() when no units are given
    path: Path | None = None
    info: dict = field(default_factory=dict)

    kind = KIND

    @property
    def unvoiced_token(self) -> int:
        """Units with no F0 at all (nothing voiced in the utterance, or ``interpolate`` off)."""
        return self.f0_bins.n

    @property
    def vocab_sizes(self) -> dict[str, int]:
        return {"duration": self.duration.n, "f0": self.f0_bins.n + 1}

    def encode(self, samples: np.ndarray, speaker: str | None = None,
               units: tuple[np.ndarray, np.ndarray] | None = None) -> UnitProsody:
        """Streams for ``samples``; ``units`` = (units, durations) from a unit tokenizer at this
        tokenizer's frame rate, or None to run the unit tokenizer it was fitted with."""
        if units is None:
            units = self.load_units().encode(samples)
        return self.encode_f0(extract_f0(samples, self.f0_config), *units, speaker=speaker)

    def encode_f0(self, f0: np.ndarray, units: np.ndarray, durations: np.ndarray,
                  speaker: str | None = None) -> UnitProsody:
        """Like :meth:`encode` from an F0 track already extracted with ``self.f0_config``."""
        durations = np.asarray(durations, dtype=np.int64)
        f0_hz = unit_f0(f0, self.f0_config.hop_s, durations, self.frame_rate)
        offset = self.norm.offset(speaker, f0)
        return UnitProsody(np.asarray(units, dtype=np.int64), durations,
                           self.duration.encode(durations), self._f0_tokens(f0_hz, offset), f0_hz,
                           offset)

    def _f0_tokens(self, f0_hz: np.ndarray, offset: float) -> np.ndarray:
        voiced = f0_hz > 0
        logf0 = np.log(np.where(voiced, f0_hz, 1.0)) - offset
        filled = interpolate_unvoiced(logf0, voiced) if self.interpolate else None
        if filled is not None:
            return self.f0_bins.encode(filled)
        return np.where(voiced, self.f0_bins.encode(logf0), self.unvoiced_token)

    def decode_f0(self, f0_tokens: np.ndarray, offset: float) -> np.ndarray:
        """Per-unit F0 in Hz (0 for the unvoiced token)."""
        tokens = np.asarray(f0_tokens, dtype=np.int64)
        voiced = tokens < self.f0_bins.n
        return np.where(voiced, np.exp(self.f0_bins.decode(np.minimum(tokens, self.f0_bins.n - 1))
                                       + offset), 0.0)

    def decode_durations(self, duration_tokens: np.ndarray) -> np.ndarray:
        """Frames per unit (the rounded mean training duration of each bin, at least 1)."""
        return np.maximum(1, np.round(self.duration.decode(duration_tokens))).astype(np.int64)

    def contour(self, f0_tokens: np.ndarray, durations: np.ndarray, offset: float) -> np.ndarray:
        """F0 in Hz per frame at ``frame_rate``: each unit's decoded F0 held for its duration."""
        return np.repeat(self.decode_f0(f0_tokens, offset), np.asarray(durations, dtype=np.int64))

    def load_units(self):
        """The unit tokenizer this tokenizer was fitted with (its frame rate checked)."""
        from speechlm.tokenizers.semantic.tokenizer import load_tokenizer

        if self.unit_tokenizer is None:
            raise ConfigError("this prosody tokenizer records no unit tokenizer: pass units=")
        tok = load_tokenizer(self.unit_tokenizer)
        if tok.frame_rate != self.frame_rate:
            raise CheckpointError(f"{self.unit_tokenizer}: unit tokenizer runs at {tok.frame_rate} Hz, "
                                  f"the prosody tokenizer at {self.frame_rate} Hz")
        return tok

    def config(self) -> dict:
        return {"kind": KIND, "f0": self.f0_config.to_dict(), "frame_rate": self.frame_rate,
                "interpolate": self.interpolate, "f0_bins": self.f0_bins.n,
                "duration_bins": self.duration.n, "unvoiced_token": self.unvoiced_token,
                "unit_tokenizer": str(self.unit_tokenizer) if self.unit_tokenizer else None,
                "streams": [{"name": "units", "frame_rate": self.frame_rate}]
                + [{"name": k, "vocab_size": v, "aligned": True}
                   for k, v in self.vocab_sizes.items()],
                **self.info}

    def save(self, out_dir: str | Path) -> Path:
        from safetensors.numpy import save_file

        with atomic_dir(out_dir) as tmp:
            save_file({"f0_edges": self.f0_bins.edges, "f0_centers": self.f0_bins.centers,
                       "duration_edges": self.duration.edges,
                       "duration_centers": self.duration.centers}, str(tmp / "bins.safetensors"))
            save_common(tmp, self.config(), self.norm)
        self.path = Path(out_dir).resolve()
        return self.path

    @classmethod
    def load(cls, path: Path, config: dict) -> UnitProsodyTokenizer:
        arrays = load_tensors(path / "bins.safetensors", ("f0_edges", "f0_centers",
                              "duration_edges", "duration_centers"), "the F0 and duration bin edges")
        f0_bins = Bins(arrays["f0_edges"], arrays["f0_centers"])
        duration = Bins(arrays["duration_edges"], arrays["duration_centers"])
        for bins, name in ((f0_bins, "F0"), (duration, "duration")):
            try:
                bins.check(f"{path / 'bins.safetensors'} ({name})")
            except DataError as err:
                raise CheckpointError(str(err)) from None
        try:
            f0_config = F0Config(**config["f0"])
            frame_rate = float(config["frame_rate"])
        except (KeyError, TypeError, ValueError, ConfigError) as err:
            raise CheckpointError(f"{path / 'config.json'}: bad F0 settings ({err})") from None
        unit_tok = config.get("unit_tokenizer")
        return cls(f0_bins, duration, read_speaker_norm(path), f0_config, frame_rate,
                   bool(config.get("interpolate", True)), Path(unit_tok) if unit_tok else None,
                   path.resolve(), {k: config[k] for k in ("training",) if k in config})


def train_unit_prosody(corpus_dir: str | Path, unit_tokenizer: str | Path, out_dir: str | Path, *,
                       split: str = "train", f0_bins: int = 32, interpolate: bool = True,
                       exact_durations: int = 20, max_duration: int = 100, duration_bins_n: int = 32,
                       f0_config: F0Config = F0Config(), max_hours: float | None = None,
                       show_progress: bool = True) -> Path:
    """Fit speaker means, F0 quantiles and duration bins on ``split``; save to ``out_dir``."""
    from speechlm.tokenizers.semantic.tokenizer import load_tokenizer

    start = time.monotonic()
    units_tok = load_tokenizer(unit_tokenizer)
    duration_bins(np.ones(1), exact_durations, max_duration, duration_bins_n)  # fail before reading
    if f0_bins < 2:
        raise ConfigError(f"f0_bins={f0_bins}: need at least 2")
    tracks = read_tracks(corpus_dir, split, f0_config, max_hours,
                         extra=lambda samples, _: units_tok.encode(samples)[1],
                         show_progress=show_progress)
    norm = fit_speaker_norm(tracks)
    logf0 = []
    for track in tracks:
        hz = unit_f0(track.f0, f0_config.hop_s, track.extra, units_tok.frame_rate)
        logf0.append(np.log(hz[hz > 0]) - norm.offset(track.speaker, track.f0))
    all_durations = np.concatenate([track.extra for track in tracks])
    tok = UnitProsodyTokenizer(
        fit_quantiles(np.concatenate(logf0), f0_bins),
        duration_bins(all_durations, exact_durations, max_duration, duration_bins_n),
        norm, f0_config, units_tok.frame_rate, interpolate, units_tok.path,
        info={"training": {"corpus": str(Path(corpus_dir).resolve()), "split": split,
                           "utterances": len(tracks), "units": int(all_durations.size),
                           "clipped_durations": int((all_durations > max_duration).sum()),
                           "seconds": round(time.monotonic() - start, 1)}})
    path = tok.save(out_dir)
    log.info("saved unit-prosody tokenizer to %s", path)
    return path
