"""What the tool-augmented reward model needs from tools, and where it finds them.

The reward model describes its tools in its prompt and has each tool call of a trace executed;
it does not know any tool itself. A *tool set* provides both (the tools and an executor for
them); the core finds it by name among the ``agentq.toolsets`` entry points (see
:mod:`agentq.registry`). The tool-use environment provides ``tara``
(:class:`agentq.envs.tooluse.tara.TaraToolset`: TARA's tool names over the environment's tools,
run by the environment's one executor).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from agentq import registry

DEFAULT_TOOLSET = "tara"
"""The tool set a reward model uses unless told otherwise."""


@dataclass
class ToolResult:
    """The outcome of one tool call."""

    observation: str
    ok: bool
    source: str = "tool"
    """``tool`` (executed), ``cache`` (an earlier identical call of this run), ``error``."""
    elapsed_s: float = 0.0


@runtime_checkable
class RMTool(Protocol):
    """A tool as the reward model sees it: a name and a description for its prompt."""

    name: str
    description: str

    def run(self, args: Any = None) -> str:
        """The observation for ``args``; raises on a bad call."""
        ...


@runtime_checkable
class ToolRunner(Protocol):
    """Runs tool calls by name; a bad call is an ``Error: ...`` observation, never a raise."""

    tools: dict[str, Any]

    def execute(self, name: str, action_input: Any) -> ToolResult:
        """Run one call."""
        ...

    def add_tara_records(self, pairs: Iterable[Any]) -> int:
        """Load the observations recorded in TARA pairs for services that cannot run here."""
        ...

    def close(self) -> None:
        """Release what the runner holds (worker threads)."""
        ...


@runtime_checkable
class Toolset(Protocol):
    """The tools a reward model verifies with, and an executor for them."""

    def tools(self, *, include_env_tools: bool = True) -> dict[str, Any]:
        """The tools by name (``include_env_tools``: the environment's general tools too)."""
        ...

    def executor(
        self, tools: Mapping[str, Any] | None = None, *, timeout_s: float = 10.0
    ) -> ToolRunner:
        """An executor over ``tools`` (default :meth:`tools`) with a per-call time limit."""
        ...


def load_toolset(name: str = DEFAULT_TOOLSET) -> Toolset:
    """The tool set registered as ``name`` (``UserInputError`` when there is none)."""
    factory = registry.load(registry.TOOLSETS, name, f"tool set {name!r}")
    toolset: Toolset = factory()
    return toolset


__all__ = ["DEFAULT_TOOLSET", "RMTool", "ToolResult", "ToolRunner", "Toolset", "load_toolset"]
