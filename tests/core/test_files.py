import pytest

from speechlm.core.errors import CheckpointError, DataError
from speechlm.core.files import read_json


def test_read_json_names_the_file_and_the_problem(tmp_path):
    good = tmp_path / "good.json"
    good.write_text('{"a": 1}')
    assert read_json(good) == {"a": 1}
    with pytest.raises(DataError, match=r"none\.json: file not found"):
        read_json(tmp_path / "none.json")
    with pytest.raises(CheckpointError, match="not a model dir"):
        read_json(tmp_path / "none.json", CheckpointError, "not a model dir")
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    with pytest.raises(DataError, match=r"bad\.json: corrupt JSON"):
        read_json(bad)
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    with pytest.raises(DataError, match="expected a JSON object, found list"):
        read_json(listed)


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path):
    from speechlm.core.files import atomic_file, atomic_write, atomic_write_json

    target = tmp_path / "sub" / "best.json"
    atomic_write_json(target, {"step": 1})
    assert read_json(target) == {"step": 1}
    with pytest.raises(RuntimeError):
        with atomic_file(target) as tmp:
            tmp.write_text('{"step": 2, "half')
            raise RuntimeError("killed mid-write")
    assert read_json(target) == {"step": 1}
    assert sorted(p.name for p in target.parent.iterdir()) == ["best.json"]  # no temp left
    atomic_write(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"


def test_artefact_dir_errors_name_the_missing_part(tmp_path):
    from speechlm.core.files import read_artefact_dir

    with pytest.raises(CheckpointError, match=r"nope: vocoder directory not found"):
        read_artefact_dir(tmp_path / "nope", "vocoder")
    art = tmp_path / "voc"
    art.mkdir()
    with pytest.raises(CheckpointError, match=r"voc/config\.json: missing \(no config\.json: not a "
                                              r"vocoder directory\)"):
        read_artefact_dir(art, "vocoder")
    (art / "config.json").write_text('{"format": "other"}')
    with pytest.raises(CheckpointError, match=r"not a speechlm vocoder \(format 'other', expected 'v1'\)"):
        read_artefact_dir(art, "vocoder", fmt="v1")
    (art / "config.json").write_text('{"format": "v1", "k": 3}')
    with pytest.raises(CheckpointError, match=r"voc/model\.safetensors: missing \(vocoder weights\)"):
        read_artefact_dir(art, "vocoder", weights=("model.safetensors",), fmt="v1")
    (art / "model.safetensors").write_bytes(b"x")
    assert read_artefact_dir(art, "vocoder", weights=("model.safetensors",), fmt="v1")["k"] == 3
