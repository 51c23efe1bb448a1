"""Checking and parsing option values: shared by the command line and the library functions
it calls (so a value from a ``--config`` file or a Python caller is checked the same way)."""

from __future__ import annotations

import json
import math
from typing import Any

from agentq.errors import UserInputError


def check_number(
    name: str, value: float, *, lo: float | None = None, hi: float | None = None
) -> None:
    """``UserInputError`` unless ``value`` is a finite number within ``[lo, hi]``.

    The bounds of a flag are checked here, not by typer, so that values from a ``--config``
    file are checked too.
    """
    flag = "--" + name.replace("_", "-")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UserInputError(f"{flag} must be a number, not {value!r}")
    if not math.isfinite(value):
        raise UserInputError(f"{flag} must be a finite number, not {value}")
    if lo is not None and value < lo:
        raise UserInputError(f"{flag} must be >= {lo}, not {value}")
    if hi is not None and value > hi:
        raise UserInputError(f"{flag} must be <= {hi}, not {value}")


def parse_env_options(options: list[str]) -> dict[str, Any]:
    """``key=value`` pairs (values parsed as JSON when they can be) for ``envs.make``."""
    out: dict[str, Any] = {}
    for item in options:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserInputError(f"environment option {item!r} is not key=value")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


__all__ = ["check_number", "parse_env_options"]
