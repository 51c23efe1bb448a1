"""CLI commands of the evaluation part: ``eval``, ``eval-toolcomp``, ``eval-pairs``, ``view``, ``demo``.

Heavy imports (torch, transformers, matplotlib) happen inside the command bodies.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from agentq.cli_common import config_command
from agentq.config import check_number, key_values_option, option, validate
from agentq.eval.config import DEFAULT_METHODS, EvalConfig

__all__ = [
    "DEFAULT_METHODS",
    "DemoConfig",
    "EvalPairsConfig",
    "EvalToolCompConfig",
    "ViewConfig",
    "register",
]


def _paths(value: Any) -> list[Path]:
    """One path or a list of them (a config file's strings) as paths."""
    return [Path(v) for v in ([value] if isinstance(value, str | Path) else value)]


def _path_or_none(value: Any) -> Path | None:
    return None if value is None else Path(value)


@dataclass
class ViewConfig:
    """What ``agentq view`` writes: an HTML view of a trees.jsonl or trajectories.jsonl."""

    path: Path = option(help="trees.jsonl or an eval trajectories.jsonl.", argument=True)
    out: Path | None = option(None, help="Output HTML (default: next to the input, .html).")
    limit: int = option(0, help="Show at most this many tasks (0 = all).", lo=0)
    max_chars: int = option(4000, help="Clip actions and observations longer than this.", lo=1)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.out = _path_or_none(self.out)
        validate(self)


_OBSERVATION_HELP = (
    "score a candidate step with its observation, as ToolComp's judge sees it "
    "(--no-candidate-observation: the step alone, a departure)."
)


@dataclass
class EvalPairsConfig:
    """What ``agentq eval-pairs`` runs: a Scorer's pairwise accuracy per file."""

    files: list[Path] = option(
        help="TARA files or directories, or pairs.jsonl files.", argument=True, parse=_paths
    )
    scorer: str = option("tool-verify", help="SCORER spec.")
    limit: int = option(0, help="At most this many pairs per file (0 = all).", lo=0)
    out: Path | None = option(None, help="Write the results as JSON here.")
    scorer_options: dict[str, Any] = key_values_option(
        "scorer_option", help="key=value passed to the scorer."
    )
    progress: bool = option(True, help="Show a progress bar.")
    candidate_observation: bool = option(True, help="ToolComp rows: " + _OBSERVATION_HELP)

    def __post_init__(self) -> None:
        self.files = _paths(self.files)
        self.out = _path_or_none(self.out)
        validate(self)


@dataclass
class EvalToolCompConfig:
    """What ``agentq eval-toolcomp`` runs: ToolComp-style metrics of one file."""

    path: Path = option(
        help="JSON/JSONL file in a ToolComp-style format (see docs/eval.md).", argument=True
    )
    scorer: str = option(
        "", help="SCORER spec for ranking / process supervision (when the file has no scores)."
    )
    judge: str = option("", help="MODEL spec of an LLM judge grader for final answers (optional).")
    threshold: float = option(0.0, help="ProcessBench: a step scoring below this is an error.")
    limit: int = option(0, help="At most this many records (0 = all).", lo=0)
    out: Path | None = option(None, help="Write the results as JSON here.")
    scorer_options: dict[str, Any] = key_values_option(
        "scorer_option", help="key=value passed to the scorer."
    )
    candidate_observation: bool = option(True, help="Process supervision: " + _OBSERVATION_HELP)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.out = _path_or_none(self.out)
        validate(self)
        check_number("threshold", self.threshold)


@dataclass
class DemoConfig:
    """What ``agentq demo`` runs (:func:`agentq.eval.demo.run_demo`)."""

    out: Path = option(Path("agentq-demo"), help="Report directory.")
    tasks: int = option(0, help="Held-out test tasks (0 = the embedded default).")
    n: int = option(0, help="Candidates per step for best-of-N (0 = the embedded default).")
    max_steps: int = option(0, help="Step limit per episode (0 = the embedded default).")
    qmodel: Path | None = option(None, help="Q-value model directory (default: the shipped one).")
    policy: str = option("smollm2", help="MODEL spec of the policy.")
    resume: bool = option(False, help="Continue an interrupted demo in --out.")

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.qmodel = _path_or_none(self.qmodel)


def register(app: typer.Typer) -> None:
    """Add ``eval``, ``eval-toolcomp``, ``eval-pairs``, ``view`` and ``demo`` to ``app``."""

    @config_command(app, EvalConfig, name="eval")
    def eval_cmd(config: EvalConfig) -> None:
        """Compare action-selection methods on one environment split (success rate with 95% CIs)."""
        from agentq.eval.runner import run_evaluation

        rep = run_evaluation(config)
        typer.echo(rep["table"])
        typer.echo(
            f"report -> {config.out}/report.md, report.json, success.png, trajectories.jsonl"
        )

    @config_command(app, ViewConfig, name="view")
    def view_cmd(config: ViewConfig) -> None:
        """Write one self-contained, offline HTML view of search trees or eval trajectories."""
        from agentq.data.jsonl import check_not_input, check_parent_dirs
        from agentq.eval.view import write_html

        target = config.out or config.path.with_suffix(".html")
        check_not_input(target, config.path)
        check_parent_dirs(target)
        p = write_html(config.path, target, max_chars=config.max_chars, limit=config.limit)
        typer.echo(f"view -> {p}")

    @config_command(app, EvalPairsConfig, name="eval-pairs")
    def eval_pairs_cmd(config: EvalPairsConfig) -> None:
        """Pairwise accuracy of a Scorer per file (TARA, pairs.jsonl, ToolComp preferred/dispreferred)."""
        from agentq.data.jsonl import check_not_input, check_parent_dirs
        from agentq.eval.toolcomp import eval_pairs_files, pairs_table

        out = config.out
        if out is not None:
            check_not_input(out, *config.files)
            check_parent_dirs(out)
        res = eval_pairs_files(
            config.files,
            config.scorer,
            limit=config.limit,
            scorer_options=config.scorer_options,
            progress=config.progress,
            candidate_observation=config.candidate_observation,
        )
        typer.echo(pairs_table(res))
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(res, indent=2) + "\n")
            typer.echo(f"results -> {out}")

    @config_command(app, EvalToolCompConfig, name="eval-toolcomp")
    def eval_toolcomp_cmd(config: EvalToolCompConfig) -> None:
        """ToolComp-style metrics: final-answer accuracy, rank@1, pairwise accuracy, ProcessBench F1."""
        from agentq.data.jsonl import check_not_input, check_parent_dirs
        from agentq.eval.toolcomp import evaluate_file

        out = config.out
        if out is not None:
            check_not_input(out, config.path)
            check_parent_dirs(out)
        res = evaluate_file(
            config.path,
            scorer=config.scorer or None,
            judge=config.judge or None,
            threshold=config.threshold,
            limit=config.limit,
            scorer_options=config.scorer_options,
            candidate_observation=config.candidate_observation,
        )
        typer.echo(json.dumps({k: v for k, v in res.items() if k != "records"}, indent=2))
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(res, indent=2) + "\n")
            typer.echo(f"results -> {out}")

    @config_command(app, DemoConfig, name="demo")
    def demo_cmd(config: DemoConfig) -> None:
        """The main job: SmolLM2 on held-out WebShop tasks, greedy vs best-of-N with a Q-model."""
        from agentq.eval.demo import run_demo

        run_demo(
            out=config.out,
            tasks=config.tasks,
            n=config.n,
            max_steps=config.max_steps,
            qmodel=config.qmodel,
            policy=config.policy,
            resume=config.resume,
        )

    _ = (eval_cmd, view_cmd, eval_pairs_cmd, eval_toolcomp_cmd, demo_cmd)
