"""A codec as a directory loaded by path: ``encode(samples) -> (K, N) codes``, ``decode(codes)``.

Directory layout (the tokenizer contract)::

    CODEC/config.json          format, CodecConfig, frame rate, bitrates, distillation teacher, training info
    CODEC/model.safetensors    encoder, quantizer (codebooks + EMA state), decoder, distillation head
    CODEC/checkpoints/         (training only) resumable trainer state, see train.py

``load_codec("hf:PATH")`` wraps a local HuggingFace ``EncodecModel`` / ``MimiModel`` directory
behind the same interface, for users who have a pretrained codec.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from speechlm.core.errors import AudioError, CheckpointError, DataError
from speechlm.core.files import read_json
from speechlm.data.audio import SAMPLE_RATE, resample
from speechlm.tokenizers.base import load_hf_model
from speechlm.tokenizers.codec.model import CodecConfig, CodecModel
from speechlm.tokenizers.semantic.dsp import check_clip

FORMAT = "speechlm-codec"
VERSION = 2  # 2: decoder choice (istft | seanet); version-1 directories are seanet
HF_MODEL_TYPES = ("encodec", "mimi")


def check_codes(codes: np.ndarray, n_codebooks: int, codebook_size: int, source: str) -> np.ndarray:
    """(k, N) integer codes with 1 <= k <= n_codebooks and values in 0..V-1, or ``DataError``."""
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[1] == 0:
        raise DataError(f"{source}: expected codes of shape (codebooks, frames), got {codes.shape}")
    if codes.dtype.kind not in "iu":
        raise DataError(f"{source}: codes must be integers, got dtype {codes.dtype}")
    if not 1 <= codes.shape[0] <= n_codebooks:
        raise DataError(f"{source}: {codes.shape[0]} codebooks, but this codec has 1..{n_codebooks}")
    if codes.min() < 0 or codes.max() >= codebook_size:
        raise DataError(f"{source}: codes must be in 0..{codebook_size - 1}, found "
                        f"{codes.min()}..{codes.max()}")
    return codes.astype(np.int64)


class Codec:
    """A trained speechlm codec: 16 kHz samples <-> (K, N) int64 codes at ``frame_rate``.

    >>> codec = load_codec("runs/codec")                      # doctest: +SKIP
    >>> codes = codec.encode(samples)                         # (8, N), 50 Hz
    >>> audio = codec.decode(codes[:2])                       # the first 2 codebooks only
    """

    sample_rate = SAMPLE_RATE

    def __init__(self, model: CodecModel, path: Path | None = None, info: dict | None = None) -> None:
        self.model = model.eval()
        self.config = model.config
        self.path = path
        self.info = dict(info or {})

    @property
    def n_codebooks(self) -> int:
        return self.config.codebooks

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    vocab_size = codebook_size

    @property
    def frame_rate(self) -> float:
        return self.config.frame_rate

    @property
    def hop(self) -> int:
        return self.config.hop

    def bitrate(self, n_codebooks: int | None = None) -> float:
        return self.config.bitrate(n_codebooks)

    def _prepare(self, samples: np.ndarray, source: str) -> torch.Tensor:
        samples = check_clip(samples, source)
        if samples.size < self.hop:
            raise AudioError(f"{source}: audio is {samples.size} samples, shorter than one codec frame "
                             f"({self.hop} samples = {1000 * self.hop / SAMPLE_RATE:.0f} ms)")
        padded = np.pad(samples, (0, -samples.size % self.hop))
        return torch.from_numpy(padded)[None, None]                            # (1, 1, L)

    def encode(self, samples: np.ndarray, n_codebooks: int | None = None,
               source: str = "audio") -> np.ndarray:
        """(T,) float32 at 16 kHz -> (k, ceil(T / hop)) int64 codes (k = all codebooks by default)."""
        k = self.n_codebooks if n_codebooks is None else n_codebooks
        if not 1 <= k <= self.n_codebooks:
            raise DataError(f"{source}: asked for {k} codebooks, this codec has 1..{self.n_codebooks}")
        return self.model.encode(self._prepare(samples, source), k)[0].numpy()

    def decode(self, codes: np.ndarray, source: str = "codes") -> np.ndarray:
        """(k, N) codes of the first k codebooks -> (N * hop,) float32 samples at 16 kHz."""
        codes = check_codes(codes, self.n_codebooks, self.codebook_size, source)
        wav = self.model.decode(torch.from_numpy(codes)[None])[0, 0]
        return wav.clamp(-1.0, 1.0).numpy().astype(np.float32)

    def code_vectors(self, codes: np.ndarray) -> np.ndarray:
        """(k, N) codes -> (k, N, dim) quantizer entries (what the speaker probe pools)."""
        return self.model.code_vectors(torch.from_numpy(codes)[None])[:, 0].numpy()

    def config_dict(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "model": self.config.to_dict(),
                "sample_rate": SAMPLE_RATE, "frame_rate": self.frame_rate, "hop": self.hop,
                "codebooks": self.n_codebooks, "codebook_size": self.codebook_size,
                "bitrate": {str(k): self.bitrate(k) for k in range(1, self.n_codebooks + 1)},
                **self.info}

    def save(self, out_dir: str | Path) -> Path:
        """Write model.safetensors, then config.json, each by temp file + rename: a crash leaves
        the previous complete pair or no config.json at all (never a config with stale weights)."""
        from safetensors.torch import save_file

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / ".tmp-model.safetensors"
        save_file({k: v.contiguous() for k, v in self.model.state_dict().items()}, str(tmp))
        os.replace(tmp, out / "model.safetensors")
        tmp = out / ".tmp-config.json"
        tmp.write_text(json.dumps(self.config_dict(), indent=2))
        os.replace(tmp, out / "config.json")
        self.path = out.resolve()
        return self.path


def load_codec(spec: str | Path) -> Codec | HFCodec:
    """A codec directory, or ``hf:PATH`` for a local HF Encodec/Mimi model; ``CheckpointError``
    naming the path when it is missing, corrupt or of another kind."""
    if str(spec).startswith("hf:"):
        return HFCodec(str(spec)[3:])
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(spec)
    if not path.is_dir():
        raise CheckpointError(f"{path}: codec directory not found")
    config_path = path / "config.json"
    meta = read_json(config_path, CheckpointError, "missing (no config.json: not a codec directory)")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{config_path}: not a speechlm codec (format != {FORMAT!r})")
    try:
        model_dict = meta["model"]
        if meta.get("version", 1) == 1:  # written before the decoder became a choice
            model_dict = {"decoder": "seanet", **model_dict}
        config = CodecConfig.from_dict(model_dict)
        problems = config.validate()
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{config_path}: corrupt codec config ({err})") from None
    if problems:
        raise CheckpointError(f"{config_path}: " + "; ".join(problems))
    model = CodecModel(config)
    weights = path / "model.safetensors"
    try:
        model.load_state_dict(load_file(str(weights)))
    except (SafetensorError, OSError, RuntimeError) as err:
        raise CheckpointError(f"{weights}: cannot load codec weights ({str(err).splitlines()[0][:200]})") from None
    info = {k: meta[k] for k in ("distill", "training") if k in meta}
    return Codec(model, path.resolve(), info)


class HFCodec:
    """A local HuggingFace ``EncodecModel`` or ``MimiModel`` behind the :class:`Codec` interface.

    Audio is resampled from 16 kHz to the model's rate and back. For Encodec the number of
    codebooks is the one its largest ``target_bandwidths`` entry allows; ``encode(n_codebooks=k)`` keeps the
    first k (residual order), and ``decode`` accepts any prefix of the codebooks.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        hf_config, self.model = load_hf_model(self.path, HF_MODEL_TYPES)
        self.model_type = hf_config.model_type
        self.model_rate = int(hf_config.sampling_rate)
        self.frame_rate = float(hf_config.frame_rate)
        self.codebook_size = int(hf_config.codebook_size)
        self.vocab_size = self.codebook_size
        self.n_codebooks = int(hf_config.num_quantizers)
        if self.n_codebooks < 1:
            raise CheckpointError(f"{self.path}: the config allows no codebooks")
        self.bandwidth = max(getattr(hf_config, "target_bandwidths", None) or [0.0])  # encodec only
        self.hop = int(round(self.model_rate / self.frame_rate))
        self.info = {"source": str(self.path.resolve()), "model_type": self.model_type}

    sample_rate = SAMPLE_RATE

    def bitrate(self, n_codebooks: int | None = None) -> float:
        k = self.n_codebooks if n_codebooks is None else n_codebooks
        return self.frame_rate * k * float(np.log2(self.codebook_size))

    @torch.inference_mode()
    def encode(self, samples: np.ndarray, n_codebooks: int | None = None,
               source: str = "audio") -> np.ndarray:
        k = self.n_codebooks if n_codebooks is None else n_codebooks
        if not 1 <= k <= self.n_codebooks:
            raise DataError(f"{source}: asked for {k} codebooks, this codec has 1..{self.n_codebooks}")
        samples = check_clip(samples, source)
        x = resample(samples, SAMPLE_RATE, self.model_rate)
        if x.size < self.hop:
            raise AudioError(f"{source}: audio is shorter than one codec frame ({self.hop} samples at "
                             f"{self.model_rate} Hz)")
        x = torch.from_numpy(np.pad(x, (0, -x.size % self.hop)))[None, None]     # (1, 1, L)
        if self.model_type == "encodec":
            codes = self.model.encode(x, bandwidth=self.bandwidth).audio_codes[0, 0]  # (K, N)
        else:
            codes = self.model.encode(x, num_quantizers=self.n_codebooks).audio_codes[0]
        return codes[:k].numpy().astype(np.int64)

    @torch.inference_mode()
    def decode(self, codes: np.ndarray, source: str = "codes") -> np.ndarray:
        codes = torch.from_numpy(check_codes(codes, self.n_codebooks, self.codebook_size, source))
        if self.model_type == "encodec":
            audio = self.model.decode(codes[None, None], [None]).audio_values[0, 0]
        else:
            audio = self.model.decode(codes[None]).audio_values[0, 0]
        return np.clip(resample(audio.numpy().astype(np.float32), self.model_rate, SAMPLE_RATE), -1, 1)
