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
