"""What every command module shares: one ``error:`` line and exit code 2 for a user's bad
input, ``--config`` files (TOML or JSON) filling the options not given on the command line, and
commands whose flags come from a config dataclass (:func:`config_command`).

The command modules (:mod:`agentq.cli`, :mod:`agentq.models.cli`, :mod:`agentq.eval.cli`,
:mod:`agentq.models.reward_cli`, :mod:`agentq.integrations.server_cli`) import this module;
:mod:`agentq.cli` imports them to register their commands, and none of them imports
:mod:`agentq.cli` back. Checking and parsing values is :mod:`agentq.config`'s (the library
functions the commands call check the same way).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import typer

from agentq.config import from_options, load_config_file, options
from agentq.errors import AgentqError, UserInputError

C = TypeVar("C")


def fail(message: str) -> None:
    """Print one error line on stderr and exit with code 2."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def cli_command(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn ``UserInputError`` (and other agentq errors) into one stderr line and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserInputError as e:
            fail(str(e))
        except AgentqError as e:
            fail(f"{type(e).__name__}: {e}")
        except OSError as e:  # an unwritable output, a full disk: one line, not a traceback
            where = f"{e.filename}: " if e.filename else ""
            fail(f"{where}{e.strerror or e}")

    return wrapper


load_config = load_config_file
"""Read a TOML or JSON config file (:func:`agentq.config.load_config_file`)."""


def _file_values(ctx: typer.Context, config: Path | None, names: set[str]) -> dict[str, Any]:
    """The values of a ``--config`` file for the options the user did not pass on the command
    line (an unknown key is a ``UserInputError``)."""
    cfg = load_config_file(config)
    unknown = set(cfg) - names
    if unknown:
        raise UserInputError(f"unknown keys in config {config}: {', '.join(sorted(unknown))}")
    out = {}
    for k, v in cfg.items():
        source = ctx.get_parameter_source(k)
        if source is None or source.name == "DEFAULT":
            out[k] = v
    return out


_CONFIG_HELP = "TOML/JSON file with any of these options."


def config_command(
    app: typer.Typer, config_cls: type[C], *, name: str | None = None
) -> Callable[[Callable[[C], Any]], Callable[[C], Any]]:
    """Register ``fn(config)`` as a command whose flags are ``config_cls``'s options.

    Each field declared with :func:`agentq.config.option` becomes one flag with the field's
    default and help (nested configs flattened; a field declared with ``argument=True`` is a
    positional argument); ``--config FILE`` fills the options not given
    on the command line. The command builds the config (its checks run there: one ``error:``
    line and exit code 2 for a bad value, from the command line or the file alike) and calls
    ``fn`` with it. The command's help is ``fn``'s docstring.
    """
    opts = [o for o in options(config_cls) if o.cli]
    names = {o.name for o in opts}

    def decorate(fn: Callable[[C], Any]) -> Callable[[C], Any]:
        def command(ctx: typer.Context, **values: Any) -> Any:
            config = values.pop("config", None)
            values.update(_file_values(ctx, config, names))
            return fn(from_options(config_cls, values))

        params = [
            inspect.Parameter(
                "ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context
            )
        ]
        for o in opts:
            params.append(
                inspect.Parameter(
                    o.name,
                    inspect.Parameter.KEYWORD_ONLY,
                    default=(
                        typer.Argument(o.default, help=o.help)
                        if o.argument
                        else typer.Option(o.default, *o.flags, help=o.help, envvar=o.envvar)
                    ),
                    annotation=o.type,
                )
            )
        params.append(
            inspect.Parameter(
                "config",
                inspect.Parameter.KEYWORD_ONLY,
                default=typer.Option(None, help=_CONFIG_HELP),
                annotation=Path | None,
            )
        )
        command.__name__ = fn.__name__
        command.__qualname__ = fn.__qualname__
        command.__doc__ = fn.__doc__
        command.__module__ = fn.__module__
        cast(Any, command).__signature__ = inspect.Signature(params, return_annotation=None)
        command.__annotations__ = {p.name: p.annotation for p in params}
        app.command(name=name)(cli_command(command))
        return fn

    return decorate


__all__ = ["cli_command", "config_command", "fail", "load_config"]
