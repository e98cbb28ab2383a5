"""Speaker embeddings and similarity with Resemblyzer's pretrained speaker encoder.

Why this model: it is the only pretrained speaker encoder we can install offline (the
``resemblyzer`` wheel ships ``pretrained.pt``, 17 MB, trained on LibriSpeech + VoxCeleb 1/2 with
the GE2E loss; Wan et al. 2018), it runs on CPU faster than real time (a 3-layer LSTM over 40-band
mels) and it is what VALL-E-style papers' "SIM" metrics were first computed with before WavLM-TDNN.
Its embeddings are L2-normalised, so similarity is a dot product (cosine), in [0, 1] in practice
because of the final ReLU.

We reuse the package's own preprocessing (``preprocess_wav``: volume normalisation to -30 dBFS
and webrtcvad trimming of long silences) and its network class, but load the weights ourselves
with ``torch.load(weights_only=True)`` (the package's constructor calls plain ``torch.load``).
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from speechlm.core.errors import AudioError, CheckpointError
from speechlm.data.audio import SAMPLE_RATE

_ENCODERS: dict = {}  # one encoder per process (loading takes ~0.1 s)


def _weights_path() -> Path:
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError("resemblyzer is not installed (pip install resemblyzer==0.1.4)")
    return Path(next(iter(spec.submodule_search_locations))) / "pretrained.pt"


def _resemblyzer():
    with warnings.catch_warnings():  # scipy.ndimage.morphology / pkg_resources deprecations
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        import resemblyzer
    return resemblyzer


class SpeakerEncoder:
    """``embed(samples_16k) -> (256,)`` unit-norm speaker embedding (utterance = mean of 1.6 s partials)."""

    dim = 256

    def __init__(self, weights: str | Path | None = None) -> None:
        resemblyzer = _resemblyzer()
        path = Path(weights) if weights else _weights_path()
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)["model_state"]
        except (OSError, KeyError, RuntimeError) as err:
            raise CheckpointError(f"{path}: cannot load the speaker encoder ({err})") from None
        encoder = resemblyzer.VoiceEncoder.__new__(resemblyzer.VoiceEncoder)
        nn.Module.__init__(encoder)  # the class's own __init__ would torch.load without weights_only
        hp = resemblyzer.hparams
        encoder.lstm = nn.LSTM(hp.mel_n_channels, hp.model_hidden_size, hp.model_num_layers, batch_first=True)
        encoder.linear = nn.Linear(hp.model_hidden_size, hp.model_embedding_size)
        encoder.relu = nn.ReLU()
        encoder.device = torch.device("cpu")
        missing, _ = encoder.load_state_dict(state, strict=False)  # the file also has GE2E's w, b
        if missing:
            raise CheckpointError(f"{path}: speaker encoder weights lack {missing}")
        self.encoder = encoder.eval()
        self._preprocess = resemblyzer.preprocess_wav

    def embed(self, samples: np.ndarray) -> np.ndarray:
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        if samples.size == 0 or not np.isfinite(samples).all():
            raise AudioError("speaker embedding: audio is empty or has NaN/Inf samples")
        wav = self._preprocess(samples)
        if wav.size < SAMPLE_RATE // 10:  # VAD found (almost) no speech: embed the audio as is
            wav = samples
        with torch.inference_mode():
            return self.encoder.embed_utterance(wav).astype(np.float32)


def speaker_encoder() -> SpeakerEncoder:
    """The process-wide encoder (loaded on first use)."""
    if "default" not in _ENCODERS:
        _ENCODERS["default"] = SpeakerEncoder()
    return _ENCODERS["default"]


def speaker_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of the speaker embeddings of two 16 kHz clips."""
    encoder = speaker_encoder()
    return float(np.dot(encoder.embed(a), encoder.embed(b)))
