"""trees.jsonl is single-writer, resumable to the last complete record, and never left torn.

A second writer of one output fails with one line; ``--resume`` keeps a complete last record
that lacks its newline and drops a torn one; ``agentq pairs`` refuses duplicate task trees; a
full disk or an unwritable output is one line and exit 2 with every written record intact.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from agentq.cli import app
from agentq.data import jsonl
from agentq.data.jsonl import JsonlAppender
from agentq.data.trees import TreeWriter, read_trees
from agentq.errors import UserInputError

runner = CliRunner()
COLLECT = ["collect", "--iterations", "6", "--n", "2", "--no-progress"]


def collect(out: Path, *extra: str) -> Any:
    return runner.invoke(app, [*COLLECT, "--out", str(out), *extra])


def one_error_line(r: Any) -> str:
    err = r.stderr.strip()
    assert r.exit_code == 2, (r.exit_code, r.output)
    assert err.startswith("error: ") and "\n" not in err, err
    return err


def task_ids(path: Path) -> list[str]:
    return [json.loads(line)["task_id"] for line in path.read_text().splitlines() if line]


# -- one writer ----------------------------------------------------------------------------


def test_a_second_writer_fails_with_one_line(tmp_path: Path) -> None:
    out = tmp_path / "t.jsonl"
    with TreeWriter(out):
        with pytest.raises(UserInputError, match="locked by another writer"):
            TreeWriter(out, resume=True)
        with pytest.raises(UserInputError, match="locked by another writer"):
            TreeWriter(out, overwrite=True)  # and it does not empty the file first
        for flag in ("--resume", "--overwrite"):
            err = one_error_line(collect(out, "--tasks", "2", flag))
            assert "locked" in err
    assert out.read_text() == ""
    r = collect(out, "--tasks", "2", "--resume")  # the lock went with the first writer
    assert r.exit_code == 0, r.output
    assert len(task_ids(out)) == 2


def test_the_lock_holds_across_processes(tmp_path: Path) -> None:
    out = tmp_path / "t.jsonl"
    code = (
        "import time; from agentq.data.jsonl import JsonlAppender; "
        f"w = JsonlAppender({str(out)!r}); print('held', flush=True); time.sleep(120)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        err = one_error_line(collect(out, "--tasks", "2", "--resume"))
        assert "locked" in err
    finally:
        holder.kill()
        holder.wait()
    assert collect(out, "--tasks", "2", "--resume").exit_code == 0


# -- resume --------------------------------------------------------------------------------


def test_resume_keeps_a_complete_last_record_without_its_newline(tmp_path: Path) -> None:
    out = tmp_path / "t.jsonl"
    assert collect(out, "--tasks", "3").exit_code == 0
    first = task_ids(out)
    out.write_bytes(out.read_bytes().rstrip(b"\n"))  # complete, unterminated
    r = collect(out, "--tasks", "5", "--resume")
    assert r.exit_code == 0, r.output
    assert "skipped 3" in r.output
    ids = task_ids(out)
    assert ids[:3] == first and len(ids) == len(set(ids)) == 5
    assert len(read_trees(out)) == 5


def test_resume_drops_a_torn_last_record(tmp_path: Path) -> None:
    out = tmp_path / "t.jsonl"
    assert collect(out, "--tasks", "3").exit_code == 0
    data = out.read_bytes()
    last_start = data.rstrip(b"\n").rfind(b"\n") + 1
    out.write_bytes(data[: last_start + (len(data) - last_start) // 2])  # cut mid-record
    r = collect(out, "--tasks", "3", "--resume")
    assert r.exit_code == 0, r.output
    assert "skipped 2" in r.output
    ids = task_ids(out)
    assert len(ids) == len(set(ids)) == 3


def test_resume_onto_a_pairs_file_appends_nothing(tmp_path: Path) -> None:
    trees, pairs = tmp_path / "t.jsonl", tmp_path / "p.jsonl"
    assert collect(trees, "--tasks", "3").exit_code == 0
    assert runner.invoke(app, ["pairs", str(trees), "--out", str(pairs)]).exit_code == 0
    before = pairs.read_bytes()
    err = one_error_line(collect(pairs, "--tasks", "3", "--resume"))
    assert "not a tree" in err
    assert pairs.read_bytes() == before


# -- pairs refuse duplicates ---------------------------------------------------------------


def test_pairs_refuse_duplicate_task_trees(tmp_path: Path) -> None:
    trees, pairs = tmp_path / "t.jsonl", tmp_path / "p.jsonl"
    assert collect(trees, "--tasks", "3").exit_code == 0
    lines = trees.read_text().splitlines()
    trees.write_text("\n".join([*lines, lines[0]]) + "\n")  # what two writers left behind
    err = one_error_line(runner.invoke(app, ["pairs", str(trees), "--out", str(pairs)]))
    assert "more than one tree" in err
    assert not pairs.exists()


# -- full disk, unwritable output ----------------------------------------------------------


def test_a_full_disk_is_one_line_and_keeps_every_written_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "t.jsonl"
    real_write = os.write
    writes = {"n": 0}

    def full_after_two(fd: int, data: Any) -> int:
        writes["n"] += 1
        if writes["n"] == 3:  # the third record: half of it lands, then the disk is full
            real_write(fd, bytes(data)[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(jsonl.os, "write", full_after_two)
    err = one_error_line(collect(out, "--tasks", "6"))
    assert "no space left" in err
    monkeypatch.setattr(jsonl.os, "write", real_write)
    assert out.read_bytes().endswith(b"\n")
    ids = task_ids(out)  # every line parses: the half record was taken back
    assert len(ids) == 2
    r = collect(out, "--tasks", "6", "--resume")
    assert r.exit_code == 0, r.output
    assert "skipped 2" in r.output
    assert len(set(task_ids(out))) == 6


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
def test_writing_to_dev_full_is_one_line() -> None:
    err = one_error_line(collect(Path("/dev/full"), "--tasks", "2", "--overwrite"))
    assert "no space left" in err
    assert os.path.exists("/dev/full")  # never unlinked


def test_pairs_on_a_full_disk_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trees, pairs = tmp_path / "t.jsonl", tmp_path / "p.jsonl"
    assert collect(trees, "--tasks", "3").exit_code == 0

    def full(fd: int, data: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(jsonl.os, "write", full)
    err = one_error_line(runner.invoke(app, ["pairs", str(trees), "--out", str(pairs)]))
    assert "no space left" in err


def test_an_unwritable_output_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for out in (blocker / "t.jsonl", blocker / "deeper" / "t.jsonl"):
        err = one_error_line(collect(out, "--tasks", "2"))
        assert "not a directory" in err
    with pytest.raises(UserInputError, match="cannot create"):
        JsonlAppender(blocker / "t.jsonl")
    assert blocker.read_text() == "x"


def test_appender_takes_back_a_failed_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = tmp_path / "a.jsonl"
    real_write = os.write
    with JsonlAppender(p) as w:
        w.write({"a": 1})

        def eio(fd: int, data: Any) -> int:
            real_write(fd, b'{"b": ')  # a torn start, then the device fails
            raise OSError(errno.EIO, "Input/output error")

        monkeypatch.setattr(jsonl.os, "write", eio)
        with pytest.raises(UserInputError, match="Input/output error"):
            w.write({"b": 2})
    assert p.read_text() == '{"a": 1}\n'
