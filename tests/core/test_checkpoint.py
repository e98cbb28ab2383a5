from __future__ import annotations

import pytest

from speechlm.core.checkpoint import (atomic_dir, checkpoint_name, clean_temp, latest_checkpoint,
                                      list_checkpoints, prune_checkpoints)


def test_atomic_dir_crash_keeps_previous(tmp_path):
    final = tmp_path / checkpoint_name(1)
    with atomic_dir(final) as tmp:
        (tmp / "w").write_text("good")
    with pytest.raises(RuntimeError):
        with atomic_dir(final) as tmp:
            (tmp / "w").write_text("half")
            raise RuntimeError("crash during save")
    assert (final / "w").read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == [final.name]


def test_leftover_temp_is_ignored_and_cleaned(tmp_path):
    for step in (1, 2, 3):
        with atomic_dir(tmp_path / checkpoint_name(step)) as tmp:
            (tmp / "w").write_text(str(step))
    (tmp_path / f".tmp-{checkpoint_name(4)}-dead").mkdir()  # a save killed mid-way
    assert latest_checkpoint(tmp_path).name == checkpoint_name(3)
    clean_temp(tmp_path)
    prune_checkpoints(tmp_path, keep_last=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == [checkpoint_name(2), checkpoint_name(3)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [checkpoint_name(2), checkpoint_name(3)]
