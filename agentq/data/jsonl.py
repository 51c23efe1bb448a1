"""JSON Lines helpers that survive a torn last line (a run killed mid-write)."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agentq.errors import UserInputError


def iter_jsonl(path: str | Path, *, strict: bool = True) -> Iterator[dict[str, Any]]:
    """Yield the objects of a JSON Lines file.

    A last line that is cut off (no newline, not valid JSON) is skipped: it is what a killed
    writer leaves behind. Any other malformed line raises ``UserInputError`` naming the line
    when ``strict`` (else it is skipped).
    """
    p = Path(path)
    if not p.exists():
        raise UserInputError(f"file not found: {p}")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise UserInputError(f"cannot read {p}: {e}") from e
    lines = data.split(b"\n")
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except (ValueError, RecursionError) as e:  # bad JSON or bad UTF-8
            if i == len(lines) - 1:  # torn tail
                continue
            if strict:
                reason = getattr(e, "msg", "nested too deeply")
                raise UserInputError(f"{p}:{i + 1}: not valid JSON ({reason})") from e
            continue
        if not isinstance(obj, dict):
            if strict:
                raise UserInputError(f"{p}:{i + 1}: expected a JSON object")
            continue
        yield obj


def _last_line_is_record(data: bytes) -> bool:
    """Whether the text after the last newline of ``data`` is one complete JSON object."""
    tail = data[data.rfind(b"\n") + 1 :]
    try:
        return isinstance(json.loads(tail), dict)
    except (ValueError, RecursionError):
        return False


def _repair_fd(fd: int) -> None:
    """Make the file behind ``fd`` end on a newline: a complete unterminated last record gets
    its newline, a torn one (a writer killed mid-line) is cut off."""
    size = os.fstat(fd).st_size
    if size == 0:
        return
    data = os.pread(fd, size, 0)
    if data.endswith(b"\n"):
        return
    if _last_line_is_record(data):
        os.write(fd, b"\n")  # O_APPEND: lands at the end
    else:
        os.ftruncate(fd, data.rfind(b"\n") + 1)


def repair_tail(path: str | Path) -> None:
    """Make ``path`` end on a newline so appends start on a fresh line.

    A complete last record that only lacks its newline is kept (the newline is added); a torn
    last line (not valid JSON: a killed writer's leftover) is cut off.
    """
    p = Path(path)
    if not p.is_file():
        return
    fd = os.open(p, os.O_RDWR | os.O_APPEND)
    try:
        _repair_fd(fd)
    finally:
        os.close(fd)


def _io_error(path: Path, e: OSError, what: str = "write") -> UserInputError:
    """One clear line for an OS error on ``path`` (full disk, no permission, not a directory)."""
    reason = e.strerror or str(e)
    if e.errno == errno.ENOSPC:
        reason = "no space left on the device"
    return UserInputError(f"cannot {what} {path}: {reason}")


class JsonlAppender:
    """Appends one JSON object per line, flushed and fsynced after each line.

    The file is held under an exclusive ``flock`` while open: a second writer of the same file
    fails at once with one clear error instead of interleaving records. A write that fails (a
    full disk, an I/O error) is undone, so the file still ends on the last complete record, and
    raised as a :class:`UserInputError`. ``truncate`` empties the file once the lock is held.
    """

    def __init__(self, path: str | Path, *, truncate: bool = False) -> None:
        self.path = Path(path)
        self._fd = -1
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as e:
            raise _io_error(self.path, e, "create") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            os.close(fd)
            raise UserInputError(
                f"{self.path} is locked by another writer (another agentq run on the same output?)"
            ) from e
        except OSError:  # a file system without locks: go on unlocked
            pass
        self._fd = fd
        try:
            regular = stat.S_ISREG(os.fstat(fd).st_mode)
            if truncate and regular:
                os.ftruncate(fd, 0)
            elif regular:
                _repair_fd(fd)
        except OSError as e:
            self.close()
            raise _io_error(self.path, e) from e

    def write(self, obj: dict[str, Any]) -> None:
        """Append ``obj`` as one line and fsync it; on failure the file is left as it was."""
        data = (json.dumps(obj, ensure_ascii=False) + "\n").encode("utf-8")
        start = os.fstat(self._fd).st_size
        try:
            view = memoryview(data)
            while view:
                k = os.write(self._fd, view)
                view = view[k:]
            os.fsync(self._fd)
        except OSError as e:
            try:
                os.ftruncate(self._fd, start)  # no torn record left behind
            except OSError:
                pass
            raise _io_error(self.path, e) from e

    def close(self) -> None:
        """Release the lock and close the file."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_output_path(path: str | Path, *, resume: bool, overwrite: bool) -> None:
    """One clear error when ``path`` exists and neither ``resume`` nor ``overwrite`` is set."""
    p = Path(path)
    if p.exists() and p.is_dir():
        raise UserInputError(f"output {p} is a directory")
    if p.exists() and not (resume or overwrite):
        raise UserInputError(
            f"output {p} exists; pass --resume to continue it or --overwrite to replace it"
        )
    check_parent_dirs(p)


def check_parent_dirs(path: str | Path) -> None:
    """One clear error when a folder above the output ``path`` is a regular file."""
    p = Path(path)
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserInputError(f"output {p}: {parent} is a file, not a directory")
            break


def check_not_input(out: str | Path, *inputs: str | Path) -> None:
    """One clear error when the output path ``out`` is one of the ``inputs`` (never clobber an
    input with its own output)."""
    o = Path(out)
    for i in inputs:
        ip = Path(i)
        same = o.resolve() == ip.resolve()
        if not same and o.exists() and ip.exists():
            try:
                same = os.path.samefile(o, ip)
            except OSError:
                same = False
        if same:
            raise UserInputError(f"output {o} is the input {ip}; choose another --out")
