"""trees.jsonl: one MCTS tree per line, appended per finished task, resumable."""

from __future__ import annotations

from pathlib import Path

from agentq.data.jsonl import JsonlAppender, check_output_path, iter_jsonl
from agentq.errors import UserInputError
from agentq.types import TaskTree


def read_trees(path: str | Path, *, include_failed: bool = False) -> list[TaskTree]:
    """Load every tree of a trees.jsonl file (failed tasks only when ``include_failed``)."""
    out = []
    for i, d in enumerate(iter_jsonl(path)):
        if "task_id" not in d or "nodes" not in d:
            raise UserInputError(f"{path}: record {i + 1} is not a tree (needs task_id and nodes)")
        t = TaskTree.from_dict(d)
        if t.status == "ok" or include_failed:
            out.append(t)
    return out


class TreeWriter(JsonlAppender):
    """Appends trees; ``finished`` holds the task ids already in the file (for resuming)."""

    def __init__(self, path: str | Path, *, resume: bool = False, overwrite: bool = False) -> None:
        check_output_path(path, resume=resume, overwrite=overwrite)
        p = Path(path)
        if p.exists() and overwrite and not resume:
            p.unlink()
        self.finished: set[str] = set()
        if p.exists():
            self.finished = {d["task_id"] for d in iter_jsonl(p, strict=False) if "task_id" in d}
        super().__init__(p)

    def write_tree(self, tree: TaskTree) -> None:
        """Append one task's tree."""
        self.write(tree.to_dict())
        self.finished.add(tree.task_id)
