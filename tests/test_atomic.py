"""Folder writes through atomic.py: a folder appears whole or not at all, and no temp folder is left."""

import pytest

from parity.contracts.atomic import publish_dir, remove_dir, temp_dir


def test_an_existing_folder_wins_unless_replaced(tmp_path):
    target = tmp_path / "entry"
    for content, replace in (("first", False), ("second", False), ("third", True)):
        with temp_dir(target) as tmp:
            (tmp / "f").write_text(content)
            landed = publish_dir(tmp, target, replace=replace)
        assert landed == (content != "second")
    assert (target / "f").read_text() == "third"
    assert [p.name for p in tmp_path.iterdir()] == ["entry"]  # no temp folder left


def test_a_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "sub" / "out"
    with pytest.raises(RuntimeError), temp_dir(target, ".out.partial") as tmp:
        (tmp / "half").write_text("x")
        raise RuntimeError("interrupted")
    assert not target.exists() and list((tmp_path / "sub").iterdir()) == []
    (tmp_path / "sub" / ".out.partial").mkdir()
    (tmp_path / "sub" / ".out.partial" / "stale").write_text("from a killed run")
    with temp_dir(target, ".out.partial") as tmp:  # a stale folder of that name is cleared first
        assert list(tmp.iterdir()) == []


def test_remove_dir_takes_the_folder_away_whole(tmp_path):
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "w").write_text("x")
    remove_dir(tmp_path / "e")
    remove_dir(tmp_path / "missing")  # gone already: nothing to do
    assert list(tmp_path.iterdir()) == []
