"""Environments by name, as the runners need them, without the core naming one.

An environment package declares its environments as ``agentq.envs`` entry points
(:mod:`agentq.registry`); :func:`register` adds one at run time (a callable or
``"module:attr"``). :func:`make` builds one with options, and :class:`EnvSource` is what
``agentq collect`` and ``agentq eval`` share: a first environment built up front (bad options and
a task that cannot even reset are one error line before a run starts), its task ids, and more
environments made on demand.

    [project.entry-points."agentq.envs"]
    toy = "agentq.envs.toy:ToyEnv"
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from agentq import registry
from agentq.errors import UserInputError
from agentq.protocols import Env

_RUNTIME: dict[str, str | Callable[..., Any]] = {}
"""Environments registered by :func:`register` (they win over an entry point of that name)."""


def register(name: str, factory: str | Callable[..., Any]) -> None:
    """Register an environment factory under ``name`` (a callable or ``"module:attr"``)."""
    _RUNTIME[name] = factory


def names() -> list[str]:
    """Registered environment names."""
    return sorted({*registry.names(registry.ENVS), *_RUNTIME})


def resolve(name: str) -> Callable[..., Env]:
    """The factory registered under ``name``; ``UserInputError`` for an unknown name."""
    what = f"environment {name!r}"
    factory = _RUNTIME.get(name)
    if factory is None:
        if name not in registry.names(registry.ENVS):
            raise UserInputError(f"unknown environment {name!r}; known: {', '.join(names())}")
        return registry.load(registry.ENVS, name, what)
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        try:
            factory = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise UserInputError(f"{what} is not available: {e}") from e
    return factory


def make(name: str, **options: Any) -> Env:
    """Create the environment ``name`` with ``options`` (e.g. ``seed``, ``variant``)."""
    factory = resolve(name)
    try:
        return factory(**options)
    except (TypeError, ValueError) as e:
        raise UserInputError(f"bad options for environment {name!r}: {e}") from e


def check_first_task(env: Env, task_id: str, name: str = "") -> None:
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


class EnvSource:
    """The environments of one run: ``name`` with ``options``.

    The first (:attr:`probe`) is built at once, so bad options fail before anything else; it
    lists the tasks and is handed out first. Calling the source gives an environment: the probe,
    then new ones.
    """

    def __init__(self, name: str, options: dict[str, Any] | None = None) -> None:
        self.name = name
        self.options = dict(options or {})
        self.factory = resolve(name)
        self.probe = make(name, **self.options)
        self._pool = [self.probe]

    def task_ids(self, split: str, limit: int = 0) -> list[str]:
        """The first ``limit`` task ids of ``split`` (0: all), the first task checked."""
        ids = list(self.probe.tasks(split))
        if not ids:
            raise UserInputError(f"environment {self.name!r} has no tasks in split {split!r}")
        ids = ids[:limit] if limit else ids
        self.check(ids)
        return ids

    def check(self, task_ids: list[str]) -> None:
        """:func:`check_first_task` on the first of ``task_ids`` (none: nothing to check)."""
        if task_ids:
            check_first_task(self.probe, task_ids[0], self.name)

    def __call__(self) -> Env:
        return self._pool.pop() if self._pool else self.factory(**self.options)


__all__ = ["EnvSource", "check_first_task", "make", "names", "register", "resolve"]
