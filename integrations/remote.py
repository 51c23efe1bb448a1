"""The client of ``agentq serve``: :class:`RemoteScorer`, the ``remote:URL`` SCORER spec.

A ``Scorer`` (sync and async twins, ``score_batch``) over httpx
(:class:`~agentq.integrations.http.AsyncHTTPClient`: retries with backoff, typed errors), so any
part of agentq, or a LangGraph app on another machine, uses a served Q-model as if it were
local. Importing it needs httpx only: no FastAPI, no uvicorn (those are the server's,
:mod:`agentq.integrations.server`).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import Any

from agentq.integrations.http import AsyncHTTPClient, RetryPolicy

from agentq.errors import (
    MalformedResponse,
    RemoteError,
    RemoteRequestError,
    RemoteUnavailableError,
    UserInputError,
)
from agentq.protocols import BaseScorer
from agentq.types import Context

__all__ = ["RemoteErrors", "RemoteScorer", "remote_scorer_from_spec"]


def _check_scores(n: int) -> Any:
    def check(data: Any) -> list[float]:
        scores = data["scores"]
        if not isinstance(scores, list) or len(scores) != n:
            raise MalformedResponse(f"expected {n} scores")
        if not all(isinstance(s, (int, float)) and not isinstance(s, bool) for s in scores):
            raise MalformedResponse("scores must be numbers")
        return [float(s) for s in scores]

    return check


def _check_batch_scores(lengths: list[int]) -> Any:
    def check(data: Any) -> list[list[float]]:
        scores = data["scores"]
        if not isinstance(scores, list) or len(scores) != len(lengths):
            raise MalformedResponse(f"expected {len(lengths)} score lists")
        return [_check_scores(n)({"scores": s}) for n, s in zip(lengths, scores, strict=True)]

    return check


def _server_root(url: str) -> str:
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise UserInputError(f"remote scorer URL {url!r} must start with http:// or https://")
    for suffix in ("/v1/score", "/v1"):
        if url.endswith(suffix):
            url = url[: -len(suffix)]
    return url


class RemoteScorer(BaseScorer):
    """A Scorer served by ``agentq serve`` (the ``remote:URL`` SCORER spec).

    Retries 503 (queue full), 429, 5xx and connection faults with backoff and jitter; raises
    :class:`~agentq.errors.RemoteRequestError` (a ``RemoteError``) for
    401/413/422 and :class:`~agentq.errors.RemoteUnavailableError` after
    the last retry. ``score_batch`` sends one ``/v1/score_batch`` request per ``max_items``
    items, which the server batches with everything else pending.

    Args:
        url: ``http://host:port`` of the server (``/v1`` or ``/v1/score`` suffixes are fine).
        token: bearer token (default ``$AGENTQ_SERVE_TOKEN``).
        timeout, connect_timeout, max_retries, backoff_base, concurrency: HTTP client settings.
        max_items: items per ``/v1/score_batch`` request (the server's limit is 256 by default).
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout: float = 60.0,
        connect_timeout: float = 5.0,
        max_retries: int = 4,
        backoff_base: float = 0.25,
        concurrency: int = 64,
        max_items: int = 256,
    ) -> None:
        self.url = _server_root(url)
        self.max_items = max(1, max_items)
        self.spec = f"remote:{self.url}"
        self.http = AsyncHTTPClient(
            self.url,
            api_key=token if token is not None else os.environ.get("AGENTQ_SERVE_TOKEN") or None,
            timeout=timeout,
            connect_timeout=connect_timeout,
            concurrency=concurrency,
            retry=RetryPolicy(max_retries=max_retries, backoff_base=backoff_base),
            name="agentq scoring server",
        )

    async def ascore(self, context: Context, actions: Sequence[str]) -> list[float]:
        """Scores of ``actions`` in ``context`` from the server."""
        actions = list(actions)
        if not actions:
            return []
        body = {"context": [dict(m) for m in context], "actions": actions}
        return await self.http.post("/v1/score", body, validate=_check_scores(len(actions)))

    def score(self, context: Context, actions: Sequence[str]) -> list[float]:
        """Sync twin of :meth:`ascore`."""
        return self.http.run(self.ascore(context, actions))

    async def ascore_batch(
        self, items: Sequence[tuple[Context, Sequence[str]]]
    ) -> list[list[float]]:
        """Scores of several (context, actions) items (``/v1/score_batch``, chunked)."""
        pairs: list[tuple[Context, list[str]]] = [(list(c), list(a)) for c, a in items]
        chunks = [pairs[i : i + self.max_items] for i in range(0, len(pairs), self.max_items)]

        async def one(chunk: list[tuple[Context, list[str]]]) -> list[list[float]]:
            body = {"items": [{"context": [dict(m) for m in c], "actions": a} for c, a in chunk]}
            return await self.http.post(
                "/v1/score_batch", body, validate=_check_batch_scores([len(a) for _, a in chunk])
            )

        parts = await asyncio.gather(*(one(c) for c in chunks))
        return [s for p in parts for s in p]

    def score_batch(self, items: Sequence[tuple[Context, Sequence[str]]]) -> list[list[float]]:
        """Sync twin of :meth:`ascore_batch`."""
        return self.http.run(self.ascore_batch(items))

    async def ahealth(self) -> dict[str, Any]:
        """``GET /health``."""
        return await self.http.get("/health")

    def health(self) -> dict[str, Any]:
        """Sync twin of :meth:`ahealth`."""
        return self.http.run(self.ahealth())

    async def ametrics(self) -> dict[str, Any]:
        """``GET /metrics``."""
        return await self.http.get("/metrics")

    def metrics(self) -> dict[str, Any]:
        """Sync twin of :meth:`ametrics`."""
        return self.http.run(self.ametrics())

    async def astats(self) -> dict[str, Any]:
        """``GET /stats``: the served scorer's prefix-cache statistics."""
        return await self.http.get("/stats")

    def stats(self) -> dict[str, Any]:
        """Sync twin of :meth:`astats`."""
        return self.http.run(self.astats())

    async def aclose(self) -> None:
        """Close the connection pool of the running loop."""
        await self.http.aclose()

    def close(self) -> None:
        """Close the background loop's pool."""
        self.http.close()

    def __enter__(self) -> RemoteScorer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


_REMOTE_OPTIONS = frozenset(
    {
        "token",
        "timeout",
        "connect_timeout",
        "max_retries",
        "backoff_base",
        "concurrency",
        "max_items",
    }
)


def remote_scorer_from_spec(url: str, **options: Any) -> RemoteScorer:
    """Build a :class:`RemoteScorer` from the ``remote:URL`` SCORER spec's URL.

    ``seed`` is accepted and ignored (the server's scores are deterministic); any other
    unknown option is a :class:`UserInputError`.
    """
    opts = dict(options)
    opts.pop("seed", None)
    unknown = sorted(set(opts) - _REMOTE_OPTIONS)
    if unknown:
        raise UserInputError(f"unknown option(s) for a remote: scorer: {', '.join(unknown)}")
    return RemoteScorer(url, **opts)


# re-exported for users catching errors of the client
RemoteErrors = (RemoteError, RemoteRequestError, RemoteUnavailableError)
