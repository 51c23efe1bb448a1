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


def finished_tasks(path: str | Path) -> set[str]:
    """The task ids already in the trees file ``path`` (empty when it is missing).

    A record that is not a tree (a pairs.jsonl given to ``--resume``) raises ``UserInputError``
    so that trees are never appended to another kind of file.
    """
    p = Path(path)
    if not p.is_file():
        return set()
    out: set[str] = set()
    for i, d in enumerate(iter_jsonl(p, strict=False)):
        if "task_id" not in d or "nodes" not in d:
            raise UserInputError(
                f"cannot resume {p}: record {i + 1} is not a tree (a pairs or other file?)"
            )
        out.add(str(d["task_id"]))
    return out


class TreeWriter(JsonlAppender):
    """Appends trees; ``finished`` holds the task ids already in the file (for resuming)."""

    def __init__(self, path: str | Path, *, resume: bool = False, overwrite: bool = False) -> None:
        check_output_path(path, resume=resume, overwrite=overwrite)
        p = Path(path)
        # lock first, then truncate or read: a second writer fails before touching the file
        super().__init__(p, truncate=overwrite and not resume)
        try:
            self.finished: set[str] = finished_tasks(p)
        except BaseException:
            self.close()
            raise

    def write_tree(self, tree: TaskTree) -> None:
        """Append one task's tree."""
        self.write(tree.to_dict())
        self.finished.add(tree.task_id)
