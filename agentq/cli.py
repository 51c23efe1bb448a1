"""The ``agentq`` command line (typer). Each stage of the flow is one command.

``collect`` and ``pairs`` live here; the other commands are registered by the modules that
implement them (their ``register(app)`` functions, called at the end of this module; heavy
imports happen inside the command bodies, so ``agentq --help`` stays fast). A command whose
settings are a config dataclass gets its flags from the dataclass (:func:`config_command`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import typer
from typer.core import TyperGroup

from agentq.cli_common import config_command
from agentq.collect import CollectConfig
from agentq.data.pairs import PairsConfig
from agentq.errors import UserInputError

__all__ = ["app", "main"]


class _Group(TyperGroup):
    """The command group: a usage error (bad flag, bad value) is one ``error:`` line, exit 2."""

    def main(  # noqa: D102
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        def run() -> Any:
            return super(_Group, self).main(
                args=args,
                prog_name=prog_name,
                complete_var=complete_var,
                standalone_mode=False,
                windows_expand_args=windows_expand_args,
                **extra,
            )

        if not standalone_mode:
            return run()
        try:
            rv = run()
        except typer.Abort:
            typer.echo("error: aborted", err=True)
            sys.exit(1)
        except typer.TyperException as e:  # click's exceptions (typer vendors click)
            if type(e).__name__ == "NoArgsIsHelpError":  # bare ``agentq``: the help text
                e.show()  # type: ignore[attr-defined]
            else:
                message = " ".join(e.format_message().split())  # type: ignore[attr-defined]
                typer.echo(f"error: {message}", err=True)
            sys.exit(getattr(e, "exit_code", 2))
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(
    cls=_Group,
    name="agentq",
    help="Step-level Q-value models that make LLM agents choose better actions.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@config_command(app, CollectConfig)
def collect(config: CollectConfig) -> None:
    """Search each task with MCTS and write one tree per task to trees.jsonl."""
    from agentq.collect import run_collection

    s = run_collection(config)
    typer.echo(
        f"tasks {s.tasks} (skipped {s.skipped}, failed {s.failed}) | nodes {s.nodes} | "
        f"mean best reward {s.mean_best_reward:.3f} | wall {s.wall_s:.1f}s -> {config.out}"
    )


@config_command(app, PairsConfig)
def pairs(config: PairsConfig) -> None:
    """Turn MCTS trees into step-level preference pairs (TRL conversational format)."""
    from agentq.data.jsonl import check_not_input, check_output_path
    from agentq.data.pairs import build_pairs, write_pairs
    from agentq.data.trees import read_trees

    check_output_path(config.out, resume=False, overwrite=config.overwrite)
    check_not_input(config.out, config.trees)
    tree_list = read_trees(config.trees)
    if not tree_list:
        raise UserInputError(f"{config.trees} holds no successful trees")
    ps = build_pairs(tree_list, config.scheme, seed=config.seed, **config.pair_settings())
    n = write_pairs(config.out, ps, overwrite=config.overwrite)
    n_val = sum(p["split"] == "validation" for p in ps)
    typer.echo(
        f"trees {len(tree_list)} | pairs {n} (train {n - n_val}, validation {n_val}) -> {config.out}"
    )


def _register_commands() -> None:
    """The commands implemented next to their code: train/score, train-rm, serve, and the
    evaluation commands (eval, eval-toolcomp, eval-pairs, view, demo)."""
    from agentq.eval.cli import register as register_eval
    from agentq.integrations.server_cli import register as register_serve
    from agentq.models.cli import register as register_models
    from agentq.models.reward_cli import register as register_reward

    for register in (register_models, register_reward, register_serve, register_eval):
        register(app)


_register_commands()


def main() -> None:
    """Entry point (``python -m agentq``)."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
