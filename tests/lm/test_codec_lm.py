"""Codec LMs: phonemes, the codec token dataset, prompted/NAR sequences, the VALL-E, layout and
AudioLM recipes end to end on a tiny random codec, and `speechlm tts` with its one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from speechlm.cli import main as cli
from speechlm.core.errors import ConfigError, DataError
from speechlm.data.audio import write_wav
from speechlm.data.corpus import Corpus
from speechlm.data.phonemes import Phonemizer, split_sentences
from speechlm.lm.codec.data import CodecDataset, build_codec_dataset
from speechlm.lm.codec.sequences import (IGNORE, asr_example, codec_vocab, nar_example,
                                         prompted_example, task_prefix)
from speechlm.lm.layout import get_layout
from speechlm.lm.streams import TokenSpace
from speechlm.pipeline import train_from_config
from speechlm.tokenizers.codec import Codec
from speechlm.tokenizers.codec.model import CodecConfig, CodecModel
from tests.lm.conftest import RECIPES, TINY

TINY_CODEC = dict(channels=4, dim=16, codebooks=3, codebook_size=16, kmeans_iters=2)
FAST = TINY + ["max_steps=4", "save_every=4", "seq_len=512", "prompt_seconds=0.3"]


@pytest.fixture(scope="module")
def codec_tokens(tiny_corpus, tmp_path_factory):
    """A random (untrained) 3-codebook codec, an mfcc tokenizer, and the corpus encoded by both."""
    from speechlm.tokenizers import train_tokenizer

    root = tmp_path_factory.mktemp("codec-lm")
    torch.manual_seed(0)
    model = CodecModel(CodecConfig(**TINY_CODEC))
    model.train()
    model(torch.randn(2, 1, 3200) * 0.1, dropout_seed=0)  # k-means init of the codebooks
    Codec(model).save(root / "codec")
    train_tokenizer(tiny_corpus, root / "tok", features="mfcc", units=8, seed=0)
    build_codec_dataset(tiny_corpus, root / "codec", root / "tokens", root / "tok", progress=False)
    return root


def overrides(root, out, *extra):
    return FAST + [f"corpus_dir={root}/corpus-unused", f"tokenizer_dir={root}/tok",
                   f"codec_dir={root}/codec", f"tokens_dir={root}/tokens", f"output_dir={out}", *extra]


def test_phonemizer_matches_the_corpus_alignments(tiny_corpus):
    phonemizer = Phonemizer()
    agree = total = 0
    for utt in Corpus(tiny_corpus).utterances("train"):
        ours = [p for p in phonemizer.phonemize(utt.text) if p not in ("|", "sil")]
        spoken = [p[0] for p in utt.phones if p[0] != "sil"]
        agree += sum(a == b for a, b in zip(ours, spoken))
        total += max(len(ours), len(spoken))
    assert agree / total > 0.5  # same phoneme names; accents of other voices differ


def test_phonemizer_errors_and_sentence_chunks():
    phonemizer = Phonemizer()
    assert phonemizer.phonemize("Hi there. Bye!").count("sil") == 1
    with pytest.raises(DataError, match="empty"):
        phonemizer.phonemize("  ")
    with pytest.raises(DataError, match="cannot phonemize"):
        phonemizer.phonemize("hello 日本")
    with pytest.raises(DataError, match="no phonemes"):
        phonemizer.phonemize("...")
    chunks = split_sentences("One two. Three four? " + "word " * 60, max_chars=40)
    assert chunks[:2] == ["One two.", "Three four?"] and max(map(len, chunks)) <= 40


def test_dataset_holds_codes_phonemes_and_aligned_units(codec_tokens):
    ds = CodecDataset(codec_tokens / "tokens")
    rec = ds.records("train")[0]
    assert rec.codes.shape[0] == 3 and rec.codes.max() < 16
    assert rec.units.shape == (rec.codes.shape[1],) and rec.phonemes.size > 3
    assert set(ds.splits) >= {"train", "heldout"}


def test_prompted_example_scores_only_target_codes_and_eos(codec_tokens):
    ds = CodecDataset(codec_tokens / "tokens")
    vocab = codec_vocab(ds)
    space = TokenSpace(vocab, ("codec_0", "codec_1"), get_layout("delay", 2), ("task", "phonemes"))
    target, prompt = np.array([[1, 2, 3], [4, 5, 6]]), np.array([[7], [8]])
    ex = prompted_example(space, task_prefix("tts", phonemes=[0, 1]), target, prompt, "t")
    # <bos> <tts> p0 p1 <sep> | 4 frames + 1 delay step | <eos>
    assert ex.input_ids.shape == (2, 5 + 5 + 1)
    assert (ex.labels[:, :5] == IGNORE).all() and (ex.input_ids[1, 1:5] == vocab.pad_id).all()
    scored = ex.labels[:, 5:-1] != IGNORE
    assert scored.sum() == 6 and not scored[0, 0] and not scored[1, 1]   # prompt codes are context
    assert (ex.labels[:, -1] == vocab.eos_id).all()
    assert space.decode(ex.input_ids[:, 5:-1]).tolist() == [[7, 1, 2, 3], [8, 4, 5, 6]]


def test_asr_example_reads_codes_and_scores_only_the_phonemes(codec_tokens):
    vocab = codec_vocab(CodecDataset(codec_tokens / "tokens"))
    space = TokenSpace(vocab, ("codec_0", "codec_1"), get_layout("delay", 2), ("task", "phonemes"))
    ex = asr_example(space, np.array([[1, 2, 3], [4, 5, 6]]), [3, 0, 2], "t")
    # <bos> <asr> | 3 frames + 1 delay step | <sep> p3 p0 p2 | <eos>
    assert ex.input_ids.shape == (2, 2 + 4 + 4 + 1)
    assert (ex.labels[:, :7] == IGNORE).all()                   # codes and <sep> are context
    assert (ex.labels[0, 7:10] == ex.input_ids[0, 7:10]).all() and (ex.labels[1, 7:10] == IGNORE).all()
    assert (ex.input_ids[1, 6:10] == vocab.pad_id).all() and (ex.labels[:, -1] == vocab.eos_id).all()
    row0 = space.row_vocab(0)
    assert [row0.family_of(int(i)) for i in ex.input_ids[0, 7:10]] == ["phonemes"] * 3
    assert space.decode(ex.input_ids[:, 2:6]).tolist() == [[1, 2, 3], [4, 5, 6]]


def test_nar_example_hides_the_codebooks_it_predicts(codec_tokens):
    vocab = codec_vocab(CodecDataset(codec_tokens / "tokens"))
    space = TokenSpace(vocab, ("codec_0", "codec_1", "codec_2"), get_layout("parallel", 3),
                       ("task", "phonemes"))
    target, prompt = np.arange(12).reshape(3, 4) % 16, np.full((3, 2), 9)
    ex = nar_example(space, task_prefix("tts", phonemes=[0]), target, prompt, 1, "t")
    codes = ex.input_ids[:, -6:]
    assert (codes[1:, 2:] == vocab.pad_id).all() and (codes[:, :2] != vocab.pad_id).all()
    assert (ex.labels[[0, 2]] == IGNORE).all() and (ex.labels[1, -4:] != IGNORE).all()
    assert (ex.labels[1, :-4] == IGNORE).all()
    with pytest.raises(ConfigError):
        nar_example(space, [], target, prompt, 3, "t")


def test_valle_trains_and_tts_errors_are_one_line(codec_tokens, tiny_corpus, tmp_path, capsys):
    run = train_from_config(RECIPES / "valle-tiny.yaml", overrides(codec_tokens, tmp_path / "valle"))
    assert (run / "ar" / "best.json").is_file() and (run / "nar" / "model.safetensors").is_file()
    utt = next(iter(Corpus(tiny_corpus).utterances("heldout")))
    prompt = tmp_path / "prompt.wav"
    from speechlm.data.audio import read_audio
    write_wav(prompt, read_audio(utt.audio))
    out = tmp_path / "out.wav"
    long_text = "It was a bright cold day. The clocks were striking. " * 3
    assert cli(["tts", "--model", str(run), "--text", long_text, "--prompt-audio", str(prompt),
                "--out", str(out), "--threads", "1"]) == 0
    assert out.stat().st_size > 1000
    short = tmp_path / "short.wav"
    write_wav(short, np.zeros(100, dtype=np.float32))
    capsys.readouterr()
    cases = [(["--text", ""], "empty"), (["--text", "hello 日本"], "cannot phonemize"),
             (["--text", "hello", "--prompt-audio", str(short)], "shorter than one"),
             (["--text", "hello", "--model", str(run / "ar" / "nope")], "not found")]
    for extra, message in cases:
        args = {"--model": str(run), "--prompt-audio": str(prompt), "--out": str(out)}
        args.update(dict(zip(extra[::2], extra[1::2])))
        assert cli(["tts", *[x for kv in args.items() for x in kv]]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err.splitlines()[-1] and err.splitlines()[-1].startswith("error: ")
        assert "Traceback" not in err


@pytest.mark.parametrize("layout,depth", [("flatten", 0), ("delay", 0), ("parallel", 1)])
def test_single_model_layouts_do_tts_and_continuation(codec_tokens, tiny_corpus, tmp_path, layout, depth):
    from speechlm.data.audio import read_audio
    from speechlm.generation.codec_tts import CodecGenerator

    run = train_from_config(RECIPES / "codec-delay-tiny.yaml", overrides(
        codec_tokens, tmp_path / layout, f"layout={layout}", f"depth_layers={depth}",
        "delays=null"))
    gen = CodecGenerator(run)
    prompt = read_audio(next(iter(Corpus(tiny_corpus).utterances("heldout"))).audio)
    speech = gen.tts("Hello there.", prompt, prompt_seconds=0.3, seed=1)
    assert speech.codes.shape[0] == 3 and speech.audio.size == speech.codes.shape[1] * 320
    more = gen.continue_audio(prompt, 0.2, prompt_seconds=0.3)
    assert more.codes.shape == (3, 10)


def test_audiolm_three_stages_continue_and_are_not_tts(codec_tokens, tiny_corpus, tmp_path):
    from speechlm.data.audio import read_audio
    from speechlm.generation.codec_tts import CodecGenerator

    run = train_from_config(RECIPES / "audiolm-tiny.yaml", overrides(codec_tokens, tmp_path / "alm"))
    gen = CodecGenerator(run)
    prompt = read_audio(next(iter(Corpus(tiny_corpus).utterances("heldout"))).audio)
    more = gen.continue_audio(prompt, 0.2, prompt_seconds=0.3)
    assert more.codes.shape == (3, 10)
    with pytest.raises(ConfigError, match="not a TTS model"):
        gen.tts("hello", prompt)


def test_viola_recognizes_phonemes_and_other_models_refuse(codec_tokens, tiny_corpus, tmp_path, capsys):
    from speechlm.data.audio import read_audio
    from speechlm.generation.codec_tts import CodecGenerator

    run = train_from_config(RECIPES / "viola-tiny.yaml", overrides(codec_tokens, tmp_path / "viola"))
    gen = CodecGenerator(run)
    utt = next(iter(Corpus(tiny_corpus).utterances("heldout")))
    out = gen.recognize(read_audio(utt.audio))
    inventory = set(gen.models["ar"].vocab.family("phonemes").labels)
    assert set(out.phonemes) <= inventory and out.lm_seconds > 0
    assert gen.tts("Hello there.", read_audio(utt.audio), prompt_seconds=0.3).codes.shape[0] == 3
    wav = tmp_path / "in.wav"
    write_wav(wav, read_audio(utt.audio))
    capsys.readouterr()
    assert cli(["recognize", "--model", str(run), "--audio", str(wav), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["phonemes"] == out.phonemes
    short = tmp_path / "short.wav"
    write_wav(short, np.zeros(100, dtype=np.float32))
    assert cli(["recognize", "--model", str(run), "--audio", str(short)]) == 2
    assert "shorter than one" in capsys.readouterr().err
    limit = gen.models["ar"].model.config.max_position_embeddings
    long = tmp_path / "long.wav"          # more frames than the model has positions
    write_wav(long, np.tile(read_audio(utt.audio), 200)[:(limit + 50) * 320])
    assert cli(["recognize", "--model", str(run), "--audio", str(long)]) == 2
    assert f"{long}: {limit + 50} codec frames do not fit" in capsys.readouterr().err
    evaluation = tmp_path / "eval"
    args = ["eval", "--model", str(run), "--suite", "tts,continuation,asr", "--out", str(evaluation),
            "--items", "2", "--prompt-seconds", "0.3", "--continue-seconds", "0.2"]
    assert cli(args) == 2 and "needs --corpus" in capsys.readouterr().err       # --corpus missing
    assert cli(args + ["--corpus", str(tiny_corpus), "--json"]) == 0
    entry = json.loads((evaluation / "results.json").read_text())["codec_lm"]
    assert entry["tts"]["items"] == entry["asr"]["items"] == 2 and entry["tts"]["wer"] >= 0
    assert entry["tts"]["sim_gap"] is None and "one held-out speaker" in entry["tts"]["skipped"]
    assert {"original", "codec_resynthesis"} == set(entry["baselines"])
    assert entry["continuation"]["mel_distance"] > 0 and entry["asr"]["per"] >= 0
    tts_only = train_from_config(RECIPES / "codec-delay-tiny.yaml", overrides(
        codec_tokens, tmp_path / "tts", "tasks=[tts]"))
    assert cli(["recognize", "--model", str(tts_only), "--audio", str(wav)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ") and "not a speech recognition model" in err
    assert cli(["eval", "--model", str(tts_only), "--suite", "tts,asr", "--corpus", str(tiny_corpus),
                "--out", str(tmp_path / "e2")]) == 2        # refused before any suite runs
    assert "cannot be scored on ['asr'] (it does ['tts'])" in capsys.readouterr().err
    assert not (tmp_path / "e2" / "results.json").exists()
