"""Error types. The CLI prints these as one line (no traceback); anything else is a bug."""

from __future__ import annotations


class SpeechLMError(Exception):
    """Base class for every error caused by user input (files, configs, options)."""


class ConfigError(SpeechLMError):
    """A config file, key or value is invalid."""


class DataError(SpeechLMError):
    """A data file (corpus shard, manifest, pairs file, token dataset) is missing or malformed."""


class AudioError(DataError):
    """An audio file or buffer cannot be used (corrupt, empty, NaN/Inf, too long)."""


class CheckpointError(SpeechLMError):
    """A model, tokenizer or trainer checkpoint directory is missing, corrupt or incompatible."""


class TrainingError(SpeechLMError):
    """Training cannot continue (e.g. NaN/Inf loss)."""
