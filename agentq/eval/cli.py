"""CLI commands of the evaluation part: ``eval``, ``eval-toolcomp``, ``eval-pairs``, ``view``, ``demo``.

Heavy imports (torch, transformers, matplotlib) happen inside the command bodies.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from agentq.cli_common import cli_command, config_command
from agentq.config import check_number, parse_key_values
from agentq.eval.config import DEFAULT_METHODS, EvalConfig

__all__ = ["DEFAULT_METHODS", "register"]


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

    @app.command(name="view")
    @cli_command
    def view_cmd(
        path: Path = typer.Argument(..., help="trees.jsonl or an eval trajectories.jsonl."),
        out: Path | None = typer.Option(
            None, help="Output HTML (default: next to the input, .html)."
        ),
        limit: int = typer.Option(0, help="Show at most this many tasks (0 = all)."),
        max_chars: int = typer.Option(4000, help="Clip actions and observations longer than this."),
    ) -> None:
        """Write one self-contained, offline HTML view of search trees or eval trajectories."""
        from agentq.data.jsonl import check_not_input, check_parent_dirs
        from agentq.eval.view import write_html

        check_number("limit", limit, lo=0)
        check_number("max_chars", max_chars, lo=1)
        target = out or path.with_suffix(".html")
        check_not_input(target, path)
        check_parent_dirs(target)
        p = write_html(path, target, max_chars=max_chars, limit=limit)
        typer.echo(f"view -> {p}")

    @app.command(name="eval-pairs")
    @cli_command
    def eval_pairs_cmd(
        files: list[Path] = typer.Argument(
            ..., help="TARA files or directories, or pairs.jsonl files."
        ),
        scorer: str = typer.Option("tool-verify", help="SCORER spec."),
        limit: int = typer.Option(0, help="At most this many pairs per file (0 = all)."),
        out: Path | None = typer.Option(None, help="Write the results as JSON here."),
        scorer_option: list[str] = typer.Option(
            [], "--scorer-option", help="key=value passed to the scorer."
        ),
        progress: bool = typer.Option(True, help="Show a progress bar."),
        candidate_observation: bool = typer.Option(
            True,
            help="ToolComp rows: score a candidate step with its observation, as ToolComp's "
            "judge sees it (--no-candidate-observation: the step alone, a departure).",
        ),
    ) -> None:
        """Pairwise accuracy of a Scorer per file (TARA, pairs.jsonl, ToolComp preferred/dispreferred)."""
        from agentq.data.jsonl import check_not_input, check_parent_dirs
        from agentq.eval.toolcomp import eval_pairs_files, pairs_table

        check_number("limit", limit, lo=0)
        if out is not None:
            check_not_input(out, *files)
            check_parent_dirs(out)
        res = eval_pairs_files(
            files,
            scorer,
            limit=limit,
            scorer_options=parse_key_values(scorer_option),
            progress=progress,
            candidate_observation=candidate_observation,
        )
        typer.echo(pairs_table(res))
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(res, indent=2) + "\n")
            typer.echo(f"results -> {out}")

    @app.command(name="eval-toolcomp")
    @cli_command
    def eval_toolcomp_cmd(
        path: Path = typer.Argument(
            ..., help="JSON/JSONL file in a ToolComp-style format (see docs/eval.md)."
        ),
        scorer: str = typer.Option(
            "", help="SCORER spec for ranking / process supervision (when the file has no scores)."
        ),
        judge: str = typer.Option(
            "", help="MODEL spec of an LLM judge grader for final answers (optional)."
        ),
        threshold: float = typer.Option(
            0.0, help="ProcessBench: a step scoring below this is an error."
        ),
        limit: int = typer.Option(0, help="At most this many records (0 = all)."),
        out: Path | None = typer.Option(None, help="Write the results as JSON here."),
        scorer_option: list[str] = typer.Option(
            [], "--scorer-option", help="key=value passed to the scorer."
        ),
        candidate_observation: bool = typer.Option(
            True,
            help="Process supervision: score a candidate step with its observation, as "
            "ToolComp's judge sees it (--no-candidate-observation: the step alone, a departure).",
        ),
    ) -> None:
        """ToolComp-style metrics: final-answer accuracy, rank@1, pairwise accuracy, ProcessBench F1."""
        from agentq.data.jsonl import check_not_input, check_parent_dirs
        from agentq.eval.toolcomp import evaluate_file

        check_number("limit", limit, lo=0)
        check_number("threshold", threshold)
        if out is not None:
            check_not_input(out, path)
            check_parent_dirs(out)
        res = evaluate_file(
            path,
            scorer=scorer or None,
            judge=judge or None,
            threshold=threshold,
            limit=limit,
            scorer_options=parse_key_values(scorer_option),
            candidate_observation=candidate_observation,
        )
        typer.echo(json.dumps({k: v for k, v in res.items() if k != "records"}, indent=2))
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(res, indent=2) + "\n")
            typer.echo(f"results -> {out}")

    @app.command(name="demo")
    @cli_command
    def demo_cmd(
        out: Path = typer.Option(Path("agentq-demo"), help="Report directory."),
        tasks: int = typer.Option(0, help="Held-out test tasks (0 = the embedded default)."),
        n: int = typer.Option(
            0, help="Candidates per step for best-of-N (0 = the embedded default)."
        ),
        max_steps: int = typer.Option(0, help="Step limit per episode (0 = the embedded default)."),
        qmodel: Path | None = typer.Option(
            None, help="Q-value model directory (default: the shipped one)."
        ),
        policy: str = typer.Option("smollm2", help="MODEL spec of the policy."),
        resume: bool = typer.Option(False, help="Continue an interrupted demo in --out."),
    ) -> None:
        """The main job: SmolLM2 on held-out WebShop tasks, greedy vs best-of-N with a Q-model."""
        from agentq.eval.demo import run_demo

        run_demo(
            out=out,
            tasks=tasks,
            n=n,
            max_steps=max_steps,
            qmodel=qmodel,
            policy=policy,
            resume=resume,
        )

    _ = (eval_cmd, view_cmd, eval_pairs_cmd, eval_toolcomp_cmd, demo_cmd)
