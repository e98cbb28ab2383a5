import json

import numpy as np
import soundfile as sf

from speechlm.cli import main
from speechlm.data.corpus import Corpus
from tests.conftest import tone


def make_messy_folder(root):
    spk = root / "alice"
    spk.mkdir(parents=True)
    for i in range(3):
        sf.write(spk / f"good{i}.wav", tone(0.6, freq=200 + 50 * i), 16_000)
        (spk / f"good{i}.txt").write_text(f"good file number {i}\n")
    sf.write(spk / "stereo.flac", tone(0.8, rate=44_100, channels=2), 44_100)
    (spk / "stereo.txt").write_text("stereo file")
    (spk / "corrupt.wav").write_bytes(b"RIFF1234WAVEfmt garbage garbage")
    (spk / "corrupt.txt").write_text("corrupt")
    sf.write(spk / "empty.wav", np.zeros(0, dtype=np.float32), 16_000)
    (spk / "empty.txt").write_text("empty")
    nan = tone(0.3)
    nan[100:110] = np.nan
    sf.write(spk / "nan.wav", nan, 16_000, subtype="FLOAT")
    (spk / "nan.txt").write_text("nan file")
    sf.write(spk / "orphan.wav", tone(0.4), 16_000)
    sf.write(spk / "long.wav", tone(3.0), 16_000)
    (spk / "long.txt").write_text("too long")
    (spk / "blank.txt").write_text("   \n")
    sf.write(spk / "blank.wav", tone(0.4), 16_000)


def test_wavtxt_import_keeps_good_and_rejects_bad(tmp_path, capsys):
    make_messy_folder(tmp_path / "src")
    out = tmp_path / "corpus"
    code = main(["corpus", "import", str(tmp_path / "src"), "--format", "wavtxt", "--out", str(out),
                 "--max-seconds", "2"])
    captured = capsys.readouterr()
    assert code == 0 and "Traceback" not in captured.out + captured.err
    corpus = Corpus(out)
    ids = sorted(u.id for u in corpus)
    assert ids == ["alice-good0", "alice-good1", "alice-good2", "alice-stereo"]
    stereo = next(u for u in corpus if u.id == "alice-stereo")
    assert abs(stereo.duration - 0.8) < 0.01 and stereo.samples().ndim == 1
    rejects = {json.loads(line)["path"].split("/")[-1]: json.loads(line)["reason"]
               for line in (out / "rejects.jsonl").read_text().splitlines()}
    assert set(rejects) == {"corrupt.wav", "empty.wav", "nan.wav", "orphan.wav", "long.wav",
                            "blank.wav"}
    assert "cannot decode" in rejects["corrupt.wav"]
    assert "empty" in rejects["empty.wav"]
    assert "NaN" in rejects["nan.wav"]
    assert "no transcript" in rejects["orphan.wav"]
    assert "longer than" in rejects["long.wav"]
    assert "empty transcript" in rejects["blank.wav"]
    assert "rejected 6" in captured.out


def test_strict_and_nothing_imported(tmp_path):
    make_messy_folder(tmp_path / "src")
    assert main(["corpus", "import", str(tmp_path / "src"), "--format", "wavtxt",
                 "--out", str(tmp_path / "c1"), "--strict"]) == 1
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.wav").write_bytes(b"not audio")
    (bad / "x.txt").write_text("x")
    assert main(["corpus", "import", str(bad), "--format", "wavtxt", "--out", str(tmp_path / "c2")]) == 1


def test_librispeech_layout(tmp_path):
    chapter = tmp_path / "ls" / "103" / "1240"
    chapter.mkdir(parents=True)
    lines = []
    for i in range(2):
        sf.write(chapter / f"103-1240-000{i}.flac", tone(0.5), 16_000)
        lines.append(f"103-1240-000{i} CHAPTER ONE LINE {i}")
    sf.write(chapter / "103-1240-0009.flac", tone(0.5), 16_000)  # no transcript line
    (chapter / "103-1240.trans.txt").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    assert main(["corpus", "import", str(tmp_path / "ls"), "--format", "librispeech",
                 "--out", str(out)]) == 0
    corpus = Corpus(out)
    assert sorted(u.id for u in corpus) == ["103-1240-0000", "103-1240-0001"]
    assert {u.speaker for u in corpus} == {"103"}
    assert next(iter(corpus)).text.startswith("CHAPTER ONE")
    rejects = (out / "rejects.jsonl").read_text()
    assert "103-1240-0009" in rejects and "trans.txt" in rejects


def test_import_assigns_valid_and_test_splits(tmp_path):
    from speechlm.data.importers import import_corpus

    spk = tmp_path / "src" / "bob"
    spk.mkdir(parents=True)
    for i in range(6):
        sf.write(spk / f"u{i}.wav", tone(0.3, freq=150 + 20 * i), 16_000)
        (spk / f"u{i}.txt").write_text(f"utterance {i}")
    result = import_corpus(tmp_path / "src", tmp_path / "c", "wavtxt", valid_every=3, test_every=3,
                           show_progress=False)
    splits = {u.id: u.split for u in result.corpus}
    assert splits == {"bob-u0": "train", "bob-u1": "test", "bob-u2": "valid",
                      "bob-u3": "train", "bob-u4": "test", "bob-u5": "valid"}
