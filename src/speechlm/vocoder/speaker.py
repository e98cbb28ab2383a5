"""Speaker embeddings of reference clips: Resemblyzer's pretrained d-vector encoder.

The encoder (a 3-layer LSTM over 40-band mels, trained for speaker verification; 256-d,
L2-normalised) ships as ``pretrained.pt`` inside the ``resemblyzer`` wheel, so it needs no
download. The vocoder is conditioned on these vectors rather than on a table of speaker ids, so a
voice it never saw is given by a few seconds of its audio.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Iterable

import numpy as np

from speechlm.core.errors import CheckpointError
from speechlm.tokenizers.semantic.dsp import check_clip

SPEAKER_DIM = 256


def _load_resemblyzer():
    """Resemblyzer's ``VoiceEncoder`` with its weights read by ``torch.load(weights_only=True)``
    (its own ``__init__`` leaves that to torch's default)."""
    from pathlib import Path

    import torch
    from torch import nn

    with warnings.catch_warnings():  # resemblyzer imports deprecated scipy/pkg_resources names
        warnings.simplefilter("ignore")
        import resemblyzer
        from resemblyzer import VoiceEncoder, hparams, preprocess_wav

    class _Encoder(VoiceEncoder):
        def __init__(self, weights: Path) -> None:
            nn.Module.__init__(self)
            self.lstm = nn.LSTM(hparams.mel_n_channels, hparams.model_hidden_size,
                                hparams.model_num_layers, batch_first=True)
            self.linear = nn.Linear(hparams.model_hidden_size, hparams.model_embedding_size)
            self.relu = nn.ReLU()
            self.device = torch.device("cpu")
            state = torch.load(weights, map_location="cpu", weights_only=True)["model_state"]
            # the checkpoint also holds the GE2E loss's similarity scale/bias, unused here
            self.load_state_dict({k: v for k, v in state.items() if not k.startswith("similarity")})

    weights = Path(resemblyzer.__file__).parent / "pretrained.pt"
    try:
        encoder = _Encoder(weights).eval()
    except (OSError, RuntimeError, KeyError, EOFError, pickle.UnpicklingError) as err:
        raise CheckpointError(f"{weights}: cannot load the Resemblyzer speaker encoder "
                              f"({type(err).__name__}: {err})") from None
    return encoder, preprocess_wav


class SpeakerEncoder:
    """``embed(samples_16k) -> (256,)`` float32, unit norm.

    >>> enc = SpeakerEncoder()                      # doctest: +SKIP
    >>> enc.embed(samples).shape                    # doctest: +SKIP
    (256,)
    """

    dim = SPEAKER_DIM

    def __init__(self) -> None:
        self._encoder, self._preprocess = _load_resemblyzer()

    def embed(self, samples: np.ndarray, source: str = "reference clip") -> np.ndarray:
        """One clip (16 kHz mono) -> its d-vector; silences are trimmed first (Resemblyzer's VAD)."""
        samples = check_clip(samples, source)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wav = self._preprocess(samples)
        if wav.size < 1600:  # VAD found almost no speech: embed the whole clip instead
            wav = samples
        return self._encoder.embed_utterance(wav).astype(np.float32)

    def embed_many(self, clips: Iterable[np.ndarray]) -> np.ndarray:
        """Mean d-vector of several clips of one voice, renormalised."""
        vectors = np.stack([self.embed(c) for c in clips])
        mean = vectors.mean(0)
        return (mean / max(float(np.linalg.norm(mean)), 1e-8)).astype(np.float32)
