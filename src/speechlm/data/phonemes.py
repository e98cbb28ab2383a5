"""Text -> phonemes with espeak-ng (``espeak_TextToPhonemes``), the input family of TTS models.

Phonemes are espeak's own mnemonics with stress marks stripped (``normalize_phone``), the same
names the corpus' phone alignments use, so the alignments can check the phonemizer
(``tests/data/test_phonemes.py``). A word boundary is the token ``|``; a clause (sentence)
boundary is ``sil``. Characters outside the Latin script, digits, spaces and punctuation are
rejected with a one-line error: espeak's English voice would spell them out ("Chinese letter")
instead of reading them.

>>> Phonemizer().phonemize("Hello world")              # doctest: +SKIP
['h', '@', 'l', 'oU', '|', 'w', '3:', 'l', 'd']
"""

from __future__ import annotations

import ctypes
import os
import re
import unicodedata

import espeakng_loader

from speechlm.core.errors import DataError
from speechlm.data.tts import SILENCE, normalize_phone

WORD = "|"
DEFAULT_LANGUAGE = "en-us"
_SYNCHRONOUS, _CHARS_UTF8 = 0x02, 0x01
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+")


def unsupported_characters(text: str) -> list[str]:
    """Characters espeak's English voice cannot read as English (non-Latin letters, symbols)."""
    bad = []
    for ch in text:
        if ch.isspace() or ch.isdigit() or unicodedata.category(ch)[0] in "PZ":
            continue
        if ch.isalpha() and unicodedata.name(ch, "").startswith("LATIN"):
            continue
        if ch in "%&+=$@#/\u00a3\u20ac":
            continue
        bad.append(ch)
    return sorted(set(bad))


def split_sentences(text: str, max_chars: int = 200) -> list[str]:
    """Sentences of ``text`` (at . ! ? ;), long ones cut at word boundaries to ``max_chars``:
    the chunks a long text is synthesized in."""
    chunks = []
    for sentence in _SENTENCE_END.split(text.strip()):
        words, current = sentence.split(), ""
        for word in words:
            if current and len(current) + 1 + len(word) > max_chars:
                chunks.append(current)
                current = word
            else:
                current = f"{current} {word}".strip()
        if current:
            chunks.append(current)
    return chunks


class Phonemizer:
    """espeak-ng's phonemizer for one language (one per process: espeak keeps global state)."""

    def __init__(self, language: str = DEFAULT_LANGUAGE) -> None:
        self._lib = ctypes.cdll.LoadLibrary(espeakng_loader.get_library_path())
        data_parent = os.path.dirname(espeakng_loader.get_data_path()).encode()
        if self._lib.espeak_Initialize(_SYNCHRONOUS, 0, data_parent, 0) <= 0:
            raise DataError("libespeak-ng failed to initialise")
        if self._lib.espeak_SetVoiceByName(language.encode()) != 0:
            raise DataError(f"espeak-ng has no voice {language!r} (try en, en-us, en-gb-x-rp)")
        self._lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        self._lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int,
                                                    ctypes.c_int]
        self.language = language

    def phonemize(self, text: str, source: str = "text") -> list[str]:
        """Phoneme names of ``text``: words joined by ``|``, clauses by ``sil``; DataError naming
        ``source`` for empty text, unsupported characters or text with no phonemes."""
        if not text or not text.strip():
            raise DataError(f"{source}: the text is empty")
        bad = unsupported_characters(text)
        if bad:
            raise DataError(f"{source}: espeak-ng ({self.language}) cannot phonemize the "
                            f"character(s) {' '.join(bad)!r}")
        buf = ctypes.create_string_buffer(text.encode("utf-8"))
        ptr = ctypes.c_void_p(ctypes.addressof(buf))
        phones: list[str] = []
        while ptr.value:
            clause = self._lib.espeak_TextToPhonemes(ctypes.byref(ptr), _CHARS_UTF8, ord(" ") << 8)
            words = [[normalize_phone(p) for p in word.split()] for word in
                     (clause or b"").decode("utf-8", "replace").split("  ")]
            words = [[p for p in word if p != SILENCE] for word in words]
            clause_phones = [p for word in words if word for p in (*word, WORD)][:-1]
            if clause_phones:
                phones += ([SILENCE] if phones else []) + clause_phones
        if not phones:
            raise DataError(f"{source}: {text!r} has no phonemes (only punctuation?)")
        return phones
