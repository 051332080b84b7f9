"""visnet.files: a file is replaced whole or not at all, and no temporary file is left behind."""

import os

import pytest

from visnet.files import replacing, write_file


def test_write_file_replaces_the_old_file_and_leaves_nothing_else(tmp_path):
    path = tmp_path / "sub" / "state.json"  # the folder is made
    write_file(str(path), "old")
    write_file(str(path), b"new \xff")
    assert path.read_bytes() == b"new \xff"
    assert os.listdir(path.parent) == ["state.json"]
    plain = tmp_path / "plain"
    plain.write_text("x")
    assert os.stat(path).st_mode == os.stat(plain).st_mode  # the usual permissions, not owner-only


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="disk full"):
        with replacing(str(path), ".csv") as partial:
            assert partial.endswith(".csv") and os.path.dirname(partial) == str(tmp_path)
            with open(partial, "w") as handle:
                handle.write("half a fi")
            raise RuntimeError("disk full")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["rows.csv"]


def test_a_writer_that_writes_nothing_leaves_no_file(tmp_path):
    path = tmp_path / "weights.h5"
    with pytest.raises(FileNotFoundError):
        with replacing(str(path), ".weights.h5"):
            pass  # nothing written at the temporary path: there is nothing to rename
    assert os.listdir(tmp_path) == []
