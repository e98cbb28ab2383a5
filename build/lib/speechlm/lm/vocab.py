"""The LM token space: named token families laid out one after another in one id range.

Every model shares the same ``specials`` family at ids ``0..3`` (pad, bos, eos, unk); later
families are appended in order and each gets a contiguous block::

    specials (4) | units (K) | text (V) | prosody | codec_0 .. codec_{n-1} | markers ...

A family knows its size, a kind (``special``, ``units``, ``text``, ``prosody``, ``codec``,
``marker``) and free-form metadata (e.g. the tokenizer it came from). Adding a family returns a new
vocabulary and never moves existing ids, so a model trained on ``specials+units`` keeps its ids
when text BPE or modality markers are appended (interleaving, instruction tuning).
Saved as ``speech_vocab.json`` next to the model weights.

>>> v = SpeechVocab.default().add_family("units", 100, kind="units")
>>> v.size, v.bos_id, v.encode("units", [0, 99])
(104, 1, [4, 103])
>>> v.decode("units", [4, 103]), v.family_of(50)
([0, 99], 'units')
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speechlm.core.errors import CheckpointError, DataError
from speechlm.core.files import read_json

VOCAB_FILE = "speech_vocab.json"
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
KINDS = ("special", "units", "text", "prosody", "codec", "marker")


@dataclass(frozen=True)
class TokenFamily:
    """A contiguous block of ``size`` ids starting at ``offset``; ``labels`` name marker/special ids."""

    name: str
    kind: str
    size: int
    offset: int
    labels: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "size": self.size, "offset": self.offset,
                "labels": list(self.labels), "meta": self.meta}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TokenFamily:
        return cls(d["name"], d["kind"], int(d["size"]), int(d["offset"]), tuple(d.get("labels", ())),
                   dict(d.get("meta", {})))


@dataclass(frozen=True)
class SpeechVocab:
    families: tuple[TokenFamily, ...]

    @classmethod
    def default(cls) -> SpeechVocab:
        """Just the shared special tokens."""
        return cls((TokenFamily("specials", "special", len(SPECIALS), 0, SPECIALS),))

    @classmethod
    def for_units(cls, n_units: int, **meta: Any) -> SpeechVocab:
        return cls.default().add_family("units", n_units, kind="units", **meta)

    @classmethod
    def for_text(cls, n_text: int, **meta: Any) -> SpeechVocab:
        return cls.default().add_family("text", n_text, kind="text", **meta)

    # ---- layout ----
    @property
    def size(self) -> int:
        last = self.families[-1]
        return last.offset + last.size

    def add_family(self, name: str, size: int, kind: str = "units",
                   labels: Sequence[str] = (), **meta: Any) -> SpeechVocab:
        """A new vocabulary with ``name`` appended after the existing families."""
        if name in self.names:
            raise DataError(f"vocabulary already has a family named {name!r}")
        if kind not in KINDS:
            raise DataError(f"family {name!r}: kind {kind!r} is not one of {list(KINDS)}")
        if size < 1 or (labels and len(labels) != size):
            raise DataError(f"family {name!r}: size={size} must be >= 1 and match {len(labels)} labels")
        fam = TokenFamily(name, kind, int(size), self.size, tuple(labels), dict(meta))
        return SpeechVocab(self.families + (fam,))

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.families]

    def family(self, name: str) -> TokenFamily:
        for fam in self.families:
            if fam.name == name:
                return fam
        raise DataError(f"vocabulary has no token family {name!r} (it has {self.names})")

    def has(self, name: str) -> bool:
        return name in self.names

    def family_of(self, token_id: int) -> str:
        for fam in self.families:
            if fam.offset <= token_id < fam.offset + fam.size:
                return fam.name
        raise DataError(f"token id {token_id} is outside the vocabulary (size {self.size})")

    # ---- special ids ----
    def special_id(self, label: str) -> int:
        fam = self.families[0]
        return fam.offset + fam.labels.index(label)

    @property
    def pad_id(self) -> int:
        return self.special_id("<pad>")

    @property
    def bos_id(self) -> int:
        return self.special_id("<bos>")

    @property
    def eos_id(self) -> int:
        return self.special_id("<eos>")

    # ---- mapping ----
    def encode(self, name: str, ids: Sequence[int]) -> list[int]:
        """Family-local ids (e.g. unit indices 0..K-1) -> global token ids."""
        fam = self.family(name)
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < fam.size:
                raise DataError(f"{name} id {i} is out of range 0..{fam.size - 1}: the data was "
                                f"made with a different tokenizer than this vocabulary")
            out.append(fam.offset + i)
        return out

    def decode(self, name: str, ids: Sequence[int], strict: bool = False) -> list[int]:
        """Global ids -> family-local ids; ids of other families are dropped (or raise if strict)."""
        fam = self.family(name)
        out = []
        for i in ids:
            local = int(i) - fam.offset
            if 0 <= local < fam.size:
                out.append(local)
            elif strict:
                raise DataError(f"token id {i} is not in family {name!r}")
        return out

    # ---- IO ----
    def to_dict(self) -> dict[str, Any]:
        return {"version": 1, "size": self.size, "families": [f.to_dict() for f in self.families]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SpeechVocab:
        vocab = cls(tuple(TokenFamily.from_dict(f) for f in d["families"]))
        expect = 0
        for fam in vocab.families:
            if fam.offset != expect:
                raise DataError(f"family {fam.name!r} starts at {fam.offset}, expected {expect}")
            expect += fam.size
        return vocab

    def save(self, model_dir: str | Path) -> Path:
        path = Path(model_dir) / VOCAB_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2), encoding="utf-8")
        return path

    @classmethod
    def load(cls, model_dir: str | Path) -> SpeechVocab:
        path = Path(model_dir) / VOCAB_FILE
        data = read_json(path, CheckpointError, "vocabulary file missing")
        try:
            return cls.from_dict(data)
        except (ValueError, KeyError, TypeError, DataError) as err:
            raise CheckpointError(f"{path}: corrupt vocabulary ({err})") from None
