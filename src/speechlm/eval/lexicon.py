"""A phonetic English lexicon for nonword generation, built offline from the CMU dictionary.

wuggy ships no language data, and its English plugin data has no stated license. We build the
equivalent from the CMU Pronouncing Dictionary that the ``pocketsphinx`` wheel ships (BSD-style):
ARPAbet -> IPA, syllables by maximal onset, and a local wuggy ``BaseLanguagePlugin`` whose data
rows are keyed by the phonetic form (so homophones of real words are never called nonwords).

The pocketsphinx copy of the dictionary has no stress digits, so stress is assigned the same way
for words and nonwords: primary stress on the first syllable whose vowel is not ``AH``.
Spoken forms go to espeak as ``[[...]]`` phoneme strings (:func:`to_espeak`).
"""

from __future__ import annotations

import importlib.util
import logging
import random
import re
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from speechlm.core.errors import DataError

log = logging.getLogger(__name__)

# ARPAbet -> IPA (stress-free; AH is written ʌ, reduced to ə only on the espeak side)
ARPA_IPA = {
    "AA": "ɑ", "AE": "æ", "AH": "ʌ", "AO": "ɔ", "AW": "aʊ", "AY": "aɪ", "EH": "ɛ", "ER": "ɝ",
    "EY": "eɪ", "IH": "ɪ", "IY": "i", "OW": "oʊ", "OY": "ɔɪ", "UH": "ʊ", "UW": "u",
    "B": "b", "CH": "tʃ", "D": "d", "DH": "ð", "F": "f", "G": "ɡ", "HH": "h", "JH": "dʒ", "K": "k",
    "L": "l", "M": "m", "N": "n", "NG": "ŋ", "P": "p", "R": "ɹ", "S": "s", "SH": "ʃ", "T": "t",
    "TH": "θ", "V": "v", "W": "w", "Y": "j", "Z": "z", "ZH": "ʒ",
}
VOWELS = {"AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW"}
IPA_VOWELS = {ARPA_IPA[v] for v in VOWELS}
# IPA -> espeak-ng (en-us) phoneme mnemonics; ʌ is V when stressed and @ when not.
IPA_ESPEAK = {
    "ɑ": "A:", "æ": "a", "ʌ": "V", "ɔ": "O:", "aʊ": "aU", "aɪ": "aI", "ɛ": "E", "ɝ": "3:",
    "eɪ": "eI", "ɪ": "I", "i": "i:", "oʊ": "oU", "ɔɪ": "OI", "ʊ": "U", "u": "u:",
    "b": "b", "tʃ": "tS", "d": "d", "ð": "D", "f": "f", "ɡ": "g", "h": "h", "dʒ": "dZ", "k": "k",
    "l": "l", "m": "m", "n": "n", "ŋ": "N", "p": "p", "ɹ": "r", "s": "s", "ʃ": "S", "t": "t",
    "θ": "T", "v": "v", "w": "w", "j": "j", "z": "z", "ʒ": "Z",
}
_IPA_BY_LENGTH = sorted(IPA_ESPEAK, key=len, reverse=True)
ONSETS = {tuple(o.split()) for o in (
    "P R|P L|B R|B L|T R|D R|K R|K L|G R|G L|F R|F L|TH R|SH R|S P|S T|S K|S M|S N|S L|S W|T W|"
    "D W|K W|G W|P Y|B Y|F Y|M Y|K Y|HH Y|V Y|TH W|S P R|S P L|S T R|S K R|S K W|S P Y|S K Y|"
    "S K L").split("|")} | {(c,) for c in ARPA_IPA if c not in VOWELS and c != "NG"}


def cmudict_path() -> Path:
    """The CMU dictionary inside the pocketsphinx wheel."""
    import pocketsphinx

    path = Path(pocketsphinx.get_model_path()) / "en-us" / "cmudict-en-us.dict"
    if not path.is_file():
        raise DataError(f"{path}: CMU dictionary not found in the pocketsphinx wheel")
    return path


@lru_cache(maxsize=2)
def _cmu_entries(path: str | None = None) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Every (word, ARPAbet phones) line of the dictionary, pronunciation variants included
    (``read(2)`` -> ``read``), stress digits removed."""
    entries = []
    for line in Path(path or cmudict_path()).read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        phones = tuple(p.rstrip("012") for p in parts[1:])
        if all(p in ARPA_IPA for p in phones):
            entries.append((parts[0].split("(")[0].lower(), phones))
    return tuple(entries)


@lru_cache(maxsize=2)
def load_cmudict(path: str | None = None) -> dict[str, tuple[str, ...]]:
    """word -> ARPAbet phones (alphabetic words, first pronunciation, at least one vowel)."""
    entries: dict[str, tuple[str, ...]] = {}
    for word, phones in _cmu_entries(path):
        if word.isalpha() and any(p in VOWELS for p in phones):
            entries.setdefault(word, phones)
    return entries


@lru_cache(maxsize=2)
def cmu_words_and_sounds(path: str | None = None) -> tuple[frozenset[str], frozenset[str]]:
    """(every spelling, every pronunciation as plain IPA) in the dictionary, variants included:
    what a nonword must never be."""
    entries = _cmu_entries(path)
    return (frozenset(w for w, _ in entries),
            frozenset("".join(ARPA_IPA[p] for p in phones) for _, phones in entries))


@lru_cache(maxsize=1)
def _phone_counts() -> dict[str, int]:
    counts: dict[str, int] = {}
    for word, phones in _cmu_entries():
        counts.setdefault(word, len(phones))
    return counts


def phone_count(text: str) -> int:
    """How many phonemes ``text`` has (CMU dictionary; letters for unknown words): the length
    proxy that benchmark builders balance, since spoken duration and unit counts follow it."""
    counts = _phone_counts()
    total = 0
    for word in re.findall(r"[a-z']+", text.lower()):
        word = word.strip("'")
        total += counts.get(word, len(word.replace("'", "")))
    return total


def nonword_problem(word: str, nonword_ipa: str, spelling: str) -> str | None:
    """Why a candidate nonword (IPA syllables joined by '-', and its text spelling) is not a
    nonword for ``word``, or None when it is one: identical to the word, or a dictionary word in
    sound or in spelling."""
    words, sounds = cmu_words_and_sounds()
    sound = nonword_ipa.replace("-", "")
    if spelling == word.lower():
        return f"spelled like its word {word!r}"
    word_phones = load_cmudict().get(word.lower())
    if word_phones is not None and sound == "".join(ARPA_IPA[p] for p in word_phones):
        return f"sounds like its word {word!r}"
    if spelling in words:
        return f"{spelling!r} is a CMU dictionary word"
    if sound in sounds:
        return f"/{sound}/ is the pronunciation of a CMU dictionary word"
    return None


def syllabify(phones: tuple[str, ...]) -> list[tuple[tuple[str, ...], str, tuple[str, ...]]]:
    """Split ARPAbet phones into (onset, nucleus, coda) syllables by maximal legal onset."""
    nuclei = [i for i, p in enumerate(phones) if p in VOWELS]
    if not nuclei:
        raise DataError(f"no vowel in {' '.join(phones)}")
    syllables = []
    start = 0
    for k, i in enumerate(nuclei):
        onset = phones[start:i]
        if k + 1 < len(nuclei):
            cluster = phones[i + 1:nuclei[k + 1]]
            split = len(cluster)  # everything goes to the next onset if legal, else shrink
            for n in range(min(3, len(cluster)), -1, -1):
                if n == 0 or tuple(cluster[len(cluster) - n:]) in ONSETS:
                    split = len(cluster) - n
                    break
            coda = cluster[:split]
            start = i + 1 + split
        else:
            coda = phones[i + 1:]
        syllables.append((tuple(onset), phones[i], tuple(coda)))
    return syllables


def to_segments(phones: tuple[str, ...]) -> str:
    """wuggy's ``onset:nucleus:coda-onset:nucleus:coda`` form, in IPA."""
    return "-".join(":".join("".join(ARPA_IPA[p] for p in part) for part in (o, (n,), c))
                    for o, n, c in syllabify(phones))


def split_ipa(text: str) -> list[str]:
    """IPA string -> phoneme list (greedy longest match over our inventory)."""
    out, i = [], 0
    while i < len(text):
        for sym in _IPA_BY_LENGTH:
            if text.startswith(sym, i):
                out.append(sym)
                i += len(sym)
                break
        else:
            raise DataError(f"unknown IPA symbol {text[i]!r} in {text!r}")
    return out


def stress_position(syllables: list[str]) -> int:
    """Our stress rule (the dictionary has none): the first syllable whose vowel is not ʌ."""
    nuclei = [next(p for p in split_ipa(syl) if p in IPA_VOWELS) for syl in syllables]
    return next((k for k, v in enumerate(nuclei) if v != "ʌ"), 0)


def to_espeak(syllables: list[str], stressed: int | None = None) -> str:
    """IPA syllables -> an espeak ``[[...]]`` phoneme string; unstressed ʌ/ɝ are reduced.

    Pass the real word's ``stressed`` syllable for its nonword so both share a stress pattern.
    """
    phonemes = [split_ipa(s) for s in syllables]
    if stressed is None:
        stressed = stress_position(syllables)
    reduced = {"ʌ": "@", "ɝ": "3"}
    parts = []
    for k, syl in enumerate(phonemes):
        mapped = [reduced[p] if (p in reduced and k != stressed) else IPA_ESPEAK[p] for p in syl]
        parts.append(("'" if k == stressed and len(syllables) > 1 else "") + "".join(mapped))
    return "[[" + "".join(parts) + "]]"


def word_syllables(word: str) -> list[str]:
    """IPA syllables of a dictionary word (raises DataError when it is not in the dictionary)."""
    phones = load_cmudict().get(word.lower())
    if phones is None:
        raise DataError(f"{word!r} is not in the CMU dictionary")
    return ["".join(s.split(":")) for s in to_segments(phones).split("-")]


_PLUGIN_SOURCE = '''"""speechlm's CMU-derived phonetic English plugin for wuggy (generated)."""
from wuggy.plugins.baselanguageplugin import BaseLanguagePlugin


class CmuPhoneticEnglish(BaseLanguagePlugin):
    default_data = "cmu_phonetic.txt"
    default_neighbor_lexicon = "cmu_phonetic_plain.txt"
    default_word_lexicon = "cmu_phonetic_plain.txt"
    default_lookup_lexicon = "cmu_phonetic_lookup.txt"

    def transform(self, input_sequence, frequency=1):
        return self.copy_onc(input_sequence, frequency)
'''


def build_wuggy_plugin(folder: str | Path):
    """Write the plugin module and its data files into ``folder``; return a plugin instance."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "cmu_phonetic.txt"
    if not data.is_file():
        rows: dict[str, str] = {}
        lookup: list[str] = []
        for word, phones in sorted(load_cmudict().items()):
            segments = to_segments(phones)
            plain = segments.replace(":", "").replace("-", "")
            rows.setdefault(plain, segments)
            lookup.append(f"{word}\t{segments}")
        (folder / "cmu_phonetic_lookup.txt").write_text("\n".join(lookup) + "\n", encoding="utf-8")
        (folder / "cmu_phonetic_plain.txt").write_text(
            "".join(f"{p}\t1\n" for p in rows), encoding="utf-8")
        tmp = data.with_suffix(".tmp")
        tmp.write_text("".join(f"{p}\t{s}\t1\n" for p, s in rows.items()), encoding="utf-8")
        tmp.rename(data)
    module_path = folder / "cmu_phonetic_plugin.py"
    module_path.write_text(_PLUGIN_SOURCE, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("speechlm_cmu_phonetic_plugin", module_path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # inspect.getfile() needs the module registered
    spec.loader.exec_module(module)
    return module.CmuPhoneticEnglish()


@dataclass(frozen=True)
class Nonword:
    word: str              # the real word (spelling)
    word_ipa: str          # syllables joined with '-'
    nonword_ipa: str       # wuggy's match, same syllable/segment structure
    spelling: str          # the nonword's text form (:func:`respell`)
    overlap_ratio: str     # wuggy's subsyllabic overlap with the word (e.g. "2/3")


def generate_nonwords(words: list[str], plugin_dir: str | Path, seed: int = 0,
                      max_search_time: float = 4.0, candidates: int = 5) -> list[Nonword]:
    """One wuggy nonword per word, matched as wuggy's classic mode does (segment lengths,
    transition frequencies by concentric search, 2/3 subsyllabic overlap, not a real word).

    wuggy proposes up to ``candidates`` matches, best first; the first one that is a nonword in
    sound *and* in spelling (:func:`nonword_problem`: wuggy's lexicon holds first pronunciations
    only, and the respelling can hit another word) is kept. wuggy shuffles with the global
    ``random`` module; we seed it and restore its state. Words with no acceptable match inside
    ``max_search_time`` are skipped (logged).
    """
    from wuggy import WuggyGenerator

    generator = WuggyGenerator()
    generator.load("speechlm_cmu_phonetic", build_wuggy_plugin(plugin_dir))
    state = random.getstate()
    out: list[Nonword] = []
    try:
        for i, word in enumerate(words):
            random.seed(seed * 100_003 + i)
            if generator.lookup_reference_segments(word) is None:
                log.info("skip %r: not in the CMU lexicon", word)
                continue
            matches = generator.generate_classic([word], ncandidates_per_sequence=candidates,
                                                 max_search_time_per_sequence=max_search_time,
                                                 output_mode="syllabic")
            for match in matches:
                ipa = match["pseudoword"]
                problem = nonword_problem(word, ipa, respell(ipa))
                if problem is None:
                    word_ipa = "-".join(s.replace(":", "") for s in match["segments"].split("-"))
                    out.append(Nonword(word=word, word_ipa=word_ipa, nonword_ipa=ipa,
                                       spelling=respell(ipa),
                                       overlap_ratio=str(match["statistics"]["overlap_ratio"])))
                    break
                log.info("reject %s for %r: %s", ipa, word, problem)
            else:
                log.info("skip %r: no acceptable nonword among %d in %.1f s", word, len(matches),
                         max_search_time)
    finally:
        random.setstate(state)
    return out


def select_words(text_files: list[Path], n: int, seed: int = 0, min_count: int = 3) -> list[str]:
    """``n`` real words for sWUGGY-like pairs: lowercase words of 4-9 letters seen at least
    ``min_count`` times in ``text_files`` (the training text), in the CMU dictionary, 1-3
    syllables. Sampled with ``seed`` from the sorted candidates, so the choice is deterministic."""
    from collections import Counter

    import numpy as np

    counts: Counter[str] = Counter()
    for path in text_files:
        counts.update(re.findall(r"\b[a-z]{4,9}\b", Path(path).read_text(encoding="utf-8")))
    cmu = load_cmudict()
    candidates = sorted(w for w, c in counts.items() if c >= min_count and w in cmu
                        and 1 <= sum(p in VOWELS for p in cmu[w]) <= 3)
    if len(candidates) < n:
        raise DataError(f"only {len(candidates)} candidate words in the text, asked for {n}")
    order = np.random.default_rng(seed).permutation(len(candidates))[:n]
    return [candidates[i] for i in sorted(order)]


_RESPELL = {
    "ɑ": "a", "æ": "a", "ʌ": "u", "ɔ": "aw", "aʊ": "ow", "aɪ": "i", "ɛ": "e", "ɝ": "er",
    "eɪ": "ay", "ɪ": "i", "i": "ee", "oʊ": "o", "ɔɪ": "oy", "ʊ": "oo", "u": "oo",
    "b": "b", "tʃ": "ch", "d": "d", "ð": "th", "f": "f", "ɡ": "g", "h": "h", "dʒ": "j", "k": "k",
    "l": "l", "m": "m", "n": "n", "ŋ": "ng", "p": "p", "ɹ": "r", "s": "s", "ʃ": "sh", "t": "t",
    "θ": "th", "v": "v", "w": "w", "j": "y", "z": "z", "ʒ": "zh",
}


def respell(ipa: str) -> str:
    """A crude English spelling of an IPA form, for the text version of the lexical benchmark."""
    return "".join(_RESPELL[p] for p in split_ipa(ipa.replace("-", "")))


def write_lexical_asset(path: str | Path, n: int, seed: int, plugin_dir: str | Path,
                        text_files: list[Path]) -> int:
    """Regenerate the shipped word/nonword list (``eval/assets/lexical_pairs.jsonl``)."""
    import json

    words = select_words(text_files, n, seed)
    rows = generate_nonwords(words, plugin_dir, seed)
    tmp = Path(path).with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps({"word": row.word, "word_ipa": row.word_ipa,
                                     "nonword_ipa": row.nonword_ipa,
                                     "nonword_spelling": row.spelling,
                                     "overlap_ratio": row.overlap_ratio},
                                    ensure_ascii=False) + "\n")
    tmp.replace(path)
    return len(rows)
