"""A trained unit vocoder as a directory, and ``synthesize``.

Directory layout::

    VOC/config.json         format, version, VocoderConfig, tokenizer (absolute path), speakers,
                            training info
    VOC/model.safetensors   acoustic model + generator weights, speaker d-vectors, per-unit mean
                            durations

``synthesize(units, durations=None, speaker=None, streams=None)`` takes deduplicated units with
their run lengths in tokenizer frames (or none: each unit then lasts its mean training run).
``speaker`` is None (the average voice), a training speaker's name, an int (0 = average voice,
i = the i-th training speaker), a reference clip (1-D float32 16 kHz samples) or a d-vector
(float array of shape ``(speaker_dim,)``).
"""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path
from typing import Union

import numpy as np
import torch
from torch import nn

from speechlm.core.checkpoint import atomic_dir
from speechlm.core.errors import CheckpointError, ConfigError, DataError
from speechlm.core.files import read_artefact_dir
from speechlm.data.audio import SAMPLE_RATE
from speechlm.tokenizers.semantic.dsp import mel_filterbank
from speechlm.vocoder.model import (MEL_NFFT, N_MELS, AcousticModel, MelGenerator, VocoderConfig,
                                    griffin_lim, pitch_to_f0)

log = logging.getLogger(__name__)

FORMAT = "speechlm-unit-vocoder"
VERSION = 2
Speaker = Union[None, str, int, np.ndarray]


@functools.cache
def speaker_encoder():
    """The Resemblyzer encoder, loaded once per process (only reference clips need it)."""
    from speechlm.vocoder.speaker import SpeakerEncoder

    return SpeakerEncoder()


class UnitVocoder(nn.Module):
    """units + durations (+ speaker, + streams) -> 16 kHz float32 waveform."""

    def __init__(self, config: VocoderConfig, speakers: list[str], tokenizer_dir: str | None = None,
                 info: dict | None = None) -> None:
        super().__init__()
        self.config = config
        self.speakers = list(speakers)
        self.tokenizer_dir = tokenizer_dir
        self.info = dict(info or {})
        self.acoustic = AcousticModel(config)
        self.generator = MelGenerator(config)
        # d-vector per training speaker (row i = speakers[i]); zeros when speaker_dim = 0
        self.register_buffer("speaker_table", torch.zeros(len(speakers), max(config.speaker_dim, 1)))
        self.register_buffer("mean_durations", torch.ones(config.vocab_size, dtype=torch.int64))
        self.register_buffer("fbank", mel_filterbank(N_MELS, MEL_NFFT), persistent=False)

    @property
    def sample_rate(self) -> int:
        return SAMPLE_RATE

    @property
    def streams(self) -> list[str]:
        """Names of the extra per-frame streams ``synthesize`` needs besides units."""
        return [name for name, _ in self.config.streams]

    def speaker_vector(self, speaker: Speaker) -> torch.Tensor | None:
        """(speaker_dim,) conditioning vector; zeros = the average voice."""
        dim = self.config.speaker_dim
        if dim == 0:
            if speaker is not None:
                raise ConfigError("this vocoder was trained without speaker conditioning "
                                  "(speaker_embedding=false): speaker must be None")
            return None
        if speaker is None:
            return torch.zeros(dim)
        if isinstance(speaker, (int, np.integer)) and not isinstance(speaker, bool):
            if not 0 <= int(speaker) <= len(self.speakers):
                raise ConfigError(f"speaker index {speaker} out of range 0..{len(self.speakers)} "
                                  "(0 = average voice)")
            return self.speaker_table[int(speaker) - 1].clone() if speaker else torch.zeros(dim)
        if isinstance(speaker, str):
            if speaker not in self.speakers:
                raise ConfigError(f"unknown speaker {speaker!r}; the vocoder knows {self.speakers} "
                                  "(or None for the average voice, or a reference clip)")
            return self.speaker_table[self.speakers.index(speaker)].clone()
        array = np.asarray(speaker, dtype=np.float32)
        if array.shape == (dim,):
            if not np.isfinite(array).all():
                raise DataError("speaker embedding has NaN/Inf values")
            return torch.from_numpy(array.copy())
        if array.ndim == 1:
            return torch.from_numpy(speaker_encoder().embed(array))
        raise DataError(f"speaker: expected a name, an index, a 1-D reference clip or a "
                        f"({dim},) embedding, got an array of shape {array.shape}")

    def _inputs(self, units, durations, streams) -> tuple[torch.Tensor, torch.Tensor, dict]:
        units = np.asarray(units, dtype=np.int64).reshape(-1)
        if units.size == 0:
            raise DataError("synthesize: empty unit sequence")
        if units.min() < 0 or units.max() >= self.config.vocab_size:
            raise DataError(f"synthesize: units must be in 0..{self.config.vocab_size - 1}, got "
                            f"{units.min()}..{units.max()}")
        if durations is None:
            durations = self.mean_durations.numpy()[units]
        durations = np.asarray(durations, dtype=np.int64).reshape(-1)
        if durations.shape != units.shape or durations.min() < 1:
            raise DataError(f"synthesize: durations must be positive and match units "
                            f"({durations.shape} vs {units.shape})")
        frames = int(durations.sum())
        given = dict(streams or {})
        missing = [n for n in self.streams if n not in given]
        unknown = [n for n in given if n not in self.streams]
        if missing or unknown:
            raise DataError(f"synthesize: this vocoder takes streams {self.streams}; missing "
                            f"{missing}, unexpected {unknown}")
        tensors = {}
        for name, dim in self.config.streams:
            values = np.asarray(given[name], dtype=np.float32).reshape(len(given[name]), -1)
            if values.shape[0] == units.size and values.shape[0] != frames:  # one row per unit
                values = np.repeat(values, durations, axis=0)
            if values.shape != (frames, dim) or not np.isfinite(values).all():
                raise DataError(f"synthesize: stream {name!r} must be finite, shaped "
                                f"({units.size} units or {frames} frames, {dim}); got {values.shape}")
            tensors[name] = torch.from_numpy(values)[None]
        return torch.from_numpy(units)[None], torch.from_numpy(durations)[None], tensors

    def _ensure_eval(self) -> None:
        """Dropout off; ``eval()`` only when needed: it walks every module (~1 ms a call, paid
        on every frame a streaming session vocodes)."""
        if self.training:
            self.eval()

    @torch.inference_mode()
    def features(self, units, durations=None, speaker: Speaker = None,
                 streams=None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(F, 80) predicted log-mel at 100 Hz and, for a source vocoder, (F,) predicted F0 in
        Hz (0 = unvoiced; None otherwise)."""
        self._ensure_eval()
        u, d, s = self._inputs(units, durations, streams)
        vec = self.speaker_vector(speaker)
        mel, pitch = self.acoustic(u, d, None if vec is None else vec[None], s)
        return mel[0], None if pitch is None else pitch_to_f0(pitch[0])

    def mel(self, units, durations=None, speaker: Speaker = None, streams=None) -> torch.Tensor:
        """(F, 80) predicted log-mel at 100 Hz."""
        return self.features(units, durations, speaker, streams)[0]

    @torch.inference_mode()
    def synthesize(self, units, durations=None, speaker: Speaker = None, streams=None,
                   griffin_lim_baseline: bool = False) -> np.ndarray:
        """Deduplicated units with ``durations`` in tokenizer frames (None: mean training run
        lengths) -> 16 kHz float32 samples, ``sum(durations) * hop`` long, peak <= 0.95.
        ``griffin_lim_baseline`` swaps the generator for Griffin-Lim on the same mel."""
        mel, f0 = self.features(units, durations, speaker, streams)
        return self.vocode(mel, griffin_lim_baseline, f0=f0)

    @torch.inference_mode()
    def vocode(self, mel: torch.Tensor, griffin_lim_baseline: bool = False,
               f0: torch.Tensor | np.ndarray | None = None) -> np.ndarray:
        """(F, 80) log-mel at 100 Hz -> F * 160 samples (peak <= 0.95), by the generator or by
        Griffin-Lim; given the mel of real speech this is copy synthesis, the vocoder alone. A
        source vocoder (``config.source``) also needs ``f0``: (F,) Hz per mel frame, 0 =
        unvoiced (for real speech, :func:`speechlm.tokenizers.prosody.f0.extract_f0`)."""
        self._ensure_eval()
        if griffin_lim_baseline:
            return griffin_lim(mel.numpy())
        if self.config.source:
            if f0 is None or len(f0) != mel.shape[0]:
                raise DataError(f"vocode: this source-filter vocoder needs f0 with one value per "
                                f"mel frame ({mel.shape[0]}), got "
                                f"{'none' if f0 is None else len(f0)}")
            f0 = torch.as_tensor(np.asarray(f0, dtype=np.float32))[None]
        wav = self.generator(mel[None], f0)[0]
        return (wav / max(1.0, float(wav.abs().max()) / 0.95)).numpy().astype(np.float32)

    def save(self, out_dir: str | Path) -> Path:
        """Write the directory atomically (temp dir + rename)."""
        with atomic_dir(out_dir) as tmp:
            write_vocoder_files(self, tmp)
        return Path(out_dir).resolve()


def write_vocoder_files(voc: UnitVocoder, folder: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in voc.state_dict().items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(
        {"format": FORMAT, "version": VERSION, "config": voc.config.to_dict(),
         "speakers": voc.speakers, "tokenizer": voc.tokenizer_dir, "sample_rate": SAMPLE_RATE,
         **voc.info}, indent=2), encoding="utf-8")


def load_vocoder(path: str | Path) -> UnitVocoder:
    """Load a vocoder directory; ``CheckpointError`` naming the path if missing or corrupt."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    config_path = path / "config.json"
    meta = read_artefact_dir(path, "vocoder", weights=("model.safetensors",), fmt=FORMAT)
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{config_path}: vocoder format version {meta.get('version', 1)}, this "
                              f"speechlm reads version {VERSION}; retrain it with `speechlm vocoder train`")
    try:
        config = VocoderConfig(**meta["config"])
        problems = config.validate()
        if problems:
            raise ValueError("; ".join(problems))
        info = {k: v for k, v in meta.items()
                if k not in ("format", "version", "config", "speakers", "tokenizer", "sample_rate")}
        voc = UnitVocoder(config, list(meta["speakers"]), meta.get("tokenizer"), info)
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{config_path}: corrupt vocoder config ({err})") from None
    weights = path / "model.safetensors"
    try:
        voc.load_state_dict(load_file(str(weights)))
    except (SafetensorError, OSError, RuntimeError) as err:
        raise CheckpointError(f"{weights}: cannot load vocoder weights ({str(err).splitlines()[0]})") from None
    return voc.eval()


def resynthesize(tok, voc: UnitVocoder, samples: np.ndarray, speaker: Speaker = None,
                 griffin_lim_baseline: bool = False, streams=None) -> np.ndarray:
    """Audio -> units (deduplicated, with durations) -> audio. Pass ``speaker=samples`` to keep
    the input's voice (its d-vector), None for the average voice."""
    if voc.config.vocab_size != tok.vocab_size or abs(voc.config.frame_rate - tok.frame_rate) > 1e-6:
        raise CheckpointError(f"vocoder expects K={voc.config.vocab_size} units at "
                              f"{voc.config.frame_rate:g} Hz but the tokenizer {tok.path} gives "
                              f"K={tok.vocab_size} at {tok.frame_rate:g} Hz")
    units, durations = tok.encode(samples, dedup=True)
    return voc.synthesize(units, durations, speaker=speaker, streams=streams,
                          griffin_lim_baseline=griffin_lim_baseline)
