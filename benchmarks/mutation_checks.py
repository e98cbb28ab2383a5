"""Can the tests fail? Apply each mutant of issue 18 to a copy of the tree and run its tests.

A mutant is one small edit that reintroduces a defect the evaluation-integrity audit found (or
breaks a guarantee its fix added): a ``save()`` that writes untrained weights, an inverted
``compare()``, a cache key that forgets an input, a nonword that is a dictionary word, and so
on. Each is applied to a fresh copy of the working tree (the files ``git ls-files`` lists, as
they are on disk), the tests that guard it run there with ``pytest -x``, and the mutant counts
as **killed** when they fail (pytest exit 1). The unmutated copy runs the same tests first (the
baseline: all must pass). The working tree itself is never edited.

    .venv/bin/python benchmarks/mutation_checks.py            # all mutants (~10 min, 2 cores)
    .venv/bin/python benchmarks/mutation_checks.py --only compare-inverted,units-key-no-audio

Writes results/mutation_checks.json: per mutant the file, the edit, the tests, pytest's exit
code, the first failing test and its assertion line. ``value`` is the number of mutants that
survived (must be 0), ``baseline`` the number of mutants.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
from common import write_result  # noqa: E402


@dataclass(frozen=True)
class Mutant:
    name: str
    defect: str                # what the mutant reintroduces (issue 18's wording)
    path: str                  # file edited, relative to the repository root
    old: str                   # exact text replaced (must occur once)
    new: str
    tests: tuple[str, ...]     # pytest node ids that must fail


LEXICAL_ASSET = "src/speechlm/eval/assets/lexical_pairs.jsonl"

MUTANTS = (
    Mutant("vocoder-save-untrained", "vocoder save() writes untrained weights",
           "src/speechlm/vocoder/unit_vocoder.py",
           "save_file({k: v.contiguous() for k, v in voc.state_dict().items()}",
           "save_file({k: v.contiguous() for k, v in type(voc)(voc.config, voc.speakers)"
           ".state_dict().items()}",
           ("tests/vocoder/test_vocoder.py::test_round_trip_matches_the_trained_model",)),
    Mutant("ssl-tokenizer-save-untrained", "tokenizer save() writes untrained encoder weights",
           "src/speechlm/tokenizers/semantic/extractors.py",
           "state = {k: v.contiguous() for k, v in self.model.state_dict().items()}",
           "state = {k: v.contiguous() for k, v in type(self.model)(self.model.config)"
           ".state_dict().items()}",
           ("tests/tokenizers/test_tokenizers.py::test_saved_tokenizer_is_the_trained_one",)),
    Mutant("tokenizer-save-other-centroids", "tokenizer save() writes other centroids",
           "src/speechlm/tokenizers/semantic/kmeans.py",
           'save_file({"centroids": self.centroids,',
           'save_file({"centroids": self.centroids[::-1].copy(),',
           ("tests/tokenizers/test_tokenizers.py::test_saved_tokenizer_is_the_trained_one",)),
    Mutant("compare-inverted", "compare() inverted (the bad item counted as chosen)",
           "src/speechlm/eval/scoring.py",
           "outcome = np.where(g > b, 1.0, 0.0)", "outcome = np.where(g < b, 1.0, 0.0)",
           ("tests/eval/test_harness.py",)),
    Mutant("layer-check-ignores-function-imports",
           "the layer test cannot fail (it skips imports inside functions)",
           "tests/test_layers.py",
           "for node in ast.walk(ast.parse(source)):\n        names",
           "for node in ast.parse(source).body:\n        names",
           ("tests/test_layers.py",)),
    Mutant("upward-import", "a lower layer imports an upper one (core imports serve)",
           "src/speechlm/core/errors.py", "\nclass SpeechLMError",
           "\ndef _upward():\n    from speechlm.serve import protocol  # noqa: F401\n\n\n"
           "class SpeechLMError",
           ("tests/test_layers.py",)),
    Mutant("cli-command-renamed", "the layer/CLI test checks only that help is non-empty",
           "src/speechlm/cli/vocoder.py", 'sub.add_parser("resynth",',
           'sub.add_parser("resynth-x",',
           ("tests/test_layers.py::test_cli_has_every_stage_and_each_help_names_its_options",)),
    Mutant("nonword-check-off", "the lexical builder never checks that a nonword is not a word",
           "src/speechlm/eval/lexicon.py",
           "    if spelling in words:\n", "    if False and spelling in words:\n",
           ("tests/eval/test_benchmarks.py",)),
    Mutant("shipped-nonword-is-a-word", "a shipped nonword is a CMU word (lot, thin, shook, ...)",
           LEXICAL_ASSET, '"nonword_spelling": "', '"nonword_spelling": "lot", "x": "',
           ("tests/eval/test_benchmarks.py::test_no_shipped_nonword_is_a_word",)),
    Mutant("storycloze-matched-by-words", "StoryCloze distractors matched in words, not in "
           "phonemes", "src/speechlm/eval/benchmarks.py",
           "return abs(p - phones), abs(q - pauses) + (m != mark), abs(w - words)",
           "return abs(w - words), abs(q - pauses) + (m != mark), abs(p - phones)",
           ("tests/eval/test_benchmarks.py::test_storycloze_variants_share_stories_and_match_lengths",)),
    Mutant("storycloze-topic-before-length", "the shared-content-word preference wins over length",
           "src/speechlm/eval/benchmarks.py",
           "if same_topic is None or abs(shapes[same_topic][0] - target[0]) > 1:",
           "if same_topic is None:",
           ("tests/eval/test_benchmarks.py::test_storycloze_variants_share_stories_and_match_lengths",)),
    Mutant("syntactic-unbalanced", "syntactic pairs sampled without length balancing",
           "src/speechlm/eval/benchmarks.py", "    current = asymmetry()\n    while current > 0:",
           "    current = asymmetry()\n    while False:",
           ("tests/eval/test_benchmarks.py::test_syntactic_samples_every_phenomenon_balanced_in_length",)),
    Mutant("training-starts-without-bos", "training blocks start without <bos>, scoring with it",
           "src/speechlm/lm/sequences.py",
           "return [vocab.bos_id], [vocab.eos_id] if end else []",
           "return ([] if end else [vocab.bos_id]), [vocab.eos_id] if end else []",
           ("tests/lm/test_sequences.py",)),
    Mutant("units-key-no-audio", "units cache key omits the audio (voices, text) it encodes",
           "src/speechlm/eval/spoken.py",
           "key = _digest(audio_fingerprint(audio), tokenizer_fp, dedup, UNITS_FORMAT)",
           "key = _digest(tokenizer_fp, dedup, UNITS_FORMAT)",
           ("tests/eval/test_spoken.py",)),
    Mutant("units-key-no-tokenizer", "units cache key omits the tokenizer fingerprint",
           "src/speechlm/eval/spoken.py",
           "key = _digest(audio_fingerprint(audio), tokenizer_fp, dedup, UNITS_FORMAT)",
           "key = _digest(audio_fingerprint(audio), dedup, UNITS_FORMAT)",
           ("tests/eval/test_spoken.py",)),
    Mutant("units-key-no-dedup", "units cache key omits dedup",
           "src/speechlm/eval/spoken.py",
           "key = _digest(audio_fingerprint(audio), tokenizer_fp, dedup, UNITS_FORMAT)",
           "key = _digest(audio_fingerprint(audio), tokenizer_fp, UNITS_FORMAT)",
           ("tests/eval/test_spoken.py",)),
    Mutant("audio-key-no-voices", "audio cache key omits the voices",
           "src/speechlm/eval/spoken.py",
           "key = _digest(benchmark.fingerprint(), [asdict(v) for v in voices], chunk_size,",
           "key = _digest(benchmark.fingerprint(), chunk_size,",
           ("tests/eval/test_spoken.py",)),
    Mutant("audio-key-no-text", "audio cache key omits the benchmark's texts (seed, version)",
           "src/speechlm/eval/spoken.py",
           "key = _digest(benchmark.fingerprint(), [asdict(v) for v in voices], chunk_size,",
           "key = _digest([asdict(v) for v in voices], chunk_size,",
           ("tests/eval/test_spoken.py",)),
    Mutant("tokenizer-fingerprint-by-path", "tokenizer fingerprint by path, not content",
           "src/speechlm/eval/spoken.py",
           "                digest.update(chunk)\n    return digest.hexdigest()[:12]\n\n\n"
           "def audio_fingerprint",
           "                pass\n    return digest.hexdigest()[:12]\n\n\ndef audio_fingerprint",
           ("tests/eval/test_spoken.py",)),
    Mutant("mean-over-context", "per-token means over context + ending, not the ending alone",
           "src/speechlm/eval/scoring.py",
           "score_from = max(score_from, starts[i] - a)", "score_from = max(score_from, 1 - a)",
           ("tests/eval/test_scoring.py", "tests/eval/test_harness.py")),
    Mutant("no-untrained-reference", "the untrained reference left out of eval results",
           "src/speechlm/eval/harness.py",
           "reference = untrained_copy(lm, config.seed) if config.reference else None",
           "reference = None", ("tests/eval/test_harness.py",)),
)


def copy_tree(dest: Path) -> None:
    """The working tree's tracked files as they are on disk (uncommitted edits included)."""
    files = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z"], check=True,
                           capture_output=True, text=True).stdout.split("\0")
    for name in filter(None, files):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def apply(root: Path, mutant: Mutant) -> None:
    path = root / mutant.path
    text = path.read_text(encoding="utf-8")
    count = text.count(mutant.old)
    if mutant.path == LEXICAL_ASSET:  # one row only: the first
        count = min(count, 1)
    if count != 1:
        raise SystemExit(f"{mutant.name}: {mutant.old!r} occurs {count} times in {mutant.path}; "
                         "update the mutant")
    path.write_text(text.replace(mutant.old, mutant.new, 1), encoding="utf-8")


def run_tests(root: Path, tests: tuple[str, ...], timeout: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(root / "src"), "CI": "true"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                           *tests], cwd=root, env=env, capture_output=True, text=True,
                          timeout=timeout)
    out = proc.stdout + proc.stderr
    failed = re.findall(r"^FAILED (\S+)", out, re.M)
    assertion = re.findall(r"^E +(.+)$", out, re.M)
    return {"exit_code": proc.returncode, "seconds": round(time.perf_counter() - start, 1),
            "first_failure": failed[0] if failed else None,
            "assertion": assertion[0][:300] if assertion else None,
            "summary": (out.strip().splitlines() or [""])[-1][:300]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated mutant names (default all)")
    parser.add_argument("--timeout", type=int, default=1200, help="seconds per pytest run")
    args = parser.parse_args()
    chosen = [m for m in MUTANTS if not args.only or m.name in args.only.split(",")]
    tests = tuple(dict.fromkeys(t for m in chosen for t in m.tests))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        clean = Path(tmp) / "clean"
        copy_tree(clean)
        baseline = run_tests(clean, tests, args.timeout)
        print(f"baseline (no mutant): exit {baseline['exit_code']} {baseline['summary']}",
              flush=True)
        if baseline["exit_code"] != 0:
            raise SystemExit("the unmutated tests fail: fix them first")
        rows = []
        for mutant in chosen:
            root = Path(tmp) / mutant.name
            shutil.copytree(clean, root)
            apply(root, mutant)
            result = run_tests(root, mutant.tests, args.timeout)
            shutil.rmtree(root)
            killed = result["exit_code"] == 1
            rows.append({"mutant": mutant.name, "defect": mutant.defect, "file": mutant.path,
                         "old": mutant.old, "new": mutant.new, "tests": list(mutant.tests),
                         "killed": killed, **result})
            print(f"{mutant.name:38s} {'killed' if killed else 'SURVIVED':8s} "
                  f"exit {result['exit_code']} {result['first_failure'] or result['summary']}",
                  flush=True)
    survived = [r["mutant"] for r in rows if not r["killed"]]
    path = write_result("mutation_checks", {"tests": list(tests), "only": args.only or None},
                        len(survived), len(rows),
                        "mutants whose tests still pass (must be 0); baseline = mutants tried",
                        survived=survived, baseline_run=baseline,
                        seconds=round(time.perf_counter() - start), mutants=rows)
    print(f"{len(rows) - len(survived)}/{len(rows)} mutants killed; wrote {path}")


if __name__ == "__main__":
    main()
