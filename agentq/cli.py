"""The ``agentq`` command line (typer). Each stage of the flow is one command.

``collect`` and ``pairs`` live here; the other commands are registered by the modules that
implement them (``register(app)`` functions, imported lazily-cheap: heavy imports happen inside
the command bodies).
"""

from __future__ import annotations

import functools
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from agentq.cli_common import apply_config, cli_command, fail, load_config
from agentq.errors import UserInputError
from agentq.options import check_number, parse_env_options

# re-exported: command modules of other parts import these from here
__all__ = [
    "app",
    "apply_config",
    "check_number",
    "cli_command",
    "fail",
    "load_config",
    "main",
    "parse_env_options",
]


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


@app.command()
@cli_command
def collect(
    ctx: typer.Context,
    env: str = typer.Option("toy", help="Environment name (agentq.envs registry)."),
    split: str = typer.Option("train", help="Task split."),
    policy: str = typer.Option("random", help="MODEL spec of the proposer."),
    out: Path = typer.Option(Path("trees.jsonl"), help="Output trees.jsonl."),
    tasks: int = typer.Option(0, help="Number of tasks (0 = all of the split)."),
    iterations: int = typer.Option(30, help="MCTS iterations per task."),
    n: int = typer.Option(5, help="Candidates per expansion."),
    depth: int = typer.Option(10, help="Depth limit."),
    c: float = typer.Option(1.41, help="UCT exploration constant."),
    rollout: str = typer.Option("policy", help="Leaf valuation: policy|random|scorer|none."),
    rollout_scorer: str = typer.Option("", help="SCORER spec for --rollout scorer."),
    depth_limit_reward: float = typer.Option(
        0.0, help="Return of a simulation cut at the depth limit."
    ),
    early_stop: bool = typer.Option(False, help="Stop a task at its first full-reward leaf."),
    concurrency: int = typer.Option(16, help="Tasks searched at once (over all Ray workers)."),
    seed: int = typer.Option(0, help="Seed of every random choice."),
    backend: str = typer.Option("local", help="local (asyncio) or ray (agentq[ray])."),
    address: str | None = typer.Option(
        None, help="Ray cluster: auto, ray://HOST:10001 or HOST:6379 (none: start a local one)."
    ),
    workers: int = typer.Option(0, help="Ray workers (0 = as many as the cluster fits)."),
    worker_cpus: float = typer.Option(1.0, help="CPUs per Ray worker."),
    worker_gpus: float = typer.Option(0.0, help="GPUs per Ray worker (a local model on GPU)."),
    retries: int = typer.Option(2, help="Ray: reruns of a task whose worker process died."),
    env_option: list[str] = typer.Option([], "--env-option", help="key=value passed to the env."),
    resume: bool = typer.Option(
        False, help="Continue an existing output, skipping finished tasks."
    ),
    overwrite: bool = typer.Option(False, help="Replace an existing output."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
    config: Path | None = typer.Option(None, help="TOML/JSON file with any of these options."),
) -> None:
    """Search each task with MCTS and write one tree per task to trees.jsonl."""
    opts = apply_config(
        ctx, config, {k: v for k, v in locals().items() if k not in ("ctx", "config")}
    )
    import agentq.envs as envs
    from agentq.collect import collect as run_collect
    from agentq.data.jsonl import check_output_path
    from agentq.data.trees import finished_tasks
    from agentq.search.mcts import MCTSConfig
    from agentq.specs import resolve_policy, resolve_scorer

    check_output_path(opts["out"], resume=opts["resume"], overwrite=opts["overwrite"])
    check_number("tasks", opts["tasks"], lo=0)
    check_number("concurrency", opts["concurrency"], lo=1)
    check_number("workers", opts["workers"], lo=0)
    check_number("retries", opts["retries"], lo=0)
    check_number("worker_cpus", opts["worker_cpus"], lo=0)
    check_number("worker_gpus", opts["worker_gpus"], lo=0)
    if opts["resume"]:
        finished_tasks(opts["out"])  # a file of other records fails here, before any work
    env_opts = parse_env_options(opts["env_option"])
    factory = envs.resolve(opts["env"])
    probe = envs.make(opts["env"], **env_opts)
    task_ids = probe.tasks(opts["split"])
    if not task_ids:
        raise UserInputError(f"environment {opts['env']!r} has no tasks in split {opts['split']!r}")
    envs.check_first_task(probe, task_ids[0], opts["env"])
    if opts["tasks"]:
        task_ids = task_ids[: opts["tasks"]]
    try:
        cfg = MCTSConfig(
            iterations=opts["iterations"],
            n=opts["n"],
            max_depth=opts["depth"],
            c=opts["c"],
            rollout=opts["rollout"],
            early_stop=opts["early_stop"],
            depth_limit_reward=opts["depth_limit_reward"],
            seed=opts["seed"],
        )
    except ValueError as e:
        raise UserInputError(str(e)) from e
    if cfg.rollout == "scorer" and not opts["rollout_scorer"]:
        raise UserInputError("--rollout scorer needs --rollout-scorer SPEC")
    models = {"policy": opts["policy"], "rollout_scorer": opts["rollout_scorer"] or None}
    ray_opts = backend_options(opts)
    make_env: Any = None
    proposer: Any = None
    scorer: Any = None
    ray_backend: Any = None
    if ray_opts is not None:  # the workers build env, policy and scorer; the driver writes
        ray_backend = ray_collection_backend(ray_opts, opts, env_opts, cfg, models)
    else:
        proposer = resolve_policy(opts["policy"], seed=opts["seed"])
        scorer = resolve_scorer(opts["rollout_scorer"]) if opts["rollout_scorer"] else None
        pool = [probe]

        def make_env() -> Any:
            return pool.pop() if pool else factory(**env_opts)

    try:
        s = run_collect(
            make_env,
            task_ids,
            proposer,
            cfg,
            opts["out"],
            resume=opts["resume"],
            overwrite=opts["overwrite"],
            concurrency=opts["concurrency"],
            rollout_scorer=scorer,
            backend=ray_backend,
            models=models,
            progress=opts["progress"],
        )
    finally:
        if ray_backend is not None:
            ray_backend.close()
    _print_summary(s, opts["out"])


def _print_summary(s: Any, out: Path) -> None:
    typer.echo(
        f"tasks {s.tasks} (skipped {s.skipped}, failed {s.failed}) | nodes {s.nodes} | "
        f"mean best reward {s.mean_best_reward:.3f} | wall {s.wall_s:.1f}s -> {out}"
    )


def ray_options(opts: dict[str, Any]) -> Any:
    """The ``RayOptions`` of the ``--address/--workers/--worker-cpus/--worker-gpus/--retries`` flags."""
    from agentq.backends.ray import RayOptions, import_ray

    import_ray()  # one clear line when the extra is not installed
    return RayOptions(
        address=opts["address"] or None,
        workers=opts["workers"],
        worker_cpus=opts["worker_cpus"],
        worker_gpus=opts["worker_gpus"],
        retries=opts["retries"],
    )


RAY_FLAGS = ("backend", "address", "workers", "worker_cpus", "worker_gpus", "retries")


def backend_options(opts: dict[str, Any]) -> Any:
    """Pop the backend flags off ``opts``: ``RayOptions`` for ``--backend ray``, else ``None``."""
    flags = {k: opts.pop(k) for k in RAY_FLAGS}
    if flags["backend"] == "ray":
        return ray_options(flags)
    if flags["backend"] != "local":
        raise UserInputError(f"--backend must be local or ray, not {flags['backend']!r}")
    if flags["address"]:
        raise UserInputError("--address needs --backend ray")
    return None


def ray_collection_backend(
    options: Any, opts: dict[str, Any], env_opts: dict[str, Any], cfg: Any, models: dict[str, Any]
) -> Any:
    """A started ``RayBackend`` for ``agentq collect`` (workers build env, policy and scorer)."""
    import agentq.envs as envs
    from agentq.backends.ray import RayBackend
    from agentq.collect import CollectWork
    from agentq.specs import resolve_policy, resolve_scorer

    work = CollectWork(
        env_factory=functools.partial(envs.make, opts["env"], **env_opts),
        proposer_factory=functools.partial(resolve_policy, opts["policy"], seed=opts["seed"]),
        config=cfg,
        rollout_scorer_factory=(
            functools.partial(resolve_scorer, opts["rollout_scorer"])
            if opts["rollout_scorer"]
            else None
        ),
        models=models,
    )
    backend = RayBackend(work, options, concurrency=opts["concurrency"])
    backend.start()  # a bad address or model spec fails here, before anything is written
    return backend


@app.command()
@cli_command
def pairs(
    ctx: typer.Context,
    trees: Path = typer.Argument(..., help="Input trees.jsonl."),
    out: Path = typer.Option(Path("pairs.jsonl"), help="Output pairs.jsonl."),
    scheme: str = typer.Option("best-path", help="best-path (the paper) or siblings (Agent Q)."),
    margin: float | None = typer.Option(
        None, help="Minimum Q gap (default: 0 best-path, 0.1 siblings)."
    ),
    min_visits: int = typer.Option(1, help="siblings: minimum visits of both actions."),
    value: str = typer.Option(
        "mean", help="Q estimate: mean (MCTS mean return) or max (best return found below)."
    ),
    val_fraction: float = typer.Option(0.1, help="Share of tasks in the validation split."),
    seed: int = typer.Option(0, help="Seed of the train/validation split."),
    overwrite: bool = typer.Option(False, help="Replace an existing output."),
    config: Path | None = typer.Option(None, help="TOML/JSON file with any of these options."),
) -> None:
    """Turn MCTS trees into step-level preference pairs (TRL conversational format)."""
    opts = apply_config(
        ctx, config, {k: v for k, v in locals().items() if k not in ("ctx", "config")}
    )
    from agentq.data.jsonl import check_not_input, check_output_path
    from agentq.data.pairs import build_pairs, write_pairs
    from agentq.data.trees import read_trees

    check_output_path(opts["out"], resume=False, overwrite=opts["overwrite"])
    check_not_input(opts["out"], opts["trees"])
    tree_list = read_trees(opts["trees"])
    if not tree_list:
        raise UserInputError(f"{opts['trees']} holds no successful trees")
    ps = build_pairs(
        tree_list,
        opts["scheme"],
        margin=opts["margin"],
        min_visits=opts["min_visits"],
        val_fraction=opts["val_fraction"],
        seed=opts["seed"],
        value=opts["value"],
    )
    n = write_pairs(opts["out"], ps, overwrite=opts["overwrite"])
    n_val = sum(p["split"] == "validation" for p in ps)
    typer.echo(
        f"trees {len(tree_list)} | pairs {n} (train {n - n_val}, validation {n_val}) -> {opts['out']}"
    )


# Commands implemented by other parts of agentq: module -> (commands, issue that brings them).
EXTENSIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "agentq.models.cli": (("train", "score"), "the Q-value model issue (#4)"),
    "agentq.models.reward_cli": (("train-rm",), "the tool-augmented reward model issue (#8)"),
    "agentq.integrations.server_cli": (("serve",), "the remote models issue (#5)"),
    "agentq.eval.cli": (
        ("eval", "eval-toolcomp", "eval-pairs", "view", "demo"),
        "the evaluation issue (#7)",
    ),
}


def _placeholder(name: str, where: str) -> None:
    def cmd() -> None:
        fail(f"'agentq {name}' is not implemented yet: it arrives with {where}")

    cmd.__doc__ = f"(not implemented yet: arrives with {where})"
    app.command(name=name)(cmd)


def _register_extensions() -> None:
    for module, (names, where) in EXTENSIONS.items():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name is not None and module.startswith(e.name):
                for name in names:
                    _placeholder(name, where)
                continue
            raise
        mod.register(app)


_register_extensions()


def main() -> None:
    """Entry point (``python -m agentq``)."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
