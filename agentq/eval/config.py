"""The settings of an evaluation run (``agentq eval``): one dataclass, the single source of the
command's flags, their defaults, help text and checks (see :mod:`agentq.config`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentq.backends import ExecutionConfig
from agentq.config import check_number, key_values_option, nested, option, validate
from agentq.errors import UserInputError
from agentq.search.mcts import MAX_N

DEFAULT_METHODS = "greedy,sample,best-of-n,random,majority"
BEST_OF_N_NAMES = ("best-of-n", "bon", "best-of")


def split_list(values: Any) -> list[str]:
    """Comma-separated strings (one or several) as one list of stripped, non-empty items."""
    if isinstance(values, str):
        values = [values]
    out: list[str] = []
    for v in values:
        out.extend(x.strip() for x in str(v).split(",") if x.strip())
    return out


def _tasks(value: Any) -> Any:
    return list(value) if isinstance(value, list | tuple) else value


@dataclass
class EvalConfig:
    """What ``agentq eval`` runs: a policy on an environment split, compared across methods.

    Build it directly, from option names (:func:`agentq.config.from_options`: command line,
    config file), or through :func:`agentq.eval.runner.run_evaluation`'s keywords.
    """

    env: str = option("toy", help="Environment name (agentq.envs registry).")
    split: str = option("test", help="Task split.")
    policy: str = option("random", help="MODEL spec of the agent's policy.")
    qmodel: Path | None = option(
        None, help="Q-value model directory (best-of-N scorer qmodel:DIR)."
    )
    scorers: list[str] = option(
        [],
        name="scorer",
        help="Other SCORER specs for best-of-N (repeatable).",
        parse=lambda v: [v] if isinstance(v, str) else list(v),
    )
    methods: list[str] = option(
        split_list(DEFAULT_METHODS),
        help="Methods, comma-separated: " + DEFAULT_METHODS + ".",
        parse=split_list,
    )
    n: list[int] = option(
        [5],
        help="Candidates per step for the N-sample methods (repeatable).",
        parse=lambda v: [v] if isinstance(v, int) else list(v),
        lo=1,
        hi=MAX_N,
    )
    tasks: int | list[str] = option(
        0,
        help="Number of tasks (0 = the whole split).",
        cli_type=int,
        parse=_tasks,
    )
    """A count (the first K of the split, 0 = all) or, from Python, a list of task ids."""
    max_steps: int = option(0, help="Step limit per episode (0 = the environment's own).", lo=0)
    temperature: float = option(1.0, help="Sampling temperature (greedy uses 0).", lo=0)
    seed: int = option(0, help="Seed of every random choice (same per task for every method).")
    out: Path = option(Path("report"), help="Report directory.")
    resume: bool = option(False, help="Continue a run in --out, skipping finished (method, task).")
    overwrite: bool = option(False, help="Replace an existing run in --out.")
    concurrency: int = option(1, help="Tasks run at once within a method.", lo=1)
    env_options: dict[str, Any] = key_values_option(
        "env_option", help="key=value passed to the env."
    )
    scorer_options: dict[str, Any] = key_values_option(
        "scorer_option", help="key=value passed to scorers."
    )
    policy_options: dict[str, Any] = key_values_option(
        "policy_option", help="key=value passed to the policy."
    )
    cache_bytes: str | None = option(
        None,
        help="Budget of the prefix (KV) cache local models share, e.g. 512MiB or 2GB "
        "(default 512MiB; on Ray pass --policy-option/--scorer-option cache_bytes=...).",
    )
    view: bool = option(True, help="Also write trajectories.html.")
    progress: bool = option(True, help="Show progress bars.")
    execution: ExecutionConfig = nested(ExecutionConfig)

    def __post_init__(self) -> None:
        validate(self)
        if isinstance(self.tasks, int):
            check_number("tasks", self.tasks, lo=0)
        elif not all(isinstance(t, str) for t in self.tasks):
            raise UserInputError("--tasks must be a number or a list of task ids")
        if self.resume and self.overwrite:
            raise UserInputError("pass either --resume or --overwrite, not both")
        self.methods = split_list(self.methods)
        if self.cache_bytes is not None:  # bad input before anything loads or is written
            from agentq.models.prefix_cache import parse_cache_bytes

            parse_cache_bytes(self.cache_bytes)

    @property
    def scorer_specs(self) -> list[str]:
        """Every SCORER spec of the best-of-N methods (``qmodel:DIR`` first)."""
        specs = list(self.scorers)
        if self.qmodel:
            specs.insert(0, f"qmodel:{self.qmodel}")
        return specs

    @property
    def method_kinds(self) -> list[str]:
        """The method kinds to run (best-of-N left out when no scorer is given)."""
        if self.scorer_specs:
            return list(self.methods)
        return [k for k in self.methods if k.replace("_", "-") not in BEST_OF_N_NAMES]


__all__ = ["DEFAULT_METHODS", "EvalConfig", "split_list"]
