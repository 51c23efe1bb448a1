"""What every command module shares: one ``error:`` line and exit code 2 for a user's bad
input, and ``--config`` files (TOML or JSON) filling the options not given on the command line.

The command modules (:mod:`agentq.cli`, :mod:`agentq.models.cli`,
:mod:`agentq.models.reward_cli`, ...) import this module; :mod:`agentq.cli` imports them to
register their commands, and none of them imports :mod:`agentq.cli` back.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from agentq.errors import AgentqError, UserInputError


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


def load_config(path: Path | None) -> dict[str, Any]:
    """Read a TOML or JSON config file into a dict (keys may use - or _)."""
    if path is None:
        return {}
    if not path.exists():
        raise UserInputError(f"config file not found: {path}")
    try:
        text = path.read_text()
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            import tomllib

            data = tomllib.loads(text)
    except Exception as e:  # malformed config: one line
        raise UserInputError(f"malformed config {path}: {e}") from e
    if not isinstance(data, dict):
        raise UserInputError(f"malformed config {path}: expected a table/object at the top")
    return {k.replace("-", "_"): v for k, v in data.items()}


def apply_config(ctx: typer.Context, config: Path | None, values: dict[str, Any]) -> dict[str, Any]:
    """Fill options the user did not pass on the command line from the config file."""
    cfg = load_config(config)
    unknown = set(cfg) - set(values)
    if unknown:
        raise UserInputError(f"unknown keys in config {config}: {', '.join(sorted(unknown))}")
    out = dict(values)
    for k, v in cfg.items():
        source = ctx.get_parameter_source(k)
        if source is None or source.name == "DEFAULT":
            out[k] = v
    return out


__all__ = ["apply_config", "cli_command", "fail", "load_config"]
