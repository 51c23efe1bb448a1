"""Plug-ins found by name: the Python entry points that installed packages declare.

The core imports no environment and no integration. What an environment adds to the core (a
scorer that needs the environment's tools, the tool set a reward model verifies with) it
declares in ``pyproject.toml``, and the core finds it here by name:

    [project.entry-points."agentq.scorers"]
    tool-verify = "agentq.envs.tooluse.verify:ToolVerifyScorer"

Groups: :data:`ENVS` (environments, built as ``factory(**options)``, see
:mod:`agentq.environments`), :data:`SCORERS` (SCORER specs beyond the core's, built as
``builder(**options)`` or ``builder(value, **options)``) and :data:`TOOLSETS` (tool sets of the
tool-augmented reward model, see :class:`agentq.models.reward.Toolset`). Entry points are read from the installed
distributions' metadata, so a source checkout must be installed (``pip install -e .``).
"""

from __future__ import annotations

import functools
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from agentq.errors import UserInputError

ENVS = "agentq.envs"
"""Environments (``toy``, ``webshop``, ``hotpotqa``, ``tooluse``)."""
SCORERS = "agentq.scorers"
"""SCORER specs provided outside the core (``tool-verify``, ``toy-oracle``)."""
TOOLSETS = "agentq.toolsets"
"""Tool sets of the tool-augmented reward model (``tara``)."""


@functools.cache
def _group(group: str) -> dict[str, EntryPoint]:
    out: dict[str, EntryPoint] = {}
    for ep in entry_points(group=group):
        out.setdefault(ep.name, ep)  # the first installed distribution wins
    return out


def names(group: str) -> list[str]:
    """The names registered in ``group``, in the order the metadata lists them."""
    return list(_group(group))


def load(group: str, name: str, what: str | None = None) -> Any:
    """The object registered as ``name`` in ``group``.

    ``UserInputError`` (one line) when nothing is registered under that name, or when the
    module that provides it cannot be imported here.
    """
    what = what or f"{group} entry {name!r}"
    ep = _group(group).get(name)
    if ep is None:
        known = ", ".join(names(group)) or "none (is agentq installed? pip install -e .)"
        raise UserInputError(f"{what} is not registered; registered: {known}")
    try:
        return ep.load()
    except (ImportError, AttributeError) as e:
        raise UserInputError(f"{what} is not available in this installation: {e}") from e


__all__ = ["ENVS", "SCORERS", "TOOLSETS", "load", "names"]
