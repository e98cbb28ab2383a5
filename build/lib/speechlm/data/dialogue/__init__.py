"""Two-channel dialogue data for duplex models: records, corpus reader/writer, synthesis.

``from speechlm.data.dialogue import DialogueCorpus, Dialogue, Event`` is the reader API; the
record format and event vocabulary are in :mod:`.record`, the directory layout in :mod:`.corpus`
and ``docs/dialogue.md`` has the whole picture. Names are imported on first use, so the CLI can
read :class:`DialogueConfig` defaults without loading pyarrow.
"""

from __future__ import annotations

import importlib

_EXPORTS = {"DialogueCorpus": "corpus", "DialogueWriter": "corpus", "is_dialogue_corpus": "corpus",
            "Dialogue": "record", "Event": "record", "DIALOGUE_SPLITS": "record",
            "LABELS": "record", "USER": "record", "SYSTEM": "record",
            "DialogueConfig": "config", "synthesize_dialogues": "synth"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
