"""JSON Lines helpers that survive a torn last line (a run killed mid-write)."""

from __future__ import annotations

import json
import os
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
        except json.JSONDecodeError as e:
            if i == len(lines) - 1:  # torn tail
                continue
            if strict:
                raise UserInputError(f"{p}:{i + 1}: not valid JSON ({e.msg})") from e
            continue
        if not isinstance(obj, dict):
            if strict:
                raise UserInputError(f"{p}:{i + 1}: expected a JSON object")
            continue
        yield obj


def repair_tail(path: str | Path) -> None:
    """Cut a torn last line off ``path`` so appends start on a fresh line."""
    p = Path(path)
    if not p.exists():
        return
    data = p.read_bytes()
    if not data or data.endswith(b"\n"):
        return
    cut = data.rfind(b"\n") + 1
    with open(p, "r+b") as f:
        f.truncate(cut)


class JsonlAppender:
    """Appends one JSON object per line, flushed after each line."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repair_tail(self.path)
        self._f = open(self.path, "a", encoding="utf-8")

    def write(self, obj: dict[str, Any]) -> None:
        """Append ``obj`` as one line and flush it to the OS."""
        self._f.write(json.dumps(obj, ensure_ascii=False) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        """Close the file."""
        self._f.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_output_path(path: str | Path, *, resume: bool, overwrite: bool) -> None:
    """One clear error when ``path`` exists and neither ``resume`` nor ``overwrite`` is set."""
    p = Path(path)
    if p.exists() and not (resume or overwrite):
        raise UserInputError(
            f"output {p} exists; pass --resume to continue it or --overwrite to replace it"
        )
    if p.exists() and p.is_dir():
        raise UserInputError(f"output {p} is a directory")
