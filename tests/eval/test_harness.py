import json
from itertools import product
from types import SimpleNamespace

import pytest

from speechlm.cli import main
from speechlm.core.errors import CheckpointError
from speechlm.data.audio import read_audio
from speechlm.eval.benchmarks import Benchmark, Pair, pairs_benchmark
from speechlm.eval.harness import EvalConfig, check_vocab, evaluate_lm
from speechlm.eval.report import write_demo_report, write_eval_report
from speechlm.eval.spoken import heldout_voices, render_audio
from speechlm.eval.testing import EnergyTokenizer, PreferenceModel, fake_speech_lm


@pytest.fixture
def pairs_file(tmp_path):
    rows = [("The dog runs home.", "The dog run home."), ("She likes tea.", "She like tea."),
            ("We were late.", "We was late.")]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps({"sentence_good": g, "sentence_bad": b}) + "\n"
                            for g, b in rows))
    return path


def test_speech_path_with_cache(tmp_path, pairs_file):
    lm, tok = fake_speech_lm(8), EnergyTokenizer(8)
    tok_dir = tmp_path / "tok"
    tok_dir.mkdir()
    (tok_dir / "config.json").write_text('{"units": 8}')
    config = EvalConfig(cache_dir=str(tmp_path / "cache"), show_progress=False, reference=False,
                        balance=False)  # every pair scored: this test is about the cache
    bench = pairs_benchmark(pairs_file)
    first = evaluate_lm(lm, [bench], config, tmp_path / "model", tok, str(tok_dir))
    entry = first["benchmarks"]["pairs:pairs"]
    assert entry["n"] == 3 and 0 <= entry["accuracy"] <= 1 and len(entry["ci95"]) == 2
    cached = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert sum(n.endswith(".audio.parquet") for n in cached) == 1
    assert sum(n.endswith(".units.parquet") for n in cached) == 1
    again = evaluate_lm(lm, [bench], config, tmp_path / "model", tok, str(tok_dir))
    assert again["benchmarks"]["pairs:pairs"]["accuracy"] == entry["accuracy"]


def _oracle_lm(lm, preferred: list[list[int]]):
    return SimpleNamespace(**{**vars(lm), "model": PreferenceModel(preferred, lm.vocab.n_units + 2)})


def test_harness_scores_the_good_item_as_good_on_speech(tmp_path, pairs_file):
    """An LM that prefers the good items must score 1.0 and one that prefers the bad items 0.0.
    The preferred ids are built here from the rendered audio, not by the harness."""
    lm, tok = fake_speech_lm(16), EnergyTokenizer(16)
    bench = pairs_benchmark(pairs_file)
    config = EvalConfig(cache_dir=str(tmp_path / "cache"), show_progress=False, reference=False,
                        balance=False)
    audio = render_audio(bench, heldout_voices(), config.cache_dir).to_pydict()

    def ids(which: str) -> list[list[int]]:
        return [lm.encode_units(tok.encode(read_audio(flac))[0].tolist()) for flac in audio[which]]

    good, bad = ids("good"), ids("bad")
    # the oracle cannot tell a sequence from a longer one it begins: the data must have none
    assert not any(x == y[:len(x)] for x, y in [*product(good, bad), *product(bad, good)])
    for preferred, expected in ((good, 1.0), (bad, 0.0)):
        result = evaluate_lm(_oracle_lm(lm, preferred), [bench], config, tmp_path / "m", tok)
        entry = result["benchmarks"]["pairs:pairs"]
        assert (entry["accuracy"], entry["accuracy_mean"], entry["ties"]) == (expected, expected, 0)


STORIES = Benchmark("story", "story-1", (
    Pair("s0", "He smiled.", "The sea froze.", prefix="Tom won the prize. He was happy."),
    Pair("s1", "She ran home.", "A cat sang.", prefix="It began to rain. Ann had no coat."),
))


def test_speech_story_scores_only_the_ending(tmp_path):
    """Spoken path with a shared context: the oracle decides, and only the ending's units are
    scored (counted here from the rendered clips, frames without dedup)."""
    lm, tok = fake_speech_lm(16), EnergyTokenizer(16)
    config = EvalConfig(cache_dir=str(tmp_path / "cache"), show_progress=False, reference=False,
                        dedup=False, balance=False)
    audio = render_audio(STORIES, heldout_voices(), config.cache_dir).to_pydict()

    def units(flac) -> list[int]:
        return tok.encode(read_audio(flac), dedup=False)[0].tolist()

    endings = {w: [units(f) for f in audio[w]] for w in ("good", "bad")}
    for which, expected in (("good", 1.0), ("bad", 0.0)):
        preferred = [lm.encode_units(units(p) + e) for p, e in zip(audio["prefix"], endings[which])]
        entry = evaluate_lm(_oracle_lm(lm, preferred), [STORIES], config, tmp_path / "m",
                            tok)["benchmarks"]["story"]
        assert (entry["accuracy"], entry["accuracy_mean"]) == (expected, expected)
    lengths = [len(e) for e in endings["good"] + endings["bad"]]
    assert entry["mean_tokens"] == sum(lengths) / len(lengths)


def _char_text_lm(vocab_size: int = 40):
    lm = fake_speech_lm(vocab_size)
    return SimpleNamespace(model=lm.model, vocab=lm.vocab, kind="text", tokenizer_dir=None,
                           encode_text=lambda t: [0] + [2 + ord(c) % vocab_size for c in t])


def test_harness_scores_only_the_continuation_of_a_story(tmp_path):
    """Text path with a shared context: the good item wins for an LM that prefers it, loses for
    one that prefers the bad item, and only ending tokens are scored (their mean count)."""
    bench = STORIES
    lm = _char_text_lm()
    config = EvalConfig(show_progress=False, reference=False, balance=False)
    for which, expected in (("good", 1.0), ("bad", 0.0)):
        preferred = [lm.encode_text(p.text(which)) for p in bench.pairs]
        oracle = SimpleNamespace(**{**vars(lm), "model": PreferenceModel(preferred, 42)})
        entry = evaluate_lm(oracle, [bench], config, tmp_path / "m")["benchmarks"]["story"]
        assert (entry["accuracy"], entry["accuracy_mean"]) == (expected, expected)
    endings = [len(" " + p.good) for p in bench.pairs] + [len(" " + p.bad) for p in bench.pairs]
    assert entry["mean_tokens"] == sum(endings) / len(endings)


def test_text_path(tmp_path, pairs_file):
    text_lm = _char_text_lm()
    result = evaluate_lm(text_lm, [pairs_benchmark(pairs_file)],
                         EvalConfig(show_progress=False, reference=False, balance=False),
                         tmp_path / "m")
    assert result["benchmarks"]["pairs:pairs"]["modality"] == "text"


def test_vocab_mismatch_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="has 100 speech units but tokenizer .* produces 50"):
        check_vocab(fake_speech_lm(100), EnergyTokenizer(50), "M", "T")


def test_cli_reports_line_of_malformed_pairs(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"sentence_good": "A.", "sentence_bad": "B."}\n{"sentence_good": "A."}\n')
    code = main(["eval", "--model", str(tmp_path / "no-model"), "--suite", "", "--pairs", str(bad),
                 "--out", str(tmp_path / "out")])
    assert code == 2
    assert "bad.jsonl:2: field 'sentence_bad'" in capsys.readouterr().err


def _results(acc):
    entry = {"accuracy": acc, "ci95": [acc - 0.1, acc + 0.1], "n": 10, "accuracy_mean": acc,
             "groups": {"g1": {"accuracy": acc, "ci95": [0.0, 1.0], "n": 5}}}
    return {"model": "/x/gslm-tiny", "kind": "speech", "tokenizer": "/x/tok", "dedup": True,
            "benchmarks": {"lexical": entry, "syntactic": dict(entry, accuracy=0.6)}}


def test_reports(tmp_path):
    write_eval_report(_results(0.55), tmp_path / "one")
    page = (tmp_path / "one" / "index.html").read_text()
    assert "<table>" in page and "accuracy.png" in page
    assert (tmp_path / "one" / "accuracy.png").stat().st_size > 1000
    assert "| lexical |" in (tmp_path / "one" / "report.md").read_text()

    run = tmp_path / "run"
    run.mkdir()
    run.joinpath("metrics.jsonl").write_text(
        "".join(json.dumps({"step": s, "loss": 5 - s / 10}) + "\n" for s in range(10))
        + json.dumps({"step": 9, "loss": 4.1, "valid_loss": 4.2}) + "\n")
    report = {"models": {"gslm-tiny": {"path": "a", "results": _results(0.55)["benchmarks"]},
                         "twist-tiny": {"path": "b", "results": _results(0.7)["benchmarks"]}},
              "tokenizer_metrics": {"abx": 0.2, "pnmi": {"value": 0.3}},
              "generation": {"gslm-tiny": {"metrics": {"gen_ppl": 120.0},
                                           "samples": [{"prompt_text": "hi", "wav": "a/0.wav",
                                                        "transcript": "hello"}]}},
              "timings": {"corpus": 10.0, "eval": 20.0}}
    write_demo_report(report, tmp_path / "demo", runs={"gslm-tiny": run})
    page = (tmp_path / "demo" / "index.html").read_text()
    assert "<audio controls" in page and "loss.png" in page and "twist-tiny" in page
    saved = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert set(saved["models"]) == {"gslm-tiny", "twist-tiny"}
    assert saved["models"]["twist-tiny"]["results"]["lexical"]["accuracy"] == 0.7


def test_eval_cli_writes_one_entry_per_benchmark(tmp_path, pairs_file, capsys):
    """`speechlm eval` on a (tiny, text) LM: results.json maps each benchmark to its entry."""
    from speechlm.cli import main
    from speechlm.lm.textlm import train_text_lm

    text = tmp_path / "t.txt"
    text.write_text(" ".join(f"The cat number {w} sat on the mat." for w in
                             ("one", "two", "three", "four", "five", "six") * 30))
    model = train_text_lm(tmp_path / "textlm", text=text, steps=2, bpe_size=300, seq_len=32,
                          batch_size=4, progress=False,
                          overrides={"hidden_size": 32, "num_layers": 2, "num_heads": 2,
                                     "intermediate_size": 64, "plot": False, "threads": 1})
    out = tmp_path / "eval"
    assert main(["eval", "--model", str(model), "--suite", "", "--pairs", str(pairs_file),
                 "--no-balance", "--out", str(out)]) == 0  # the good item is longer in all 3
    results = json.loads((out / "results.json").read_text())
    assert list(results) == ["pairs:pairs"]
    entry = results["pairs:pairs"]
    assert entry["n"] == entry["pairs"] == 3 and {"accuracy", "ci95"} <= entry.keys()
    untrained = results["pairs:pairs"]["untrained"]  # the reference row: same architecture
    assert set(untrained) == {"accuracy", "ci95", "accuracy_mean", "ci95_mean"}
    assert "untrained (same architecture)" in (out / "report.md").read_text()
    run = json.loads((out / "run.json").read_text())
    assert run["kind"] == "text" and run["model"] == str(model.resolve())
    assert (out / "index.html").is_file() and (out / "report.md").is_file()


def test_length_balance_puts_a_length_only_model_at_chance(tmp_path):
    """A uniform model prefers whichever item has fewer tokens. Where the good item is the shorter
    one in 3 pairs and the longer one in 1, scoring every pair gives it 0.7; the balanced harness
    scores one pair from each side (plus the equal-length pair) and gives it 0.5."""
    bench = Benchmark("lengths", "lengths-1", tuple(
        Pair(f"p{i}", good, bad) for i, (good, bad) in enumerate(
            [("ab.", "abcd."), ("cd.", "cdef."), ("ef.", "efgh."), ("ghij.", "gh."), ("xy.", "yx.")])))
    lm = _char_text_lm()
    uniform = SimpleNamespace(**{**vars(lm), "model": PreferenceModel([], 42)})
    for balance, (n, accuracy) in ((False, (5, 0.7)), (True, (3, 0.5))):
        config = EvalConfig(show_progress=False, reference=False, balance=balance)
        entry = evaluate_lm(uniform, [bench], config, tmp_path / "m")["benchmarks"]["lengths"]
        assert (entry["n"], entry["pairs"], entry["accuracy"]) == (n, 5, pytest.approx(accuracy))


def test_lexical_words_are_grouped_by_how_often_training_heard_them(tiny_corpus):
    import re
    from collections import Counter

    from speechlm.data.corpus import Corpus
    from speechlm.eval.harness import heard_groups

    counts = Counter(w for u in Corpus(tiny_corpus).utterances("train")
                     for w in re.findall(r"[a-z']+", u.text.lower()))
    common = counts.most_common(1)[0][0]
    once = next(w for w, n in counts.items() if n == 1)
    groups = heard_groups([common, once.upper(), "zzyzx"], tiny_corpus)
    assert groups[1:] == ["heard 1-3 times", "heard 0 times"]
    assert groups[0] == ("heard 10+ times" if counts[common] >= 10 else
                         "heard 4-9 times" if counts[common] >= 4 else "heard 1-3 times")
