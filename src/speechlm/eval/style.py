"""Speaking-style classifier: the judge of style preservation (SpiRit-LM's STSP-like test).

Trained on a corpus' ``style`` labels (``speechlm corpus synth --styles ...``) from one pooled
feature vector per utterance or per clip (:mod:`speechlm.tokenizers.prosody.features`: pitch
level, range, slope and final rise, loudness, breathiness, syllable rate, pauses), with softmax
regression by default (``hidden > 0`` adds a hidden layer: with a few hundred training utterances from 12 voices
it overfits the voices and was not better on held-out ones, see docs/prosody.md). Accuracy is
reported on held-out voices next to chance (the majority style's share of that split).

``clip_seconds`` trains and scores the classifier on clips of that length (every whole clip of an
utterance plus the one that ends it, so question rises stay in the data) instead of whole
utterances: a judge of 2 s continuations should learn from 2 s of speech, since pitch range, rate
and pauses pooled over 2 s differ from the same pooled over a whole sentence.

Directory layout::

    CLS/config.json         format, labels, feature names, hidden size, training settings
    CLS/model.safetensors   weights + feature mean/std
    CLS/report.json         accuracy, chance, 95% interval and confusion matrix per split

>>> clf = load_style_classifier("runs/style-clf")     # doctest: +SKIP
>>> clf.predict(samples)                               # doctest: +SKIP
'excited'
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from speechlm.core.checkpoint import atomic_dir
from speechlm.core.errors import CheckpointError, DataError
from speechlm.core.files import read_json
from speechlm.core.progress import progress_bar
from speechlm.data.audio import SAMPLE_RATE
from speechlm.data.corpus import Corpus
from speechlm.tokenizers.prosody.common import load_tensors
from speechlm.tokenizers.prosody.f0 import F0Config, extract_f0
from speechlm.tokenizers.prosody.features import FEATURE_NAMES, frame_features, pool

log = logging.getLogger(__name__)

FORMAT = "speechlm-style-classifier"


def utterance_features(samples: np.ndarray, f0_config: F0Config = F0Config()) -> np.ndarray:
    """(len(FEATURE_NAMES),) pooled features of a whole utterance."""
    return pool(frame_features(samples, extract_f0(samples, f0_config), f0_config.hop_s))


def clips(samples: np.ndarray, clip_seconds: float | None) -> list[np.ndarray]:
    """``samples`` cut into ``clip_seconds`` clips: consecutive whole clips from the start, plus
    one that ends at the last sample when they miss the end; the whole of ``samples`` when it is
    not longer than one clip or ``clip_seconds`` is None."""
    n = int(round((clip_seconds or 0) * SAMPLE_RATE))
    if n <= 0 or samples.size <= n:
        return [samples]
    out = [samples[i:i + n] for i in range(0, samples.size - n + 1, n)]
    if samples.size % n:
        out.append(samples[-n:])
    return out


def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Module:
    """Softmax regression when ``hidden`` is 0, else one hidden layer."""
    if hidden == 0:
        return nn.Sequential(nn.Linear(n_in, n_out))
    return nn.Sequential(nn.Linear(n_in, hidden), nn.GELU(), nn.Linear(hidden, n_out))


def wilson_interval(correct: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion.

    >>> [round(x, 3) for x in wilson_interval(8, 10)]
    [0.49, 0.943]
    """
    if total == 0:
        return (0.0, 1.0)
    p = correct / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return (centre - half, centre + half)


class StyleClassifier:
    """Pooled utterance features -> probabilities over the corpus' style labels."""

    def __init__(self, net: nn.Module, labels: list[str], mean: np.ndarray, std: np.ndarray,
                 hidden: int, f0_config: F0Config = F0Config(), path: Path | None = None,
                 clip_seconds: float | None = None) -> None:
        self.net = net.eval()
        self.labels = list(labels)
        self.mean, self.std = mean.astype(np.float32), std.astype(np.float32)
        self.hidden = hidden
        self.f0_config = f0_config
        self.path = path
        self.clip_seconds = clip_seconds  # what it was trained on (None: whole utterances)

    @torch.no_grad()
    def predict_features(self, feats: np.ndarray) -> np.ndarray:
        """(N, D) pooled features -> (N, C) probabilities."""
        x = torch.from_numpy(((np.atleast_2d(feats) - self.mean) / self.std).astype(np.float32))
        return torch.softmax(self.net(x), dim=-1).numpy()

    def predict_proba(self, samples: np.ndarray) -> dict[str, float]:
        probs = self.predict_features(utterance_features(samples, self.f0_config))[0]
        return dict(zip(self.labels, probs.astype(float).tolist()))

    def predict(self, samples: np.ndarray) -> str:
        probs = self.predict_proba(samples)
        return max(probs, key=probs.get)

    def save(self, out_dir: str | Path, report: dict | None = None) -> Path:
        from safetensors.torch import save_file

        with atomic_dir(out_dir) as tmp:
            tensors = {f"net.{k}": v.contiguous() for k, v in self.net.state_dict().items()}
            tensors.update(mean=torch.from_numpy(self.mean), std=torch.from_numpy(self.std))
            save_file(tensors, str(tmp / "model.safetensors"))
            config = {"format": FORMAT, "labels": self.labels, "features": list(FEATURE_NAMES),
                      "hidden": self.hidden, "f0": self.f0_config.to_dict(),
                      "clip_seconds": self.clip_seconds}
            (tmp / "config.json").write_text(json.dumps(config, indent=2))
            if report is not None:
                (tmp / "report.json").write_text(json.dumps(report, indent=2))
        self.path = Path(out_dir).resolve()
        return self.path


def load_style_classifier(path: str | Path) -> StyleClassifier:
    """Open a classifier directory; CheckpointError naming the missing or corrupt file."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: style classifier directory not found")
    config = read_json(path / "config.json", CheckpointError, "missing (not a style classifier)")
    if config.get("format") != FORMAT:
        raise CheckpointError(f"{path / 'config.json'}: not a speechlm style classifier")
    try:
        labels, hidden = list(config["labels"]), int(config["hidden"])
        f0_config = F0Config(**config["f0"])
        clip_seconds = float(config["clip_seconds"]) if config.get("clip_seconds") else None
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path / 'config.json'}: corrupt classifier config ({err})") from None
    if list(config.get("features", [])) != list(FEATURE_NAMES):
        raise CheckpointError(f"{path / 'config.json'}: trained on other features than this "
                              f"version computes ({len(FEATURE_NAMES)} features)")
    net = _mlp(len(FEATURE_NAMES), hidden, len(labels))
    keys = tuple(f"net.{k}" for k in net.state_dict()) + ("mean", "std")
    tensors = load_tensors(path / "model.safetensors", keys, "the classifier weights")
    try:
        net.load_state_dict({k[4:]: torch.from_numpy(v) for k, v in tensors.items()
                             if k.startswith("net.")})
    except RuntimeError as err:
        raise CheckpointError(f"{path / 'model.safetensors'}: weights do not fit the config "
                              f"({str(err).splitlines()[0]})") from None
    return StyleClassifier(net, labels, tensors["mean"], tensors["std"], hidden, f0_config,
                           path.resolve(), clip_seconds)


def _labelled(corpus: Corpus, split: str, f0_config: F0Config, show_progress: bool,
              clip_seconds: float | None = None) -> tuple[np.ndarray, list[str]]:
    n = corpus.table(split, ["id"]).num_rows
    feats, labels = [], []
    with progress_bar(f"style features {split}", total=n, unit="utts",
                      enabled=show_progress) as advance:
        for utt in corpus.utterances(split):
            if utt.style is None:
                raise DataError(f"{corpus.root}: utterance {utt.id!r} has no style label "
                                "(synthesize the corpus with --styles)")
            for clip in clips(utt.samples(), clip_seconds):
                feats.append(utterance_features(clip, f0_config))
                labels.append(utt.style)
            advance()
    return np.array(feats).reshape(len(feats), len(FEATURE_NAMES)), labels


def evaluate_style_classifier(clf: StyleClassifier, feats: np.ndarray, labels: list[str]) -> dict:
    """Accuracy (+ Wilson 95% interval), chance = the majority label's share, confusion matrix."""
    predicted = [clf.labels[i] for i in clf.predict_features(feats).argmax(axis=1)]
    correct = sum(p == t for p, t in zip(predicted, labels))
    counts = {label: labels.count(label) for label in clf.labels}
    confusion = {t: {p: sum(1 for a, b in zip(labels, predicted) if a == t and b == p)
                     for p in clf.labels} for t in clf.labels}
    return {"items": len(labels), "accuracy": correct / len(labels),
            "ci95": list(wilson_interval(correct, len(labels))),
            "chance": max(labels.count(label) for label in set(labels)) / len(labels),
            "uniform_chance": 1 / len(clf.labels),
            "per_style": {t: confusion[t][t] / counts[t] for t in clf.labels if counts[t]},
            "confusion": confusion}


def train_style_classifier(corpus_dir: str | Path, out_dir: str | Path, *, steps: int = 500,
                           hidden: int = 0, lr: float = 1e-2, weight_decay: float = 1e-3,
                           seed: int = 0, eval_splits: tuple[str, ...] = ("valid", "heldout"),
                           clip_seconds: float | None = None, show_progress: bool = True) -> dict:
    """Fit on the train split, score ``eval_splits`` and save; returns the report. Items are
    whole utterances, or ``clip_seconds`` clips of them (see the module docstring)."""
    if clip_seconds is not None and clip_seconds <= 0:
        raise DataError(f"clip_seconds must be > 0 (got {clip_seconds}); None = whole utterances")
    corpus = Corpus(corpus_dir)
    f0_config = F0Config()
    feats, labels = _labelled(corpus, "train", f0_config, show_progress, clip_seconds)
    names = sorted(set(labels))
    if len(names) < 2:
        raise DataError(f"{corpus.root}: the train split has {len(names)} style label(s); a "
                        "classifier needs at least 2")
    mean, std = feats.mean(axis=0), feats.std(axis=0) + 1e-6
    x = torch.from_numpy(((feats - mean) / std).astype(np.float32))
    y = torch.tensor([names.index(label) for label in labels])
    torch.manual_seed(seed)
    net = _mlp(x.shape[1], hidden, len(names))
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(steps):  # full batch: a few hundred utterances
        loss = nn.functional.cross_entropy(net(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    clf = StyleClassifier(net, names, mean, std, hidden, f0_config, clip_seconds=clip_seconds)
    report = {"corpus": str(corpus.root.resolve()), "labels": names, "steps": steps, "seed": seed,
              "hidden": hidden, "weight_decay": weight_decay, "clip_seconds": clip_seconds,
              "items": f"{clip_seconds:g} s clips" if clip_seconds else "utterances",
              "train_loss": loss.item(),
              "splits": {"train": evaluate_style_classifier(clf, feats, labels)}}
    for split in eval_splits:
        if corpus.table(split, ["id"]).num_rows:
            report["splits"][split] = evaluate_style_classifier(
                clf, *_labelled(corpus, split, f0_config, show_progress, clip_seconds))
    clf.save(out_dir, report)
    log.info("style classifier: %s", {s: r["accuracy"] for s, r in report["splits"].items()})
    return report
