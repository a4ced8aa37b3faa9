"""flowlib._files: the one atomic-write helper (temp + fsync + rename, umask permissions)."""

from __future__ import annotations

import os
import stat

import pytest

from flowlib._files import AtomicFile, atomic_open, atomic_write, umask


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_umask_matches_the_process_umask():
    old = os.umask(0o027)
    try:
        assert umask() == 0o027
    finally:
        os.umask(old)


def test_new_file_gets_plain_open_permissions_not_mkstemp_0600(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "a.bin", b"abc")
    finally:
        os.umask(old)
    assert (tmp_path / "a.bin").read_bytes() == b"abc"
    assert _mode(tmp_path / "a.bin") == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]  # no temporary left


def test_replacing_keeps_the_existing_mode(tmp_path):
    target = tmp_path / "a.txt"
    target.write_bytes(b"old")
    os.chmod(target, 0o640)
    atomic_write(target, b"new")
    assert target.read_bytes() == b"new" and _mode(target) == 0o640


def test_failure_inside_atomic_open_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_open(target, "w", encoding="utf-8") as f:
            f.write("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_atomic_file_commit_and_abort(tmp_path):
    out = AtomicFile(tmp_path / "v.mp4", "w+b", suffix=".tmp.mp4")
    assert out.tmp.name.startswith(".v.mp4.") and out.tmp.suffix == ".mp4"
    out.file.write(b"frames")
    assert not (tmp_path / "v.mp4").exists()  # invisible until committed
    assert out.commit() == tmp_path / "v.mp4"
    assert (tmp_path / "v.mp4").read_bytes() == b"frames"
    with pytest.raises(RuntimeError, match="already"):
        out.commit()

    gone = AtomicFile(tmp_path / "w.bin")
    gone.file.write(b"x")
    gone.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]


def test_commit_of_a_file_written_by_name(tmp_path):
    out = AtomicFile(tmp_path / "z.zip", suffix=".zip")
    out.file.close()
    out.tmp.write_bytes(b"PK")
    out.commit()
    assert (tmp_path / "z.zip").read_bytes() == b"PK"


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        atomic_write(tmp_path / "nope" / "a.bin", b"")


def test_abandon_writes_deletes_the_temporaries_of_writes_in_progress(tmp_path):
    from flowlib._files import WritesAbandoned, abandon_writes, resume_writes, watch_commits

    committed = []
    with watch_commits(committed.append):
        atomic_write(tmp_path / "done.bin", b"complete")
        pending = AtomicFile(tmp_path / "half.bin")
        pending.file.write(b"half")
        try:
            assert abandon_writes() == [pending.tmp]
            assert sorted(p.name for p in tmp_path.iterdir()) == ["done.bin"]
            with pytest.raises(WritesAbandoned, match="half.bin"):
                pending.commit()
            with pytest.raises(WritesAbandoned, match="new.bin"):
                atomic_write(tmp_path / "new.bin", b"x")
        finally:
            resume_writes()
        atomic_write(tmp_path / "after.bin", b"y")
    assert committed == [tmp_path / "done.bin", tmp_path / "after.bin"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["after.bin", "done.bin"]
    assert (tmp_path / "done.bin").read_bytes() == b"complete"


def test_commits_of_other_threads_are_reported_and_aborted_writes_are_not(tmp_path):
    import threading

    from flowlib._files import watch_commits

    committed = []
    with watch_commits(committed.append):
        worker = threading.Thread(target=atomic_write, args=(tmp_path / "t.bin", b"t"))
        worker.start()
        worker.join()
        with pytest.raises(ZeroDivisionError):
            with atomic_open(tmp_path / "failed.bin") as f:
                f.write(b"x")
                1 / 0
    atomic_write(tmp_path / "outside.bin", b"o")
    assert committed == [tmp_path / "t.bin"]
