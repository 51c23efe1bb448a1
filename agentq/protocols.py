"""The three contracts search and selection code knows: ``Env``, ``Proposer`` and ``Scorer``.

Implementations subclass :class:`BaseProposer` / :class:`BaseScorer` and write either the sync
or the async method; the base class derives the other twin. Environments only need to follow
the :class:`Env` protocol (structural typing).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from agentq.types import Candidate, Context, StepResult


@runtime_checkable
class Env(Protocol):
    """A text environment. One instance runs one episode at a time.

    Optional members: ``snapshot() -> Any`` and ``restore(state)`` (cheap state copies; MCTS
    replays the action prefix from ``reset`` otherwise), ``deterministic: bool`` (False when the
    state after an action is random: then only replay is used, so every simulation samples fresh
    outcomes), ``seed(int)`` (reseed the env's own randomness; called once per task) and
    ``max_steps: int`` (the step limit).
    """

    name: str

    def tasks(self, split: str) -> list[str]:
        """Task ids of a split (``"train"``, ``"test"``, ...)."""
        ...

    def reset(self, task_id: str) -> Context:
        """Start an episode on ``task_id``; return the context messages the agent sees first."""
        ...

    def step(self, action: str) -> StepResult:
        """Execute the command inside ``action`` (the whole assistant turn).

        A bad action is not an exception: the observation says what was wrong and
        ``info["invalid"]`` is True.
        """
        ...

    def valid_actions(self) -> list[str] | None:
        """The executable actions in the current state, or None when open-ended.

        An entry may contain :data:`FREE_TEXT` (``search[...]``) for a free-text argument.
        """
        ...


FREE_TEXT = "..."
"""Placeholder inside a valid action whose text the policy writes freely: ``search[...]`` in
``valid_actions()`` means "search[<any query>]". Constrained proposers keep the fixed part and
generate the free part."""


def has_snapshots(env: Any) -> bool:
    """True when ``env`` offers ``snapshot``/``restore`` and says it is deterministic."""
    return (
        callable(getattr(env, "snapshot", None))
        and callable(getattr(env, "restore", None))
        and bool(getattr(env, "deterministic", True))
    )


class Proposer(Protocol):
    """Proposes candidate actions for a context."""

    def propose(
        self, context: Context, n: int, *, valid_actions: Sequence[str] | None = None
    ) -> list[Candidate]:
        """Return ``n`` candidates (duplicates allowed; callers merge them)."""
        ...

    async def apropose(
        self, context: Context, n: int, *, valid_actions: Sequence[str] | None = None
    ) -> list[Candidate]:
        """Async twin of :meth:`propose`."""
        ...


class Scorer(Protocol):
    """Scores candidate actions for a context: one float per action, higher is better."""

    def score(self, context: Context, actions: Sequence[str]) -> list[float]:
        """Score ``actions`` taken in ``context``."""
        ...

    async def ascore(self, context: Context, actions: Sequence[str]) -> list[float]:
        """Async twin of :meth:`score`."""
        ...


def _run_sync(coro: Any) -> Any:
    """Run a coroutine from sync code (also from inside a running loop, via a worker thread)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


class BaseProposer:
    """Base class: implement ``propose`` or ``apropose``; the other twin is derived.

    A sync implementation runs in a worker thread under ``apropose`` so it never blocks the loop.
    """

    #: The MODEL spec this proposer was built from (recorded in trees and reports).
    spec: str = ""

    def propose(
        self, context: Context, n: int, *, valid_actions: Sequence[str] | None = None
    ) -> list[Candidate]:
        """Return ``n`` candidates for ``context``."""
        if type(self).apropose is BaseProposer.apropose:
            raise NotImplementedError(
                f"{type(self).__name__} implements neither propose nor apropose"
            )
        return _run_sync(self.apropose(context, n, valid_actions=valid_actions))

    async def apropose(
        self, context: Context, n: int, *, valid_actions: Sequence[str] | None = None
    ) -> list[Candidate]:
        """Async twin of :meth:`propose`."""
        if type(self).propose is BaseProposer.propose:
            raise NotImplementedError(
                f"{type(self).__name__} implements neither propose nor apropose"
            )
        return await asyncio.to_thread(self.propose, context, n, valid_actions=valid_actions)


class BaseScorer:
    """Base class: implement ``score`` or ``ascore``; the other twin is derived.

    ``score_batch`` scores several (context, actions) items at once; models that can batch
    across contexts override it (the search-and-learn batched scorer contract).
    """

    #: The SCORER spec this scorer was built from.
    spec: str = ""

    def score(self, context: Context, actions: Sequence[str]) -> list[float]:
        """Score ``actions`` taken in ``context`` (higher is better)."""
        if type(self).ascore is BaseScorer.ascore:
            if type(self).score_batch is not BaseScorer.score_batch:
                return self.score_batch([(context, actions)])[0]
            raise NotImplementedError(f"{type(self).__name__} implements neither score nor ascore")
        return _run_sync(self.ascore(context, actions))

    async def ascore(self, context: Context, actions: Sequence[str]) -> list[float]:
        """Async twin of :meth:`score`."""
        if (
            type(self).score is BaseScorer.score
            and type(self).score_batch is BaseScorer.score_batch
        ):
            raise NotImplementedError(f"{type(self).__name__} implements neither score nor ascore")
        return await asyncio.to_thread(self.score, context, actions)

    def score_batch(self, items: Sequence[tuple[Context, Sequence[str]]]) -> list[list[float]]:
        """Score several (context, actions) items; the default scores them one at a time."""
        return [self.score(c, a) for c, a in items]

    async def ascore_batch(
        self, items: Sequence[tuple[Context, Sequence[str]]]
    ) -> list[list[float]]:
        """Async twin of :meth:`score_batch`."""
        return await asyncio.to_thread(self.score_batch, items)
