"""The async HTTP client of agentq's remote parts: pooled, bounded, retried, typed errors.

:class:`AsyncHTTPClient` is the one httpx client every remote part of agentq uses (the
OpenAI-compatible proposer, the vLLM Q-value scorer, the ``remote:URL`` scorer): a shared
connection pool (one per event loop), bounded concurrency, timeouts, retries with exponential
backoff and full jitter (:class:`RetryPolicy`) on 429/5xx, dropped connections, timeouts and
malformed bodies, :class:`~agentq.errors.RemoteUnavailableError` after the last retry and
:class:`~agentq.errors.RemoteRequestError` (no retry) for other 4xx answers. Sync callers go
through a private background event loop, so the pool is shared by sync calls too.

It imports httpx and agentq's core only (no server framework).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import threading
import time
import weakref
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from agentq.errors import MalformedResponse, RemoteRequestError, RemoteUnavailableError

log = logging.getLogger("agentq.remote")

T = TypeVar("T")

__all__ = [
    "RETRY_STATUSES",
    "AsyncHTTPClient",
    "MalformedResponse",
    "RemoteRequestError",
    "RemoteUnavailableError",
    "RetryPolicy",
]


# ----------------------------------------------------------------------------------------
# retries
# ----------------------------------------------------------------------------------------

RETRY_STATUSES = frozenset({408, 425, 429})
"""4xx statuses that are retried (all 5xx are retried too)."""


@dataclass
class RetryPolicy:
    """How failed requests are retried: exponential backoff with full jitter.

    The delay before retry ``k`` (0-based) is drawn uniformly from
    ``[(1 - jitter) * d, d]`` with ``d = min(backoff_max, backoff_base * 2**k)``; a server's
    ``Retry-After`` header raises it (capped at ``retry_after_max``).
    """

    max_retries: int = 4
    """Retries after the first attempt (so ``max_retries + 1`` attempts in all)."""
    backoff_base: float = 0.25
    backoff_max: float = 8.0
    jitter: float = 1.0
    """Fraction of the delay that is random (1.0 = full jitter, 0.0 = none)."""
    retry_after_max: float = 30.0
    retry_malformed: bool = True
    """Retry 2xx answers whose body is not the expected JSON."""

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if self.backoff_base < 0 or self.backoff_max < 0:
            raise ValueError("backoff times must be >= 0")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("jitter must be between 0 and 1")

    def delay(self, retry: int, rng: random.Random, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (0-based)."""
        d = min(self.backoff_max, self.backoff_base * (2.0**retry))
        d = d * (1.0 - self.jitter) + rng.uniform(0.0, d * self.jitter)
        if retry_after is not None:
            d = max(d, min(retry_after, self.retry_after_max))
        return d


def _retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _error_message(resp: httpx.Response) -> str:
    """The human part of an error body: OpenAI ``error.message``, FastAPI ``detail``, or text."""
    try:
        body = resp.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        text = resp.text.strip()
        return text[:500] if text else resp.reason_phrase
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if isinstance(err, str):
            return err
        if "detail" in body:
            return (
                json.dumps(body["detail"])
                if not isinstance(body["detail"], str)
                else body["detail"]
            )
        if "message" in body:
            return str(body["message"])
    return json.dumps(body)[:500]


def _hint(status: int) -> str:
    return {
        401: " (check the API key / bearer token)",
        403: " (check the API key / bearer token)",
        404: " (is the URL right, and the model name one the server serves? see GET /v1/models)",
        413: " (the request is over a server limit)",
    }.get(status, "")


# ----------------------------------------------------------------------------------------
# the shared async client
# ----------------------------------------------------------------------------------------


class _BackgroundLoop:
    """A daemon thread running an event loop: sync twins submit coroutines to it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        loop = self._ensure()
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:  # pragma: no cover - a sync call from inside our own loop
            coro.close()
            raise RuntimeError(
                "sync call made from the client's own event loop; use the async twin"
            )
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                t = threading.Thread(target=loop.run_forever, name="agentq-http", daemon=True)
                t.start()
                self._loop, self._thread = loop, t
            return self._loop

    def stop(self, final: Callable[[], Coroutine[Any, Any, None]] | None = None) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None:
            return
        if final is not None:
            try:
                asyncio.run_coroutine_threadsafe(final(), loop).result(timeout=10)
            except Exception:  # pragma: no cover - best effort on close
                pass
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)
        loop.close()


@dataclass
class _LoopState:
    client: httpx.AsyncClient
    semaphore: asyncio.Semaphore


class AsyncHTTPClient:
    """The async httpx client of agentq's remote parts (OpenAI-compatible servers, agentq serve).

    One ``httpx.AsyncClient`` (connection pool) per event loop that uses it, at most
    ``concurrency`` requests in flight per loop, and retries by :class:`RetryPolicy`. Sync code
    calls :meth:`run`, which executes a coroutine on a private background loop (so sync calls
    share one pool as well).

    Args:
        base_url: prefix of every request path (``http://host:port/v1``).
        api_key: sent as ``Authorization: Bearer <api_key>`` when given.
        timeout: seconds for reading a response (and for the whole pool wait / write).
        connect_timeout: seconds for opening a connection.
        concurrency: requests in flight at once (per event loop).
        max_connections: size of the connection pool.
        retry: the :class:`RetryPolicy`.
        headers: extra headers on every request.
        seed: seed of the jitter generator (None: random).
        name: how errors name the server.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        connect_timeout: float = 5.0,
        concurrency: int = 32,
        max_connections: int | None = None,
        retry: RetryPolicy | None = None,
        headers: dict[str, str] | None = None,
        seed: int | None = None,
        name: str = "server",
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = httpx.Timeout(timeout, connect=connect_timeout)
        self.concurrency = concurrency
        self.max_connections = max_connections or max(concurrency, 1)
        self.retry = retry or RetryPolicy()
        self.headers = dict(headers or {})
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self.name = name
        self._rng = random.Random(seed)
        self._states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = (
            weakref.WeakKeyDictionary()
        )
        self._bg = _BackgroundLoop()
        self.stats = {"requests": 0, "attempts": 0, "retries": 0, "failures": 0}
        """Counters: logical requests, HTTP attempts, retries, requests that raised."""

    # -- plumbing -------------------------------------------------------------------------
    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        st = self._states.get(loop)
        if st is None:
            client = httpx.AsyncClient(
                base_url=self.base_url,
                timeout=self.timeout,
                headers=self.headers,
                limits=httpx.Limits(
                    max_connections=self.max_connections,
                    max_keepalive_connections=self.max_connections,
                ),
            )
            st = _LoopState(client, asyncio.Semaphore(self.concurrency))
            self._states[loop] = st
        return st

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` to completion on the client's background loop (for sync twins)."""
        return self._bg.run(coro)

    async def aclose(self) -> None:
        """Close the connection pool of the running loop."""
        loop = asyncio.get_running_loop()
        st = self._states.pop(loop, None)
        if st is not None:
            await st.client.aclose()

    def close(self) -> None:
        """Close the background loop's pool and stop the background loop."""
        self._bg.stop(self.aclose)

    # -- requests -------------------------------------------------------------------------
    async def request_json(
        self,
        method: str,
        path: str,
        payload: Any = None,
        *,
        validate: Callable[[Any], T] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Send one request and return its JSON body (after ``validate``, when given).

        Retries 429/408/425, every 5xx, transport errors (refused or dropped connections,
        timeouts) and 2xx bodies that are not JSON or fail ``validate`` (raising
        :class:`MalformedResponse`, ``ValueError``, ``KeyError`` or ``TypeError``). Raises
        :class:`RemoteRequestError` at once for other 4xx and :class:`RemoteUnavailableError`
        after the last retry.
        """
        st = self._state()
        url = f"{self.base_url}{path}"
        self.stats["requests"] += 1
        attempts = self.retry.max_retries + 1
        last = ""
        last_status: int | None = None
        for attempt in range(attempts):
            retry_after: float | None = None
            self.stats["attempts"] += 1
            async with st.semaphore:
                try:
                    resp = await st.client.request(
                        method,
                        path,
                        json=payload,
                        timeout=self.timeout if timeout is None else httpx.Timeout(timeout),
                    )
                except httpx.TransportError as e:
                    resp = None
                    last = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
                    last_status = None
                if resp is not None:
                    try:
                        await resp.aread()
                    except httpx.TransportError as e:
                        resp, last, last_status = None, f"{type(e).__name__}: {e}", None
            if resp is not None:
                status = resp.status_code
                last_status = status
                if 200 <= status < 300:
                    try:
                        data = resp.json()
                        return validate(data) if validate is not None else data
                    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
                        last = f"malformed response body ({type(e).__name__}: {e}): {resp.text[:200]!r}"
                        if not self.retry.retry_malformed:
                            break
                elif status in RETRY_STATUSES or status >= 500:
                    last = f"HTTP {status}: {_error_message(resp)}"
                    retry_after = _retry_after_seconds(resp.headers.get("retry-after"))
                else:
                    self.stats["failures"] += 1
                    raise RemoteRequestError(
                        f"{self.name} refused {method} {url}: HTTP {status}: "
                        f"{_error_message(resp)}{_hint(status)}",
                        status_code=status,
                    )
            if attempt + 1 < attempts:
                self.stats["retries"] += 1
                wait = self.retry.delay(attempt, self._rng, retry_after)
                log.info(
                    "%s %s failed (%s); retry %d in %.2fs", method, url, last, attempt + 1, wait
                )
                await asyncio.sleep(wait)
        self.stats["failures"] += 1
        raise RemoteUnavailableError(
            f"{self.name} {method} {url} failed after {attempts} attempt(s): {last}",
            status_code=last_status,
        )

    async def post(self, path: str, payload: Any, **kw: Any) -> Any:
        """``request_json("POST", path, payload, ...)``."""
        return await self.request_json("POST", path, payload, **kw)

    async def get(self, path: str, **kw: Any) -> Any:
        """``request_json("GET", path, ...)``."""
        return await self.request_json("GET", path, None, **kw)
