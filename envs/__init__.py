"""agentq environments and their registry: ``agentq.envs.make(name, **options)``.

Each environment module registers a factory here; modules are imported lazily so that
``make("toy")`` does not pay for WebShop's search index.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from agentq.errors import UserInputError

#: name -> "module:factory" (imported on first use) or a callable.
_REGISTRY: dict[str, str | Callable[..., Any]] = {
    "toy": "agentq.envs.toy:ToyEnv",
    "webshop": "agentq.envs.webshop:WebShopEnv",
    "hotpotqa": "agentq.envs.hotpotqa:HotPotQAEnv",
    "tooluse": "agentq.envs.tooluse:ToolUseEnv",
}


def register(name: str, factory: str | Callable[..., Any]) -> None:
    """Register an environment factory under ``name`` (a callable or ``"module:attr"``)."""
    _REGISTRY[name] = factory


def names() -> list[str]:
    """Registered environment names."""
    return sorted(_REGISTRY)


def resolve(name: str) -> Callable[..., Any]:
    """The factory registered under ``name``; ``UserInputError`` for an unknown name."""
    if name not in _REGISTRY:
        raise UserInputError(f"unknown environment {name!r}; known: {', '.join(names())}")
    factory = _REGISTRY[name]
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        try:
            factory = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise UserInputError(f"environment {name!r} is not available: {e}") from e
    return factory


def make(name: str, **options: Any) -> Any:
    """Create the environment ``name`` with ``options`` (e.g. ``seed``, ``variant``)."""
    factory = resolve(name)
    try:
        return factory(**options)
    except (TypeError, ValueError) as e:
        raise UserInputError(f"bad options for environment {name!r}: {e}") from e


def check_first_task(env: Any, task_id: str, name: str = "") -> None:
    """``UserInputError`` when ``env`` cannot even reset to ``task_id``.

    Options that make every task fail (``rooms=0``, a missing data file) are then one error
    line before a run starts, not a file of failed trees.
    """
    try:
        env.reset(task_id)
    except Exception as e:
        label = name or getattr(env, "name", "") or type(env).__name__
        raise UserInputError(
            f"environment {label!r} fails on its first task {task_id!r}: {type(e).__name__}: {e}"
        ) from e


__all__ = ["check_first_task", "make", "names", "register", "resolve"]
