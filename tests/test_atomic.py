"""Atomic writes: the new file whole, or the old one untouched, and no temporary left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from hagxai.atomic import WriteError, write_atomic, write_folder_atomic


def test_bytes_and_writers_replace_the_file(tmp_path):
    path = tmp_path / "f.json"
    write_atomic(path, b"first")
    assert path.read_bytes() == b"first"
    write_atomic(path, lambda temporary: Path(temporary).write_text("second"))
    assert path.read_text() == "second"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")

    def failing(temporary: Path) -> None:
        temporary.write_bytes(b"half of the ne")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomic(path, failing)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_a_missing_folder_is_an_error_and_writes_nothing(tmp_path):
    with pytest.raises(WriteError, match=r"missing/f: cannot write \(No such file or directory\)"):
        write_atomic(tmp_path / "missing" / "f", b"x")
    assert list(tmp_path.iterdir()) == []


def test_a_folder_appears_whole_or_not_at_all(tmp_path):
    folder = tmp_path / "entry"

    def write(text: str):
        def make(partial: Path) -> None:
            assert partial.is_dir() and not any(partial.iterdir())
            (partial / "a.txt").write_text(text)

        return make

    write_folder_atomic(folder, write("one"))
    assert (folder / "a.txt").read_text() == "one"

    def crash(partial: Path) -> None:
        (partial / "a.txt").write_text("half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        write_folder_atomic(folder, crash)
    assert (folder / "a.txt").read_text() == "one"  # the old folder is untouched
    write_folder_atomic(folder, write("two"))  # the next call clears the leftover .partial
    assert (folder / "a.txt").read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entry"]
