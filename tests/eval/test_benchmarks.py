import json

import pytest

from speechlm.core.errors import DataError
from speechlm.eval import lexicon
from speechlm.eval.benchmarks import (build_suite, lexical_benchmark, pairs_benchmark,
                                      read_pairs_file, storycloze_benchmarks, syntactic_benchmark)


def test_builders_are_deterministic_for_a_seed():
    for build in (lambda s: lexical_benchmark(50, s), lambda s: syntactic_benchmark(4, s),
                  lambda s: storycloze_benchmarks(20, s)[1]):
        a, b, c = build(0), build(0), build(1)
        assert a.fingerprint() == b.fingerprint() and a.pairs == b.pairs
        assert a.fingerprint() != c.fingerprint()
        assert a.version


def test_lexical_pairs_are_word_vs_nonword():
    bench = lexical_benchmark(60, 0)
    cmu = lexicon.load_cmudict()
    assert len(bench.pairs) == 60
    for pair in bench.pairs:
        assert pair.good in cmu
        assert pair.good_speech.startswith("[[") and pair.bad_speech.startswith("[[")
        assert pair.good_speech != pair.bad_speech


def test_syntactic_groups_by_phenomenon():
    bench = syntactic_benchmark(5, 0)
    assert len(bench.groups) == 12 and len(bench.pairs) == 60
    assert all(p.good != p.bad for p in bench.pairs)


def test_storycloze_variants_share_stories():
    t, s = storycloze_benchmarks(30, 0)
    assert len(t.pairs) == len(s.pairs) == 30
    for tp, sp in zip(t.pairs, s.pairs):
        assert (tp.id, tp.prefix, tp.good) == (sp.id, sp.prefix, sp.good)
        assert tp.bad != tp.good and sp.bad != sp.good
        assert tp.text("good").startswith(tp.prefix)


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
