"""Benchmark builders: sWUGGY-, sBLIMP-, tStoryCloze-/sStoryCloze-like pairs, and user pairs.

A :class:`Benchmark` is a versioned, deterministic (for a seed) tuple of :class:`Pair` s. Each pair
has a text form (scored by text LMs) and a spoken form (what espeak reads; nonwords go through
espeak phoneme input). :mod:`speechlm.eval.spoken` renders them with held-out voices and caches
the audio.

Construction (see docs/eval.md). Summed log-likelihood favours the item with fewer units, so
an untrained model would score above chance wherever the good item tends to be the shorter one.
Every builder therefore controls length, measured in phonemes (:func:`lexicon.phone_count`;
spoken duration and unit counts follow it), and ``benchmarks/untrained_chance.py`` checks the
result in units:

* lexical: real words from the training text (4-9 letters, 1-3 syllables, in the CMU dictionary)
  and one wuggy nonword each, matched as wuggy's classic mode does (same syllable/segment
  structure, so nearly always the same number of phonemes; transition frequencies by concentric
  search, 2/3 subsyllabic overlap), sampled with :func:`balanced_sample` for the few that differ.
  A nonword is never a CMU word in sound or spelling, nor its own word (checked when the list is
  generated and again here). Both are spoken from their phonemes, with the word's stress
  pattern. The list is generated once (``lexicon.write_lexical_asset``) and shipped, because
  wuggy's search is time-bounded.
* syntactic: BLiMP minimal pairs, ``n_per_phenomenon`` from each of the 67 phenomena, chosen so
  that the length differences (bad minus good, in phonemes) are as symmetric as the pool allows
  (:func:`balanced_sample`): the good item is the shorter one as often as the longer one.
* storycloze: three consecutive sentences inside one paragraph of a public-domain book that is
  not in the training text; the first two are the context and the third the true ending.
  ``tstorycloze`` pairs it with a sentence from a *different* book; ``sstorycloze`` with a
  sentence from the *same* book, from another paragraph at least 20 sentences away, preferring one
  that shares a content word with the context (same topic and style, hence harder). Either
  distractor has the ending's phoneme count when one exists, else the nearest, longer and
  shorter in turn (length matched, and what is left balanced); among those, one with the
  ending's pauses, final mark and word count (:func:`_shape`).
* pairs: any BLiMP-format JSONL file (``sentence_good``, ``sentence_bad``; optional ``UID`` and
  ``prefix``, a shared context scored as condition only); its lengths are the user's
  responsibility.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from speechlm.core.errors import DataError

LEXICAL_VERSION = "lexical-2"
SYNTACTIC_VERSION = "syntactic-2"
STORYCLOZE_VERSION = "storycloze-2"
PAIRS_VERSION = "pairs-1"
SUITES = ("lexical", "syntactic", "storycloze")
_ALLOWED = re.compile(r"^[A-Z][A-Za-z ,;:'.!?-]*[.!?]$")
_SENTENCE_END = re.compile(r"(?<!\bMr\.)(?<!\bMrs\.)(?<!\bDr\.)(?<!\bSt\.)(?<=[.!?])\s+")
_STOP = set("""a an the and or but if of to in on at by for with from as is was were be been are
it its he she they we you i me him her them his their our your my this that these those not no so
then than there here what which who whom when where why how all any some one would could should
will shall may might must can had has have do did does said upon into out up down very more much
such only own same other""".split())


@dataclass(frozen=True)
class Pair:
    """One minimal pair. ``good_speech``/``bad_speech`` override what espeak reads (``[[..]]``
    phonemes for nonwords); ``prefix`` is a shared spoken/text context (storycloze)."""

    id: str
    good: str
    bad: str
    group: str = "all"
    good_speech: str | None = None
    bad_speech: str | None = None
    prefix: str = ""

    def text(self, which: str) -> str:
        body = self.good if which == "good" else self.bad
        return f"{self.prefix} {body}" if self.prefix else body

    def speech(self, which: str) -> str:
        override = self.good_speech if which == "good" else self.bad_speech
        return override or (self.good if which == "good" else self.bad)


@dataclass(frozen=True)
class Benchmark:
    name: str
    version: str
    pairs: tuple[Pair, ...]
    params: dict = field(default_factory=dict)

    def fingerprint(self) -> str:
        """Content hash: equal fingerprints mean identical pairs (used as the cache key)."""
        digest = hashlib.sha1(f"{self.name}\n{self.version}\n".encode())
        for pair in self.pairs:
            digest.update(json.dumps(asdict(pair), sort_keys=True).encode())
        return digest.hexdigest()[:12]

    @property
    def groups(self) -> list[str]:
        return sorted({p.group for p in self.pairs})

    def to_jsonl(self, path: str | Path) -> None:
        with open(path, "w", encoding="utf-8") as handle:
            for pair in self.pairs:
                handle.write(json.dumps(asdict(pair), ensure_ascii=False) + "\n")


def _assets():
    return resources.files("speechlm.eval") / "assets"


def lexical_benchmark(n: int | None = 1000, seed: int = 0) -> Benchmark:
    """sWUGGY-like word/nonword pairs from the shipped wuggy list (see module docstring), sampled
    balanced in length (wuggy matches segments by written length, so an affricate can stand for
    a two-consonant cluster and a few nonwords are a phoneme shorter or longer than their word).

    Raises DataError naming the row when a nonword of the list is a dictionary word.
    """
    from speechlm.eval.lexicon import nonword_problem, split_ipa, stress_position, to_espeak

    asset = _assets() / "lexical_pairs.jsonl"
    rows = [json.loads(line) for line in asset.read_text(encoding="utf-8").splitlines() if line]
    deltas = [len(split_ipa(r["nonword_ipa"].replace("-", "")))
              - len(split_ipa(r["word_ipa"].replace("-", ""))) for r in rows]
    pairs = []
    for i in balanced_sample([deltas], n, seed)[0]:
        row = rows[i]
        problem = nonword_problem(row["word"], row["nonword_ipa"], row["nonword_spelling"])
        if problem:
            raise DataError(f"{asset}:{i + 1}: not a nonword ({problem})")
        word_syl, non_syl = row["word_ipa"].split("-"), row["nonword_ipa"].split("-")
        stress = stress_position(word_syl)
        pairs.append(Pair(id=f"lex-{i:04d}", good=row["word"], bad=row["nonword_spelling"],
                          group="all", good_speech=to_espeak(word_syl, stress),
                          bad_speech=to_espeak(non_syl, min(stress, len(non_syl) - 1))))
    return Benchmark("lexical", LEXICAL_VERSION, tuple(pairs), {"n": n, "seed": seed})


LENGTH_CLIP = 4  # phonemes (builders) or tokens (scoring); larger differences share a bin


def balanced_sample(deltas: list[list[int]], n: int | None, seed: int) -> list[list[int]]:
    """Indices of ``n`` items from each group, chosen so that the items' length differences
    (bad minus good) are as symmetric around 0 as the pools allow.

    Starts from a seeded random sample per group, then swaps selected for unselected items of the
    same group while a swap makes the histogram of differences (clipped to +-``LENGTH_CLIP``) more
    symmetric; a phenomenon whose bad item is always shorter is offset by others. With ``n`` None
    (or a pool no larger than ``n``) the whole pool is taken and nothing is balanced.
    """
    rng = np.random.default_rng(seed)
    orders = [rng.permutation(len(d)).tolist() for d in deltas]
    if n is None:
        return [sorted(order) for order in orders]
    bins = [[max(-LENGTH_CLIP, min(LENGTH_CLIP, int(x))) for x in d] for d in deltas]
    chosen = [order[:n] for order in orders]
    spare = [order[n:] for order in orders]
    hist = Counter(bins[g][i] for g, picked in enumerate(chosen) for i in picked)

    def asymmetry() -> int:
        return sum(abs(hist[k] - hist[-k]) for k in range(1, LENGTH_CLIP + 1))

    current = asymmetry()
    while current > 0:
        best = None  # (asymmetry after the swap, group, position in chosen, position in spare)
        for g in range(len(deltas)):
            tried = set()
            for a_pos, i in enumerate(chosen[g]):
                for b_pos, j in enumerate(spare[g]):
                    a, b = bins[g][i], bins[g][j]
                    if a == b or (a, b) in tried:
                        continue
                    tried.add((a, b))
                    hist[a] -= 1
                    hist[b] += 1
                    after = asymmetry()
                    hist[a] += 1
                    hist[b] -= 1
                    if after < current and (best is None or after < best[0]):
                        best = (after, g, a_pos, b_pos)
        if best is None:
            break
        current, g, a_pos, b_pos = best
        i, j = chosen[g][a_pos], spare[g][b_pos]
        hist[bins[g][i]] -= 1
        hist[bins[g][j]] += 1
        chosen[g][a_pos], spare[g][b_pos] = j, i
    return [sorted(picked) for picked in chosen]


def length_balanced(deltas: list[int], seed: int) -> list[int]:
    """Indices of the pairs to score so that the length differences (bad minus good, in the
    model's own tokens, clipped to +-``LENGTH_CLIP``) are symmetric around 0.

    The builders balance in phonemes; a tokenizer can still give one side fewer units more often
    (whisper+logmel units: the good BLiMP sentence is shorter in 52 % of pairs, longer in 40 %,
    and an untrained model scores 0.55). For each k the larger of the +k and -k bins loses its
    excess, chosen at random with ``seed``; pairs of equal length are all kept.
    """
    rng = np.random.default_rng(seed)
    bins: dict[int, list[int]] = {}
    for i, d in enumerate(deltas):
        bins.setdefault(max(-LENGTH_CLIP, min(LENGTH_CLIP, int(d))), []).append(i)
    keep = list(bins.get(0, []))
    for k in range(1, LENGTH_CLIP + 1):
        longer, shorter = bins.get(k, []), bins.get(-k, [])
        m = min(len(longer), len(shorter))
        for side in (longer, shorter):
            keep.extend(rng.permutation(side)[:m].tolist() if len(side) > m else side)
    return sorted(keep)


def syntactic_benchmark(n_per_phenomenon: int | None = 8, seed: int = 0,
                        blimp_dir: str | Path | None = None) -> Benchmark:
    """sBLIMP-like pairs: ``n_per_phenomenon`` BLiMP pairs from each phenomenon file, balanced in
    length across the benchmark (:func:`balanced_sample`).

    ``blimp_dir`` (e.g. a full BLiMP checkout) replaces the 67 phenomena shipped in the package
    (50 pairs each).
    """
    from speechlm.eval.lexicon import phone_count

    folder = Path(blimp_dir) if blimp_dir else Path(str(_assets() / "blimp"))
    files = sorted(folder.glob("*.jsonl"))
    if not files:
        raise DataError(f"{folder}: no BLiMP .jsonl files")
    pools = [read_pairs_file(path) for path in files]
    deltas = [[phone_count(p.bad) - phone_count(p.good) for p in pool] for pool in pools]
    picks = balanced_sample(deltas, n_per_phenomenon, seed)
    pairs = tuple(pool[i] for pool, picked in zip(pools, picks) for i in picked)
    return Benchmark("syntactic", SYNTACTIC_VERSION, pairs,
                     {"n_per_phenomenon": n_per_phenomenon, "seed": seed,
                      "phenomena": [f.stem for f in files]})


def read_pairs_file(path: str | Path, name: str | None = None) -> list[Pair]:
    """Read BLiMP-format JSONL (``sentence_good``, ``sentence_bad``; ``UID`` groups results;
    optional ``prefix``: a context both sentences follow, conditioned on but not scored).

    Raises DataError naming the file and line for bad JSON, missing/empty fields or no pairs.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: pairs file not found")
    pairs = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{lineno}: not valid JSON ({err.msg} at column {err.colno})") \
                from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
        for key in ("sentence_good", "sentence_bad"):
            value = row.get(key)
            if not isinstance(value, str) or not value.strip():
                raise DataError(f"{path}:{lineno}: field {key!r} is missing or empty "
                                f"(BLiMP format needs 'sentence_good' and 'sentence_bad')")
        prefix = row.get("prefix", "")
        if not isinstance(prefix, str):
            raise DataError(f"{path}:{lineno}: field 'prefix' must be a string (the shared "
                            f"context), got {type(prefix).__name__}")
        group = str(row.get("UID") or name or path.stem)
        pair_id = f"{group}-{row.get('pairID', lineno)}"
        pairs.append(Pair(id=pair_id, good=row["sentence_good"].strip(),
                          bad=row["sentence_bad"].strip(), group=group, prefix=prefix.strip()))
    if not pairs:
        raise DataError(f"{path}: no pairs in this file")
    return pairs


def pairs_benchmark(path: str | Path) -> Benchmark:
    """A user's BLiMP-format pairs file as a benchmark named ``pairs:<file stem>``."""
    path = Path(path)
    return Benchmark(f"pairs:{path.stem}", PAIRS_VERSION, tuple(read_pairs_file(path)),
                     {"file": str(path.resolve())})


def _paragraph_sentences(text: str) -> list[list[str]]:
    """Paragraphs (blank-line separated) -> clean sentences, keeping their order and adjacency
    (a sentence that fails the filter becomes None so that neighbours stay neighbours)."""
    paragraphs = []
    for block in re.split(r"\n\s*\n", text):
        block = re.sub(r"\[.*?\]|_|\"|--", " ", block)
        block = re.sub(r"\s+", " ", block).strip()
        if not block:
            continue
        sentences = []
        for raw in _SENTENCE_END.split(block):
            s = raw.strip().strip("'")
            ok = _ALLOWED.match(s) and 4 <= len(s.split()) <= 16
            sentences.append(s if ok else None)
        paragraphs.append(sentences)
    return paragraphs


def _content_words(sentence: str) -> set[str]:
    return {w for w in re.findall(r"[a-z]+", sentence.lower()) if len(w) > 3 and w not in _STOP}


def _shape(sentence: str) -> tuple[int, int, str, int]:
    """What decides a spoken sentence's length: phonemes, pauses (``,;:``), the final mark
    (intonation) and words."""
    from speechlm.eval.lexicon import phone_count

    return (phone_count(sentence), len(re.findall(r"[,;:]", sentence)), sentence[-1],
            len(sentence.split()))


def _nearest(candidates: list[str], shapes: dict[str, tuple], target: tuple, longer: bool,
             rng: np.random.Generator) -> str:
    """The candidate closest to ``target`` (a :func:`_shape`): fewest phonemes apart, then the
    same pauses and final mark, then the fewest words apart; among those a longer one when
    ``longer`` (else a shorter one), so that what difference is left falls on both sides equally
    often across stories; then a seeded random one."""
    phones, pauses, mark, words = target

    def distance(c: str) -> tuple[int, int, int]:
        p, q, m, w = shapes[c]
        return abs(p - phones), abs(q - pauses) + (m != mark), abs(w - words)

    gaps = [distance(c) for c in candidates]
    best = min(gaps)
    near = [c for c, gap in zip(candidates, gaps) if gap == best]
    near = [c for c in near if (shapes[c][0] > phones) == longer] or near
    return near[int(rng.integers(len(near)))]


def storycloze_benchmarks(n: int | None = 100, seed: int = 0,
                          text_dir: str | Path | None = None) -> tuple[Benchmark, Benchmark]:
    """(tstorycloze, sstorycloze) over the same stories and true endings (see module docstring)."""
    folder = Path(text_dir) if text_dir else Path(str(_assets() / "stories"))
    books = sorted(folder.glob("*.txt"))
    if len(books) < 2:
        raise DataError(f"{folder}: storycloze needs at least 2 .txt books, found {len(books)}")
    stories = []   # (book index, flat position of the ending, context, ending)
    flat: list[list[tuple[int, str]]] = []  # per book: (position, sentence) of usable sentences
    for b, path in enumerate(books):
        position, usable = 0, []
        for para in _paragraph_sentences(path.read_text(encoding="utf-8")):
            for j, sentence in enumerate(para):
                if sentence is not None:
                    usable.append((position, sentence))
                if j >= 2 and None not in para[j - 2:j + 1]:
                    stories.append((b, position, f"{para[j - 2]} {para[j - 1]}", sentence))
                position += 1
        flat.append(usable)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(stories))
    chosen, used_endings = [], set()
    for idx in order:  # non-overlapping stories: no ending reused
        b, pos, context, ending = stories[idx]
        if (b, pos) in used_endings or (b, pos - 1) in used_endings or (b, pos + 1) in used_endings:
            continue
        used_endings.add((b, pos))
        chosen.append(int(idx))
        if n is not None and len(chosen) >= n:
            break
    shapes = {s[1]: _shape(s[1]) for usable in flat for s in usable}
    content = {sentence: _content_words(sentence) for sentence in shapes}
    t_pairs, s_pairs = [], []
    for k, idx in enumerate(sorted(chosen)):
        b, pos, context, ending = stories[idx]
        target, longer = shapes[ending], k % 2 == 0
        others = [s[1] for ob, usable in enumerate(flat) if ob != b for s in usable
                  if s[1] != ending]
        random_ending = _nearest(others, shapes, target, longer, rng)
        same_book = [s[1] for s in flat[b] if abs(s[0] - pos) >= 20 and s[1] != ending]
        topic = _content_words(context)
        overlapping = [s for s in same_book if content[s] & topic]
        same_topic = _nearest(overlapping, shapes, target, longer, rng) if overlapping else None
        if same_topic is None or abs(shapes[same_topic][0] - target[0]) > 1:
            same_topic = _nearest(same_book, shapes, target, longer, rng)
        sid = f"{books[b].stem}-{pos:05d}"
        t_pairs.append(Pair(id=sid, good=ending, bad=random_ending, group=books[b].stem,
                            prefix=context))
        s_pairs.append(Pair(id=sid, good=ending, bad=same_topic, group=books[b].stem,
                            prefix=context))
    params = {"n": n, "seed": seed, "books": [p.name for p in books]}
    return (Benchmark("tstorycloze", STORYCLOZE_VERSION, tuple(t_pairs), params),
            Benchmark("sstorycloze", STORYCLOZE_VERSION, tuple(s_pairs), params))


@dataclass(frozen=True)
class SuiteSizes:
    """Default benchmark sizes: 95% intervals of about +-0.03 (lexical), +-0.04 (syntactic) and
    +-0.1 (storycloze) while the spoken suite of a tiny model stays within 3 minutes cold."""

    lexical: int | None = 1060           # >= 1000 after the length balance of the scored units
    syntactic_per_phenomenon: int | None = 9  # 603 pairs, >= 500 after it
    storycloze: int | None = 100


def build_suite(suite: list[str] | tuple[str, ...], pairs_files: list[str | Path] = (),
                seed: int = 0, sizes: SuiteSizes = SuiteSizes()) -> list[Benchmark]:
    """Benchmarks for suite names (``lexical``, ``syntactic``, ``storycloze`` = t+s) plus files."""
    unknown = [s for s in suite if s not in SUITES]
    if unknown:
        raise DataError(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(SUITES)}")
    out: list[Benchmark] = []
    for name in suite:
        if name == "lexical":
            out.append(lexical_benchmark(sizes.lexical, seed))
        elif name == "syntactic":
            out.append(syntactic_benchmark(sizes.syntactic_per_phenomenon, seed))
        elif name == "storycloze":
            out.extend(storycloze_benchmarks(sizes.storycloze, seed))
    out.extend(pairs_benchmark(p) for p in pairs_files)
    return out
