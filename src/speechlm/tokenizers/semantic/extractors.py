"""Feature extractors behind one interface: samples (16 kHz) -> (frames, dim) at 50 Hz.

``mfcc`` (39-dim, the GSLM baseline), ``logmel`` (80-dim), ``ssl-tiny`` (our HuBERT-style
encoder, see ssl_tiny.py), ``whisper`` / ``whisper:PATH`` (a frozen Whisper encoder's output,
Mini-Omni's route; see whisper.py), ``whisper+logmel`` / ``whisper:PATH+logmel`` (those states
next to per-utterance normalised log-mel, the demo's default) and ``hf:PATH`` (a local HuggingFace ``HubertModel``,
``Wav2Vec2Model`` or ``Wav2Vec2BertModel`` directory, one hidden layer). Every extractor returns
exactly ``len(samples) // 320`` frames on the grid described in dsp.py.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from speechlm.core.errors import CheckpointError, ConfigError
from speechlm.tokenizers.semantic.dsp import FRAME_RATE, HOP, check_clip, log_mel, mfcc
from speechlm.tokenizers.base import load_hf_model, short_error

log = logging.getLogger(__name__)

HF_MODEL_TYPES = ("hubert", "wav2vec2", "wav2vec2-bert")


def _fit_length(feats: np.ndarray, n: int) -> np.ndarray:
    """Trim or edge-pad (N', D) to exactly n frames."""
    if feats.shape[0] >= n:
        return feats[:n]
    return np.concatenate([feats, np.repeat(feats[-1:], n - feats.shape[0], axis=0)])


class FeatureExtractor:
    """samples -> (len // 320, dim) float32. Subclasses set ``name`` and ``dim``."""

    name: str = ""
    dim: int = 0
    frame_rate: float = FRAME_RATE
    layer: int | None = None

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        samples = check_clip(samples)
        with torch.inference_mode():
            feats = self._features(samples)
        return np.ascontiguousarray(_fit_length(feats, samples.size // HOP), dtype=np.float32)

    def _features(self, samples: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def config(self) -> dict:
        """What config.json records about the extractor."""
        return {"features": self.name, "layer": self.layer, "dim": self.dim}

    def dim_weights(self) -> np.ndarray | None:
        """Per-dimension k-means weights (see :class:`KMeansQuantizer`); None: all equal."""
        return None

    def save(self, out_dir: Path) -> None:
        """Write encoder weights (if any) into a tokenizer directory."""


class MfccExtractor(FeatureExtractor):
    name, dim = "mfcc", 39

    def _features(self, samples: np.ndarray) -> np.ndarray:
        return mfcc(torch.from_numpy(samples)).numpy()


class LogMelExtractor(FeatureExtractor):
    name, dim = "logmel", 80

    def _features(self, samples: np.ndarray) -> np.ndarray:
        return log_mel(torch.from_numpy(samples), n_mels=80).numpy()


class SslTinyExtractor(FeatureExtractor):
    """Features of one hidden layer of a trained :class:`SslTiny` (0 = conv extractor output)."""

    name = "ssl-tiny"

    def __init__(self, model, layer: int) -> None:
        if not 0 <= layer <= model.config.layers:
            raise ConfigError(f"--layer {layer}: ssl-tiny has layers 0..{model.config.layers}")
        self.model = model.eval()
        self.layer = layer
        self.dim = model.config.dim

    def _features(self, samples: np.ndarray) -> np.ndarray:
        return self.model.features(samples, self.layer)

    def config(self) -> dict:
        return {**super().config(), "encoder": self.model.config.to_dict()}

    def save(self, out_dir: Path) -> None:
        from safetensors.torch import save_file

        state = {k: v.contiguous() for k, v in self.model.state_dict().items()}
        save_file(state, str(out_dir / "encoder.safetensors"))

    @classmethod
    def load(cls, tok_dir: Path, config: dict) -> SslTinyExtractor:
        from safetensors.torch import load_file

        from speechlm.tokenizers.semantic.ssl_tiny import SslTiny, SslTinyConfig

        path = tok_dir / "encoder.safetensors"
        try:
            model = SslTiny(SslTinyConfig(**config["encoder"]))
            model.load_state_dict(load_file(str(path)))
        except (OSError, KeyError, TypeError, RuntimeError, ValueError) as err:
            raise CheckpointError(f"{path}: cannot load ssl-tiny encoder ({short_error(err)})") from None
        return cls(model, int(config["layer"]))


class WhisperExtractor(FeatureExtractor):
    """Final-layer states of a frozen Whisper encoder (CTranslate2 int8), 50 Hz.

    The tokenizer directory records the spec and the sha256 of ``model.bin`` instead of a copy of
    the model; loading checks that the model found there is the one the centroids were fitted on.
    """

    name = "whisper"

    def __init__(self, spec: str = "whisper", threads: int = 1, sha256: str | None = None) -> None:
        from speechlm.tokenizers.semantic import whisper

        self.path = whisper.resolve_model_dir(spec, "--features")  # bundled: checked against the pin
        if whisper.parse_whisper_spec(spec, "--features") is None:
            self.spec, self.sha256 = "whisper", whisper.BUNDLED_SHA256
        else:
            self.spec = f"whisper:{self.path}"
            self.sha256 = sha256 or whisper.file_sha256(self.path / "model.bin")
            if sha256:  # loading a tokenizer: the centroids were fitted on exactly this model
                whisper.check_model_dir(self.path, sha256, "the tokenizer's encoder")
        self.model = whisper.load_whisper(spec, threads, option="--features")
        self.dim = int(self._features(np.zeros(800, np.float32)).shape[1])

    def _features(self, samples: np.ndarray) -> np.ndarray:
        from speechlm.tokenizers.semantic.whisper import encoder_states

        return encoder_states(self.model, samples)

    def config(self) -> dict:
        return {**super().config(), "source": self.spec, "model_sha256": self.sha256}


class WhisperLogMelExtractor(FeatureExtractor):
    """Whisper encoder states (D) next to 80-band log-mel normalised per utterance (mean and
    variance per band), each block with the same total weight in k-means.

    Whisper's last layer is speaker-invariant but smooth in time: alone, its K = 100 units run
    across phone boundaries (ABX within 25 %, worse than MFCC's 16 %). The log-mel block brings
    back the 20 ms detail, and per-utterance normalisation takes most of the voice out of it
    (docs/tokenizers.md has the figures). ``spec`` is ``whisper`` or ``whisper:PATH``.
    """

    name = "whisper+logmel"
    MELS = 80

    def __init__(self, spec: str = "whisper", sha256: str | None = None) -> None:
        self.whisper = WhisperExtractor(spec, sha256=sha256)
        self.dim = self.whisper.dim + self.MELS

    def _features(self, samples: np.ndarray) -> np.ndarray:
        mel = log_mel(torch.from_numpy(samples), n_mels=self.MELS).numpy()
        mel = (mel - mel.mean(axis=0)) / (mel.std(axis=0) + 1e-5)
        return np.concatenate([self.whisper(samples), mel], axis=1)

    def dim_weights(self) -> np.ndarray:
        blocks = (self.whisper.dim, self.MELS)
        return np.concatenate([np.full(n, n ** -0.5, np.float32) for n in blocks])

    def config(self) -> dict:
        return {**super().config(), "source": self.whisper.spec, "model_sha256": self.whisper.sha256}


class HFExtractor(FeatureExtractor):
    """A local HF speech SSL model; ``layer`` indexes ``hidden_states`` (0 = before the transformer)."""

    def __init__(self, path: str | Path, layer: int | None = None) -> None:
        self.path = Path(path)
        hf_config, self.model = load_hf_model(self.path, HF_MODEL_TYPES)
        n_layers = hf_config.num_hidden_layers
        self.layer = n_layers // 2 if layer is None else int(layer)
        if not 0 <= self.layer <= n_layers:
            raise ConfigError(f"--layer {self.layer}: {self.path} has hidden states 0..{n_layers}")
        self.model_type = hf_config.model_type
        self.dim = hf_config.hidden_size
        self.name = "hf"
        self.processor = None
        if (self.path / "preprocessor_config.json").is_file():
            from transformers import AutoFeatureExtractor

            self.processor = AutoFeatureExtractor.from_pretrained(self.path, local_files_only=True)
        elif self.model_type == "wav2vec2-bert":
            raise CheckpointError(f"{self.path}: wav2vec2-bert needs preprocessor_config.json "
                                  "(its fbank feature extractor)")

    def _features(self, samples: np.ndarray) -> np.ndarray:
        if self.model_type == "wav2vec2-bert":
            inputs = self.processor(samples, sampling_rate=16000, return_tensors="pt")
            out = self.model(input_features=inputs["input_features"], output_hidden_states=True)
        else:
            # pad so the 400-sample receptive field of the conv stack yields len // 320 frames
            x = np.pad(samples, (40, 40))
            normalize = True if self.processor is None else bool(getattr(self.processor, "do_normalize", True))
            if normalize:
                x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
            out = self.model(torch.from_numpy(x.astype(np.float32))[None], output_hidden_states=True)
        return out.hidden_states[self.layer][0].numpy()

    def config(self) -> dict:
        return {**super().config(), "features": "hf", "source": str(self.path.resolve()),
                "model_type": self.model_type}

    def save(self, out_dir: Path) -> None:
        """Copy the model into TOK/encoder/ (safetensors) so the tokenizer is self-contained."""
        self.model.save_pretrained(out_dir / "encoder", safe_serialization=True)
        if self.processor is not None:
            self.processor.save_pretrained(out_dir / "encoder")


def make_extractor(features: str, layer: int | None = None) -> FeatureExtractor:
    """An untrained extractor for ``mfcc``, ``logmel`` or ``hf:PATH`` (ssl-tiny is trained)."""
    if features == "mfcc":
        return MfccExtractor()
    if features == "logmel":
        return LogMelExtractor()
    if features.startswith("hf:"):
        return HFExtractor(features[3:], layer)
    if features.startswith("whisper") and features.endswith("+logmel"):
        if layer is not None:
            raise ConfigError(f"--layer {layer}: {features} uses the Whisper encoder's last layer")
        return WhisperLogMelExtractor(features[: -len("+logmel")])
    if features == "whisper" or features.startswith("whisper:"):
        if layer is not None:
            raise ConfigError(f"--layer {layer}: whisper features are the encoder's last layer "
                              "(CTranslate2 returns no other)")
        return WhisperExtractor(features)
    raise ConfigError(f"--features {features!r}: expected mfcc, logmel, ssl-tiny, whisper, "
                      "whisper:PATH, whisper+logmel, whisper:PATH+logmel or hf:PATH")


def load_extractor(tok_dir: Path, config: dict) -> FeatureExtractor:
    """Rebuild the extractor recorded in a tokenizer's config.json."""
    kind = config.get("features")
    if kind == "mfcc":
        return MfccExtractor()
    if kind == "logmel":
        return LogMelExtractor()
    if kind == "ssl-tiny":
        return SslTinyExtractor.load(tok_dir, config)
    if kind == "hf":
        return HFExtractor(tok_dir / "encoder", config.get("layer"))
    if kind == "whisper":
        return WhisperExtractor(config.get("source", "whisper"), sha256=config.get("model_sha256"))
    if kind == "whisper+logmel":
        return WhisperLogMelExtractor(config.get("source", "whisper"), config.get("model_sha256"))
    raise CheckpointError(f"{tok_dir / 'config.json'}: unknown features {kind!r}")
