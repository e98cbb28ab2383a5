import json
from importlib import resources

import pytest

from speechlm.core.errors import DataError
from speechlm.eval import benchmarks, lexicon
from speechlm.eval.benchmarks import (build_suite, lexical_benchmark, pairs_benchmark,
                                      read_pairs_file, storycloze_benchmarks, syntactic_benchmark)


def test_builders_are_deterministic_for_a_seed():
    for build in (lambda s: lexical_benchmark(50, s), lambda s: syntactic_benchmark(4, s),
                  lambda s: storycloze_benchmarks(20, s)[1]):
        a, b, c = build(0), build(0), build(1)
        assert a.fingerprint() == b.fingerprint() and a.pairs == b.pairs
        assert a.fingerprint() != c.fingerprint()
        assert a.version


def _shipped_rows() -> list[dict]:
    asset = resources.files("speechlm.eval") / "assets" / "lexical_pairs.jsonl"
    return [json.loads(line) for line in asset.read_text(encoding="utf-8").splitlines() if line]


def test_no_shipped_nonword_is_a_word():
    """Every shipped nonword differs from its word and is no CMU word, in spelling or in sound
    (pronunciation variants included)."""
    words, sounds = lexicon.cmu_words_and_sounds()
    rows = _shipped_rows()
    assert len(rows) >= 1000
    for row in rows:
        spelling = row["nonword_spelling"]
        word_sound, sound = (row[k].replace("-", "") for k in ("word_ipa", "nonword_ipa"))
        assert spelling != row["word"] and sound != word_sound, row
        assert spelling not in words and sound not in sounds, row
        assert row["word"] in words


def test_lexical_pairs_are_word_vs_nonword_balanced_in_length():
    bench = lexical_benchmark(1000, 0)
    words, _ = lexicon.cmu_words_and_sounds()
    assert len(bench.pairs) == 1000
    for pair in bench.pairs:
        assert pair.good in words and pair.bad not in words and pair.bad != pair.good
        assert pair.good_speech.startswith("[[") and pair.bad_speech.startswith("[[")
        assert pair.good_speech != pair.bad_speech
    # wuggy matches segments by written length: a few nonwords differ by a phoneme, balanced
    rows = _shipped_rows()
    deltas = [len(lexicon.split_ipa(row["nonword_ipa"].replace("-", "")))
              - len(lexicon.split_ipa(row["word_ipa"].replace("-", "")))
              for row in (rows[int(p.id.removeprefix("lex-"))] for p in bench.pairs)]
    assert sum(d < 0 for d in deltas) == sum(d > 0 for d in deltas) > 10


def test_nonword_check_rejects_words_in_sound_or_spelling():
    assert "spelled like its word" in lexicon.nonword_problem("sham", "ʃɑm", "sham")
    assert "sounds like its word" in lexicon.nonword_problem("coat", "koʊt", "cote")
    assert "CMU dictionary word" in lexicon.nonword_problem("coat", "loʊt", "lot")
    assert "pronunciation of a CMU" in lexicon.nonword_problem("bat", "kæt", "kadd")
    # "read" has two pronunciations; the second (ɹɛd) is a word too
    assert "pronunciation of a CMU" in lexicon.nonword_problem("reed", "ɹɛd", "rhedd")
    assert lexicon.nonword_problem("abroad", "ʌ-bɹuk", "ubrook") is None


def test_a_dictionary_word_in_the_asset_fails_the_build(tmp_path, monkeypatch):
    (tmp_path / "lexical_pairs.jsonl").write_text(json.dumps(
        {"word": "coat", "word_ipa": "koʊt", "nonword_ipa": "loʊt", "nonword_spelling": "lot",
         "overlap_ratio": "2/3"}) + "\n")
    monkeypatch.setattr(benchmarks, "_assets", lambda: tmp_path)
    with pytest.raises(DataError, match=r"lexical_pairs.jsonl:1: not a nonword \('lot' is a CMU"):
        lexical_benchmark(None)


def _length_signs(bench) -> tuple[int, int]:
    """(pairs whose good item has fewer phonemes, pairs whose good item has more)."""
    deltas = [lexicon.phone_count(p.bad) - lexicon.phone_count(p.good) for p in bench.pairs]
    return sum(d > 0 for d in deltas), sum(d < 0 for d in deltas)


def test_syntactic_samples_every_phenomenon_balanced_in_length():
    bench = syntactic_benchmark(8, 0)
    assert len(bench.groups) == 67 and len(bench.pairs) == 536
    assert all(sum(p.group == g for p in bench.pairs) == 8 for g in bench.groups)
    assert all(p.good != p.bad for p in bench.pairs)
    shorter, longer = _length_signs(bench)
    assert shorter == longer > 50


def test_balanced_sample_offsets_one_sided_groups():
    # group 0: the bad item is always 3 phonemes longer; group 1 offers both signs
    deltas = [[3] * 10, [-3] * 6 + [0] * 6 + [2] * 6]
    picks = benchmarks.balanced_sample(deltas, 4, seed=0)
    chosen = [deltas[g][i] for g, idx in enumerate(picks) for i in idx]
    assert [len(idx) for idx in picks] == [4, 4] and sorted(chosen) == [-3] * 4 + [3] * 4
    assert benchmarks.balanced_sample(deltas, None, 0) == [list(range(10)), list(range(18))]
    assert benchmarks.balanced_sample(deltas, 4, 0) == picks


def test_storycloze_variants_share_stories_and_match_lengths():
    t, s = storycloze_benchmarks(60, 0)
    assert len(t.pairs) == len(s.pairs) == 60
    for tp, sp in zip(t.pairs, s.pairs):
        assert (tp.id, tp.prefix, tp.good) == (sp.id, sp.prefix, sp.good)
        assert tp.bad != tp.good and sp.bad != sp.good
        assert tp.text("good").startswith(tp.prefix)
    for bench in (t, s):
        gaps = [abs(lexicon.phone_count(p.bad) - lexicon.phone_count(p.good)) for p in bench.pairs]
        assert sum(g <= 1 for g in gaps) >= 55
        shorter, longer = _length_signs(bench)
        assert abs(shorter - longer) <= 3


def test_syllabify_and_espeak_mapping():
    syl = lexicon.syllabify(("EH", "K", "S", "T", "R", "AH"))  # extra: ek-stra (maximal onset)
    assert syl == [((), "EH", ("K",)), (("S", "T", "R"), "AH", ())]
    assert lexicon.to_espeak(["ʌ", "baʊt"]) == "[[@'baUt]]"


def test_pairs_file_errors_name_the_line(tmp_path):
    good = {"sentence_good": "The cat sleeps.", "sentence_bad": "The cat sleep."}
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(good) + "\n{not json\n")
    with pytest.raises(DataError, match=r"pairs.jsonl:3: not valid JSON"):
        read_pairs_file(path)
    path.write_text(json.dumps(good) + "\n" + json.dumps({"sentence_good": "x"}) + "\n")
    with pytest.raises(DataError, match=r"pairs.jsonl:2: field 'sentence_bad'"):
        read_pairs_file(path)
    path.write_text("[1, 2]\n")
    with pytest.raises(DataError, match=r":1: expected a JSON object"):
        read_pairs_file(path)
    path.write_text("\n")
    with pytest.raises(DataError, match="no pairs"):
        read_pairs_file(path)


def test_pairs_benchmark_and_suite(tmp_path):
    path = tmp_path / "mine.jsonl"
    rows = [{"sentence_good": f"Good {i}.", "sentence_bad": f"Bad {i}.", "UID": "u"}
            for i in range(3)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    bench = pairs_benchmark(path)
    assert bench.name == "pairs:mine" and len(bench.pairs) == 3
    suite = build_suite(["syntactic"], [path])
    assert [b.name for b in suite] == ["syntactic", "pairs:mine"]
    with pytest.raises(DataError, match="unknown benchmark"):
        build_suite(["nope"])


def test_length_balanced_keeps_equal_pairs_and_evens_each_bin():
    deltas = [1, 1, 1, -1, 0, 0, 6, -5, 5, -2]  # +-4 and beyond share a bin
    keep = benchmarks.length_balanced(deltas, seed=0)
    kept = [deltas[i] for i in keep]
    assert kept.count(0) == 2 and kept.count(1) == kept.count(-1) == 1
    assert sum(d >= 4 for d in kept) == sum(d <= -4 for d in kept) == 1 and -2 not in kept
    assert benchmarks.length_balanced(deltas, seed=0) == keep == sorted(keep)
