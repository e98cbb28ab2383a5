"""Dialogue-like text: question/answer pairs and side conversations, split into disjoint groups.

Two sources, both shipped: question/answer pairs derived from the self-instruct seed tasks
(Apache-2.0, ``assets/dialogue/README.md`` says how), and the quoted speech of the public-domain
novels in ``assets/text`` (consecutive quoted paragraphs are alternating speakers; a line ending
in "?" followed by a reply makes a question/answer pair). Every item falls into one text group
by a hash of its text, so train, valid and evaluation dialogues never share a question.
"""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from speechlm.core.errors import DataError
from speechlm.data.synth import text_files_from

ALLOWED = re.compile(r"^[A-Za-z][A-Za-z ,;'.!?-]*$")
GROUPS = ("train", "valid", "eval")
GROUP_OF_SPLIT = {"train": "train", "valid": "valid", "test": "eval", "heldout": "eval"}
_DOUBLE = re.compile(r'"(.+?)"')
_SINGLE = re.compile(r"(?:^|(?<=[\s(]))'(.+?)'(?=[\s,.;:!?)]|$)")  # not apostrophes


@dataclass(frozen=True)
class QAPair:
    question: str
    answer: str


@dataclass(frozen=True)
class TextPool:
    """The text of one group: query/response pairs, side conversations, stray lines."""

    pairs: tuple[QAPair, ...]
    conversations: tuple[tuple[str, ...], ...]   # 2-4 alternating lines
    lines: tuple[str, ...]                        # sentences one person says to another


def group_of(text: str) -> str:
    """Stable text group: 80% train, 10% valid, 10% eval (test and heldout splits)."""
    bucket = zlib.crc32(text.encode("utf-8")) % 10
    return "valid" if bucket == 0 else "eval" if bucket == 1 else "train"


def instruction_pairs() -> list[QAPair]:
    path = resources.files("speechlm.data") / "assets" / "dialogue" / "instruction_pairs.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return [QAPair(row["question"], row["answer"]) for row in rows]


def quoted_lines(path: Path) -> list[str | None]:
    """The quoted speech of each paragraph (None where a paragraph has no clean quote)."""
    text = path.read_text(encoding="utf-8", errors="replace")
    pattern = _DOUBLE if text.count('"') > 100 else _SINGLE
    lines: list[str | None] = []
    for paragraph in re.split(r"\n\s*\n", text):
        quotes = pattern.findall(re.sub(r"\s+", " ", paragraph).replace("--", ", "))
        line = re.sub(r"\s+", " ", " ".join(q.strip() for q in quotes)).strip().rstrip(",")
        line = line[:1].upper() + line[1:]
        shouted = sum(w.isupper() for w in line.split()) > len(line.split()) // 2  # titles
        ok = quotes and ALLOWED.match(line) and 2 <= len(line.split()) <= 30 and not shouted
        lines.append(line if ok else None)
    return lines


def book_dialogue(paths: list[Path]) -> tuple[list[QAPair], list[tuple[str, ...]]]:
    """Question/answer pairs and 2-4 line conversations from consecutive quoted paragraphs."""
    pairs: list[QAPair] = []
    conversations: list[tuple[str, ...]] = []
    for path in paths:
        run: list[str] = []
        for line in quoted_lines(path) + [None]:
            if line is not None:
                run.append(line)
                continue
            pairs += [QAPair(q, a) for q, a in zip(run, run[1:]) if q.endswith("?")]
            conversations += [tuple(run[i:i + 4]) for i in range(0, len(run) - 1, 4)
                              if len(run[i:i + 4]) >= 2]
            run = []
    return pairs, conversations


def text_pools(text: str | Path | None = None) -> dict[str, TextPool]:
    """Pools for each text group from the instruction pairs and ``text`` (default: shipped)."""
    files = text_files_from(text)
    book_pairs, conversations = book_dialogue(files)
    pairs = list(dict.fromkeys(instruction_pairs() + book_pairs))
    conversations = list(dict.fromkeys(conversations))
    lines = list(dict.fromkeys(line for c in conversations for line in c))
    pools = {}
    for group in GROUPS:
        pools[group] = TextPool(
            pairs=tuple(p for p in pairs if group_of(p.question) == group),
            conversations=tuple(c for c in conversations if group_of(c[0]) == group),
            lines=tuple(s for s in lines if group_of(s) == group))
        empty = [name for name, items in vars(pools[group]).items() if not items]
        if empty:
            raise DataError(f"{', '.join(map(str, files))}: no {' or '.join(empty)} for the "
                            f"{group!r} text group (the text has too little quoted dialogue)")
    return pools
