"""Mel-cepstral distortion between a reference and a resynthesised waveform."""

from __future__ import annotations

import math

import numpy as np
import torch

from speechlm.tokenizers.semantic.dsp import dct_matrix, mel_filterbank
from speechlm.vocoder.model import MEL_NFFT, N_MELS, mel_spectrogram

N_CEPS = 24


def mel_cepstrum(samples: np.ndarray) -> np.ndarray:
    """(T,) -> (F, 24) cepstra c1..c24 of the 80-band log-amplitude mel spectrum (c0 = energy dropped)."""
    mel = mel_spectrogram(torch.from_numpy(np.asarray(samples, dtype=np.float32)),
                          mel_filterbank(N_MELS, MEL_NFFT))
    # orthonormal DCT * sqrt(2 / M) = the usual cepstrum scaling c_k = (2 / M) sum_m log S_m cos(..)
    return (mel @ dct_matrix(N_MELS, N_CEPS + 1))[:, 1:].numpy() * math.sqrt(2.0 / N_MELS)


def _dtw_path(dist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n, m = dist.shape
    cost = np.full((n + 1, m + 1), np.inf)
    cost[0, 0] = 0.0
    for i in range(1, n + 1):  # row-wise recursion; the j-loop is sequential only through cost[i, j-1]
        diag_up = np.minimum(cost[i - 1, :-1], cost[i - 1, 1:]) + dist[i - 1]
        row = cost[i]
        for j in range(1, m + 1):
            row[j] = min(diag_up[j - 1], row[j - 1] + dist[i - 1, j - 1])
    i, j, path = n, m, []
    while i > 0 and j > 0:
        path.append((i - 1, j - 1))
        step = np.argmin([cost[i - 1, j - 1], cost[i - 1, j], cost[i, j - 1]])
        i, j = (i - 1, j - 1) if step == 0 else (i - 1, j) if step == 1 else (i, j - 1)
    path.reverse()
    return np.array([p[0] for p in path]), np.array([p[1] for p in path])


def mel_cepstral_distortion(reference: np.ndarray, synthesized: np.ndarray, align: bool = True) -> float:
    """MCD in dB, (10 / ln 10) * sqrt(2 * sum_d (c_d - c'_d)^2) averaged over DTW-aligned frames.

    Cepstra come from an 80-band mel filterbank (not SPTK mel-generalised cepstra), so values are
    comparable between our systems but not to published MCDs.
    """
    ref, syn = mel_cepstrum(reference), mel_cepstrum(synthesized)
    if align:
        dist = ((ref[:, None, :] - syn[None, :, :]) ** 2).sum(-1)
        ri, si = _dtw_path(np.sqrt(dist))
        ref, syn = ref[ri], syn[si]
    else:
        n = min(len(ref), len(syn))
        ref, syn = ref[:n], syn[:n]
    return float(np.mean(10.0 / math.log(10.0) * np.sqrt(2.0 * ((ref - syn) ** 2).sum(-1))))
