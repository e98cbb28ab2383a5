"""Reading the small JSON files (configs, metadata) that every saved artefact carries."""

from __future__ import annotations

import json
from pathlib import Path

from speechlm.core.errors import DataError, SpeechLMError


def read_json(path: str | Path, error: type[SpeechLMError] = DataError,
              missing: str = "file not found") -> dict:
    """The JSON object in ``path``; ``error`` naming the file if it is absent, corrupt or not an
    object. ``missing`` says what an absent file means (e.g. "not a tokenizer directory")."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: {missing}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise error(f"{path}: corrupt JSON ({err})") from None
    if not isinstance(data, dict):
        raise error(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data
