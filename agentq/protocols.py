"""The three contracts search and selection code knows: ``Env``, ``Proposer`` and ``Scorer``.

A contract lists what callers rely on; an optional ability is its own small protocol
(:class:`SeedableEnv`, :class:`SnapshotEnv`, :class:`StepLimitedEnv`, :class:`HasStats`) that
callers test with ``isinstance`` instead of probing attributes. All are ``runtime_checkable``.

Implementations subclass :class:`BaseProposer` / :class:`BaseScorer` and write either the sync
or the async method; the base class derives the other twin, the batch methods and a no-op
:meth:`~BaseProposer.reseed`. An object that only has ``score``/``ascore`` (or
``propose``/``apropose``) is adapted at the boundary by :func:`as_scorer` / :func:`as_proposer`.
Environments only need to follow the :class:`Env` protocol (structural typing).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from agentq.types import Candidate, Context, StepResult

ProposalRequest = tuple[Context, int, Sequence[str] | None]
"""One proposal request of a batch: context, number of candidates, valid actions (or None)."""

ScoringItem = tuple[Context, Sequence[str]]
"""One scoring request of a batch: a context and the candidate actions taken in it."""


@runtime_checkable
class Env(Protocol):
    """A text environment. One instance runs one episode at a time.

    Optional abilities, each its own protocol: :class:`SeedableEnv` (``seed(int)``: reseed the
    env's own randomness; called once per task), :class:`SnapshotEnv` (``snapshot()`` /
    ``restore(state)``: cheap state copies; MCTS replays the action prefix from ``reset``
    otherwise; an env whose ``deterministic`` attribute is False is always replayed, so every
    simulation samples fresh outcomes) and :class:`StepLimitedEnv` (``max_steps``).
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


@runtime_checkable
class SeedableEnv(Protocol):
    """An environment with randomness of its own, reseeded once per task."""

    def seed(self, seed: int) -> None:
        """Reseed the environment's own generator."""
        ...


@runtime_checkable
class SnapshotEnv(Protocol):
    """An environment whose state can be copied and put back cheaply."""

    def snapshot(self) -> Any:
        """A copy of the current state."""
        ...

    def restore(self, state: Any) -> None:
        """Put back a state :meth:`snapshot` returned."""
        ...


@runtime_checkable
class StepLimitedEnv(Protocol):
    """An environment with its own step limit per episode."""

    max_steps: int


@runtime_checkable
class HasStats(Protocol):
    """A component that reports its resource use (prefix-cache hits, tokens, ...)."""

    def stats(self) -> dict[str, Any]:
        """Plain-JSON counters."""
        ...


FREE_TEXT = "..."
"""Placeholder inside a valid action whose text the policy writes freely: ``search[...]`` in
``valid_actions()`` means "search[<any query>]". Constrained proposers keep the fixed part and
generate the free part."""


def has_snapshots(env: object) -> bool:
    """True when ``env`` offers ``snapshot``/``restore`` and does not say it is random."""
    return isinstance(env, SnapshotEnv) and bool(getattr(env, "deterministic", True))


def seed_env(env: object, seed: int) -> None:
    """Reseed ``env`` when it has randomness of its own (:class:`SeedableEnv`)."""
    if isinstance(env, SeedableEnv) and callable(env.seed):
        env.seed(seed)


def env_max_steps(env: object, default: int) -> int:
    """The environment's own step limit (:class:`StepLimitedEnv`), or ``default``."""
    if isinstance(env, StepLimitedEnv):
        v = env.max_steps
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
    return default


@runtime_checkable
class Proposer(Protocol):
    """Proposes candidate actions for a context.

    ``spec`` is the MODEL spec it was built from (recorded in trees and reports).
    :meth:`reseed` restarts the randomness a proposer keeps outside a task scope; inside one
    (:func:`agentq.seeding.task_scope`) its draws depend only on the scope's (seed, task id)
    and the requests, so a shared proposer gives the same samples whatever ran before.
    """

    spec: str

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

    def propose_batch(self, requests: Sequence[ProposalRequest]) -> list[list[Candidate]]:
        """Candidates for several (context, n, valid_actions) requests."""
        ...

    async def apropose_batch(self, requests: Sequence[ProposalRequest]) -> list[list[Candidate]]:
        """Async twin of :meth:`propose_batch`."""
        ...

    def reseed(self, seed: int) -> None:
        """Restart the draws made outside a task scope from ``seed``."""
        ...


@runtime_checkable
class Scorer(Protocol):
    """Scores candidate actions for a context: one float per action, higher is better.

    ``spec`` is the SCORER spec it was built from; :meth:`reseed` as for :class:`Proposer`.
    """

    spec: str

    def score(self, context: Context, actions: Sequence[str]) -> list[float]:
        """Score ``actions`` taken in ``context``."""
        ...

    async def ascore(self, context: Context, actions: Sequence[str]) -> list[float]:
        """Async twin of :meth:`score`."""
        ...

    def score_batch(self, items: Sequence[ScoringItem]) -> list[list[float]]:
        """Score several (context, actions) items."""
        ...

    async def ascore_batch(self, items: Sequence[ScoringItem]) -> list[list[float]]:
        """Async twin of :meth:`score_batch`."""
        ...

    def reseed(self, seed: int) -> None:
        """Restart the draws made outside a task scope from ``seed``."""
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
    The batch methods default to one request at a time (``apropose_batch``: concurrently);
    :meth:`reseed` defaults to nothing (a proposer without randomness of its own, or one that
    draws from :mod:`agentq.seeding`'s task scope, needs none).
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

    def propose_batch(self, requests: Sequence[ProposalRequest]) -> list[list[Candidate]]:
        """Candidates for several (context, n, valid_actions) requests, one at a time."""
        return [self.propose(c, n, valid_actions=v) for c, n, v in requests]

    async def apropose_batch(self, requests: Sequence[ProposalRequest]) -> list[list[Candidate]]:
        """Async twin of :meth:`propose_batch` (the requests run concurrently)."""
        return list(
            await asyncio.gather(*(self.apropose(c, n, valid_actions=v) for c, n, v in requests))
        )

    def reseed(self, seed: int) -> None:
        """Restart the draws made outside a task scope from ``seed`` (default: nothing)."""


class BaseScorer:
    """Base class: implement ``score`` or ``ascore``; the other twin is derived.

    ``score_batch`` scores several (context, actions) items at once; models that can batch
    across contexts override it (the search-and-learn batched scorer contract). :meth:`reseed`
    defaults to nothing, as for :class:`BaseProposer`.
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

    def score_batch(self, items: Sequence[ScoringItem]) -> list[list[float]]:
        """Score several (context, actions) items; the default scores them one at a time."""
        return [self.score(c, a) for c, a in items]

    async def ascore_batch(self, items: Sequence[ScoringItem]) -> list[list[float]]:
        """Async twin of :meth:`score_batch`."""
        return await asyncio.to_thread(self.score_batch, items)

    def reseed(self, seed: int) -> None:
        """Restart the draws made outside a task scope from ``seed`` (default: nothing)."""


class ProposerAdapter(BaseProposer):
    """A full :class:`Proposer` over an object that only has ``propose`` and/or ``apropose``
    (other attributes are read from the object)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.spec = str(getattr(inner, "spec", "") or type(inner).__name__)

    def propose(
        self, context: Context, n: int, *, valid_actions: Sequence[str] | None = None
    ) -> list[Candidate]:
        """The object's ``propose`` (or its ``apropose``, run to completion)."""
        if callable(getattr(self.inner, "propose", None)):
            return list(self.inner.propose(context, n, valid_actions=valid_actions))
        return list(_run_sync(self.inner.apropose(context, n, valid_actions=valid_actions)))

    async def apropose(
        self, context: Context, n: int, *, valid_actions: Sequence[str] | None = None
    ) -> list[Candidate]:
        """The object's ``apropose`` (or its ``propose`` in a worker thread)."""
        if callable(getattr(self.inner, "apropose", None)):
            return list(await self.inner.apropose(context, n, valid_actions=valid_actions))
        return await asyncio.to_thread(self.propose, context, n, valid_actions=valid_actions)

    def __getattr__(self, name: str) -> Any:
        inner = self.__dict__.get("inner")
        if inner is None:
            raise AttributeError(name)
        return getattr(inner, name)


class ScorerAdapter(BaseScorer):
    """A full :class:`Scorer` over an object that only has ``score`` and/or ``ascore`` (its
    ``score_batch`` is used when it has one; other attributes are read from the object)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.spec = str(getattr(inner, "spec", "") or type(inner).__name__)

    def score(self, context: Context, actions: Sequence[str]) -> list[float]:
        """The object's ``score`` (or its ``ascore``, run to completion)."""
        if callable(getattr(self.inner, "score", None)):
            return list(self.inner.score(context, actions))
        return list(_run_sync(self.inner.ascore(context, actions)))

    async def ascore(self, context: Context, actions: Sequence[str]) -> list[float]:
        """The object's ``ascore`` (or its ``score`` in a worker thread)."""
        if callable(getattr(self.inner, "ascore", None)):
            return list(await self.inner.ascore(context, actions))
        return await asyncio.to_thread(self.score, context, actions)

    def score_batch(self, items: Sequence[ScoringItem]) -> list[list[float]]:
        """The object's ``score_batch``, or one item at a time."""
        if callable(getattr(self.inner, "score_batch", None)):
            return [list(s) for s in self.inner.score_batch(items)]
        return [self.score(c, a) for c, a in items]

    def __getattr__(self, name: str) -> Any:
        inner = self.__dict__.get("inner")
        if inner is None:
            raise AttributeError(name)
        return getattr(inner, name)


def as_proposer(obj: Any) -> Proposer:
    """``obj`` itself when it is a full :class:`Proposer`, else a :class:`ProposerAdapter`."""
    if isinstance(obj, Proposer):
        return obj
    if not (callable(getattr(obj, "propose", None)) or callable(getattr(obj, "apropose", None))):
        raise TypeError(f"{type(obj).__name__} is not a Proposer (no propose or apropose)")
    return ProposerAdapter(obj)


def as_scorer(obj: Any) -> Scorer:
    """``obj`` itself when it is a full :class:`Scorer`, else a :class:`ScorerAdapter`."""
    if isinstance(obj, Scorer):
        return obj
    if not (callable(getattr(obj, "score", None)) or callable(getattr(obj, "ascore", None))):
        raise TypeError(f"{type(obj).__name__} is not a Scorer (no score or ascore)")
    return ScorerAdapter(obj)
