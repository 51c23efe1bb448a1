"""agentq's scoring server (``agentq serve``).

The server is a FastAPI app (:func:`create_app`) around any Scorer with ``score_batch``
(normally a local ``QValueScorer``):

* ``POST /v1/score`` ``{"context": [messages], "actions": [str, ...]}`` -> ``{"scores": [...]}``
* ``POST /v1/score_batch`` ``{"items": [{"context", "actions"}, ...]}`` -> ``{"scores": [[...], ...]}``
* ``GET /health`` (no token needed) and ``GET /metrics`` (requests, statuses, batch sizes,
  queue depth, latency p50/p90/p99).
* ``GET /stats``: the scorer's prefix-cache use (hits, misses, hit rate, tokens reused and
  computed, cache bytes, peak bytes, budget; ``{"prefix_cache": null}`` for a scorer without
  one). Consecutive steps of one agent send contexts that extend the previous one, so a local
  Q-model's cache reuses each earlier step's KV across requests. ``/health`` carries the hit
  rate and bytes too.

Dynamic batching: requests wait in a bounded queue; the batcher takes the first one, waits up
to ``batch_window_ms`` for more (or until ``max_batch`` are queued) and scores them all with one
``score_batch`` call in the single model thread, so the event loop never runs the model. It
also waits a little longer (``batch_regroup``, a fraction of the previous batch's scoring
time) for the agents the previous batch answered to send their next steps: multi-step agents
answered together stay in one batch. A full queue answers 503 (with ``Retry-After``);
requests over the limits answer 413 (too large) or 422 (malformed), with a message. An optional bearer token guards the scoring and metrics
routes. On shutdown (SIGTERM under uvicorn) the server stops accepting connections, finishes
every queued and running request, then stops the model thread.

The client, :class:`~agentq.integrations.remote.RemoteScorer` (SCORER spec ``remote:URL``),
is its own module, which imports httpx only; it is re-exported here.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from agentq.integrations.remote import RemoteErrors, RemoteScorer, remote_scorer_from_spec
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from agentq.errors import ScorerError, UserInputError
from agentq.protocols import Scorer
from agentq.search.selection import scorer_name
from agentq.types import Context

log = logging.getLogger("agentq.serve")

__all__ = [
    "BackgroundServer",
    "QueueFull",
    "RemoteErrors",
    "RemoteScorer",
    "ServerConfig",
    "ServerMetrics",
    "create_app",
    "remote_scorer_from_spec",
    "serve",
]


# ----------------------------------------------------------------------------------------
# configuration and metrics
# ----------------------------------------------------------------------------------------


@dataclass
class ServerConfig:
    """Limits and batching settings of the scoring server."""

    max_batch: int = 32
    """Most requests (items) scored in one ``score_batch`` call; 1 turns batching off."""
    max_batch_actions: int = 1024
    """Most actions in one ``score_batch`` call (a batch closes before it would exceed this)."""
    batch_window_ms: float = 5.0
    """How long the batcher waits for more requests after the first one of a batch."""
    batch_regroup: float = 0.05
    """After a batch is answered, the next one waits until this fraction of its scoring time
    has passed (0: not at all) for the requests that were queued then and as many again as it
    held. Agents answered in one batch send their next steps a few milliseconds apart,
    more than ``batch_window_ms`` on a busy machine; without this they split into smaller
    batches that alternate for good."""
    max_queue: int = 1024
    """Most requests waiting to be scored; more are answered 503."""
    max_actions: int = 64
    """Most actions in one request (413 above)."""
    max_context_tokens: int | None = 8192
    """Most context tokens in one request (413 above); counted with the scorer's tokenizer,
    or estimated as characters / 4 when the scorer has none. None: no limit."""
    max_items: int = 256
    """Most items in one ``/v1/score_batch`` request (413 above)."""
    max_body_bytes: int = 4 * 1024 * 1024
    """Largest request body (413 above)."""
    token: str | None = None
    """Bearer token required on every route but ``/health`` (None: open). With a token the
    documentation routes (``/docs``, ``/redoc``, ``/openapi.json``) are off."""
    latency_window: int = 10000
    """How many recent request latencies the percentiles are computed over."""
    idle_timeout_s: float = 10.0
    """A connection that has not sent a whole request head this long after it opened (or after
    its last response) is closed: slow or half-open connections cannot pile up."""
    body_timeout_s: float = 30.0
    """Most seconds to receive a request body once its head has arrived (408 above)."""
    max_depth: int = 32
    """Deepest JSON nesting a request may have (422 above)."""

    def __post_init__(self) -> None:
        for name in (
            "max_batch_actions",
            "max_items",
            "max_body_bytes",
            "latency_window",
            "max_depth",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserInputError(f"{name} must be an integer >= 1, not {value!r}")
        if self.max_context_tokens is not None and self.max_context_tokens < 1:
            raise UserInputError(
                f"max_context_tokens must be >= 1 (or None: no limit), not {self.max_context_tokens}"
            )
        for name in ("idle_timeout_s", "body_timeout_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise UserInputError(f"{name} must be a finite number > 0, not {value}")
        if not math.isfinite(self.batch_window_ms):
            raise UserInputError("batch_window_ms must be finite")
        if not (math.isfinite(self.batch_regroup) and 0 <= self.batch_regroup <= 1):
            raise UserInputError(f"batch_regroup must be between 0 and 1, not {self.batch_regroup}")
        if self.max_batch < 1:
            raise UserInputError("max_batch must be >= 1")
        if self.max_queue < 1:
            raise UserInputError("max_queue must be >= 1")
        if self.batch_window_ms < 0:
            raise UserInputError("batch_window_ms must be >= 0")
        if self.max_actions < 1:
            raise UserInputError("max_actions must be >= 1")


def _percentile(sorted_vals: Sequence[float], q: float) -> float | None:
    if not sorted_vals:
        return None
    k = min(len(sorted_vals) - 1, max(0, round(q / 100.0 * (len(sorted_vals) - 1))))
    return sorted_vals[k]


@dataclass
class ServerMetrics:
    """Counters behind ``GET /metrics``."""

    window: int = 10000
    started: float = field(default_factory=time.monotonic)
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    items: int = 0
    actions: int = 0
    batches: int = 0
    batch_sizes: Counter[int] = field(default_factory=Counter)
    batch_actions_total: int = 0
    rejected_queue_full: int = 0
    scorer_errors: int = 0
    latencies: deque[float] = field(default_factory=deque)
    batch_seconds: deque[float] = field(default_factory=deque)

    def record_request(self, status: int, seconds: float | None) -> None:
        """Count one answered scoring request (and its latency when it was scored)."""
        self.requests += 1
        self.statuses[status] += 1
        if seconds is not None:
            self.latencies.append(seconds)
            while len(self.latencies) > self.window:
                self.latencies.popleft()

    def record_batch(self, items: int, actions: int, seconds: float) -> None:
        """Count one ``score_batch`` call."""
        self.batches += 1
        self.items += items
        self.actions += actions
        self.batch_sizes[items] += 1
        self.batch_actions_total += actions
        self.batch_seconds.append(seconds)
        while len(self.batch_seconds) > self.window:
            self.batch_seconds.popleft()

    def snapshot(self, **extra: Any) -> dict[str, Any]:
        """The JSON document of ``GET /metrics``."""
        lat = sorted(self.latencies)
        bsec = sorted(self.batch_seconds)

        def ms(vals: list[float], q: float) -> float | None:
            v = _percentile(vals, q)
            return None if v is None else round(v * 1000.0, 3)

        return {
            "uptime_s": round(time.monotonic() - self.started, 3),
            "requests": self.requests,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "items_scored": self.items,
            "actions_scored": self.actions,
            "batches": self.batches,
            "batch_size": {
                "mean": round(self.items / self.batches, 3) if self.batches else None,
                "max": max(self.batch_sizes) if self.batch_sizes else None,
                "histogram": {str(k): v for k, v in sorted(self.batch_sizes.items())},
                "mean_actions": round(self.batch_actions_total / self.batches, 3)
                if self.batches
                else None,
            },
            "rejected_queue_full": self.rejected_queue_full,
            "scorer_errors": self.scorer_errors,
            "latency_ms": {
                "count": len(lat),
                "p50": ms(lat, 50),
                "p90": ms(lat, 90),
                "p99": ms(lat, 99),
            },
            "batch_ms": {"p50": ms(bsec, 50), "p90": ms(bsec, 90), "p99": ms(bsec, 99)},
            **extra,
        }


# ----------------------------------------------------------------------------------------
# dynamic batching
# ----------------------------------------------------------------------------------------


class QueueFull(Exception):
    """The batcher's queue is at ``max_queue`` (answered 503)."""


class _ItemError(Exception):
    """One item could not be scored (the status says whose fault)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class _Pending:
    context: Context
    actions: list[str]
    future: asyncio.Future[list[float]]


def _score_items(scorer: Scorer, items: list[tuple[Context, list[str]]]) -> list[list[float]]:
    fn = getattr(scorer, "score_batch", None)
    out = fn(items) if fn is not None else [scorer.score(c, a) for c, a in items]
    out = [list(map(float, s)) for s in out]
    if len(out) != len(items) or any(
        len(s) != len(a) for s, (_, a) in zip(out, items, strict=True)
    ):
        raise ScorerError("the scorer returned a wrong number of scores")
    return out


def _classify(e: BaseException) -> _ItemError:
    if isinstance(e, (ValueError, UserInputError, ScorerError)):
        return _ItemError(422, f"cannot score this request: {e}")
    return _ItemError(500, f"scorer failed: {type(e).__name__}: {e}")


class Batcher:
    """Collects pending requests and scores them in batches on one model thread."""

    def __init__(self, scorer: Scorer, config: ServerConfig, metrics: ServerMetrics) -> None:
        self.scorer = scorer
        self.config = config
        self.metrics = metrics
        self._queue: deque[_Pending] = deque()
        self._wakeup: asyncio.Event | None = None
        self._full: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._executor: ThreadPoolExecutor | None = None
        self.closing = False
        self.flushing = False
        self.busy = 0
        """Items handed to the model thread and not finished."""
        self._want = config.max_batch
        """Queue length at which the current wait for more requests ends."""
        self._expect = 0
        """Requests the next batch may expect: those queued when the previous batch was
        answered, and that batch's own (its agents' next steps)."""
        self._regroup_until = 0.0
        """When (``time.perf_counter``) the wait for :attr:`_expect` ends."""

    @property
    def queued(self) -> int:
        """Requests waiting in the queue."""
        return len(self._queue)

    def start(self) -> None:
        """Start the batching task on the running loop (idempotent)."""
        if self._task is not None and not self._task.done():
            return
        self._wakeup = asyncio.Event()
        self._full = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agentq-scorer")
        self.loop = asyncio.get_running_loop()
        self._task = self.loop.create_task(self._run(), name="agentq-batcher")

    def room(self) -> int:
        """How many more requests the queue takes."""
        return self.config.max_queue - len(self._queue)

    def submit(self, context: Context, actions: list[str]) -> asyncio.Future[list[float]]:
        """Queue one item; raises :class:`QueueFull` when the queue is full or closing."""
        if self.closing:
            raise QueueFull("the server is shutting down")
        if len(self._queue) >= self.config.max_queue:
            raise QueueFull(f"the queue is full ({self.config.max_queue} requests waiting)")
        self.start()
        assert self._wakeup is not None and self._full is not None
        fut: asyncio.Future[list[float]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(context, actions, fut))
        self._wakeup.set()
        if len(self._queue) >= self._want:
            self._full.set()
        return fut

    def _take_batch(self) -> list[_Pending]:
        batch: list[_Pending] = []
        n_actions = 0
        while self._queue and len(batch) < self.config.max_batch:
            p = self._queue[0]
            if p.future.done():  # the client went away
                self._queue.popleft()
                continue
            if batch and n_actions + len(p.actions) > self.config.max_batch_actions:
                break
            self._queue.popleft()
            batch.append(p)
            n_actions += len(p.actions)
        return batch

    async def _wait_for_queue(self, want: int, seconds: float) -> None:
        """Wait until ``want`` requests are queued, at most ``seconds`` (not while closing)."""
        assert self._full is not None
        if seconds <= 0 or len(self._queue) >= want or self.closing or self.flushing:
            return
        self._want = want
        self._full.clear()
        try:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._full.wait(), seconds)
        finally:
            self._want = self.config.max_batch

    async def _run(self) -> None:
        assert self._wakeup is not None and self._full is not None
        loop = asyncio.get_running_loop()
        window = self.config.batch_window_ms / 1000.0
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._wait_for_queue(self.config.max_batch, window)
            await self._wait_for_queue(
                min(self._expect, self.config.max_batch),
                self._regroup_until - time.perf_counter(),
            )
            batch = self._take_batch()
            if not batch:
                continue
            items = [(p.context, p.actions) for p in batch]
            self.busy = len(batch)
            t0 = time.perf_counter()
            try:
                results = await loop.run_in_executor(self._executor, self._score, items)
            finally:
                self.busy = 0
            done = time.perf_counter()
            seconds = done - t0
            self._expect = len(self._queue) + len(batch)
            self._regroup_until = done + self.config.batch_regroup * seconds
            self.metrics.record_batch(len(batch), sum(len(a) for _, a in items), seconds)
            for p, r in zip(batch, results, strict=True):
                if p.future.done():
                    continue
                if isinstance(r, _ItemError):
                    p.future.set_exception(r)
                else:
                    p.future.set_result(r)

    def _score(self, items: list[tuple[Context, list[str]]]) -> list[list[float] | _ItemError]:
        """Runs on the model thread: one batched call; on failure, item by item."""
        try:
            return list(_score_items(self.scorer, items))
        except Exception as e:
            if len(items) == 1:
                self.metrics.scorer_errors += 1
                log.warning("scoring failed: %s", e)
                return [_classify(e)]
        out: list[list[float] | _ItemError] = []
        for it in items:  # isolate the item(s) that broke the batch
            try:
                out.append(_score_items(self.scorer, [it])[0])
            except Exception as e:
                self.metrics.scorer_errors += 1
                log.warning("scoring failed: %s", e)
                out.append(_classify(e))
        return out

    def flush(self) -> None:
        """Stop waiting for batch windows (shutdown has begun): score what is queued now."""
        self.flushing = True
        if self._full is not None:
            self._full.set()

    async def drain(self) -> None:
        """Stop taking requests, finish every queued one, then stop the model thread."""
        self.closing = True
        self.flush()
        while self._queue or self.busy:
            await asyncio.sleep(0.01)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._executor is not None:
            self._executor.shutdown(wait=True)


# ----------------------------------------------------------------------------------------
# request parsing
# ----------------------------------------------------------------------------------------


class _HTTPProblem(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


MAX_CHARS_PER_TOKEN = 16
"""A context longer than ``max_context_tokens * MAX_CHARS_PER_TOKEN`` characters is refused
(413) before it is tokenized, so an oversized request costs no tokenizer memory."""


def check_json_shape(obj: Any, max_depth: int) -> None:
    """422 for JSON nested deeper than ``max_depth`` or holding a string that is not valid
    Unicode text (a lone surrogate such as ``"\\ud800"``). Iterative: no recursion limit."""
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            if not value.isascii():
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError as e:
                    raise _HTTPProblem(
                        422, "request holds a string that is not valid Unicode (lone surrogate)"
                    ) from e
            continue
        if isinstance(value, dict | list):
            if depth > max_depth:
                raise _HTTPProblem(422, f"request JSON is nested deeper than {max_depth} levels")
            children = list(value.items()) if isinstance(value, dict) else value
            for child in children:
                if isinstance(child, tuple):  # a dict item: its key, then its value
                    stack.append((child[0], depth + 1))
                    stack.append((child[1], depth + 1))
                else:
                    stack.append((child, depth + 1))


def _parse_item(obj: Any, where: str = "") -> tuple[Context, list[str]]:
    if not isinstance(obj, dict):
        raise _HTTPProblem(422, f"{where}expected a JSON object with 'context' and 'actions'")
    if "context" not in obj or "actions" not in obj:
        raise _HTTPProblem(422, f"{where}'context' and 'actions' are both required")
    context, actions = obj["context"], obj["actions"]
    if not isinstance(context, list):
        raise _HTTPProblem(422, f"{where}'context' must be a list of chat messages")
    if not context:
        raise _HTTPProblem(422, f"{where}'context' must hold at least one message")
    msgs: Context = []
    for i, m in enumerate(context):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise _HTTPProblem(422, f"{where}context[{i}] must be an object with a string 'role'")
        content = m.get("content", "")
        if content is None:
            content = ""
        if not isinstance(content, str):
            raise _HTTPProblem(422, f"{where}context[{i}].content must be a string")
        msg = dict(m)
        msg["content"] = content
        msgs.append(msg)  # type: ignore[arg-type]
    if not isinstance(actions, list) or not all(isinstance(a, str) for a in actions):
        raise _HTTPProblem(422, f"{where}'actions' must be a list of strings")
    return msgs, list(actions)


def _context_tokens(tokenizer: Any, context: Context) -> int:
    if tokenizer is None:
        return sum(len(str(m.get("content", ""))) for m in context) // 4 + 4 * len(context)
    # render, then encode: the same ids as apply_chat_template(tokenize=True), several times faster
    text = tokenizer.apply_chat_template(list(context), add_generation_prompt=True, tokenize=False)
    return len(tokenizer.encode(text, add_special_tokens=False))


# ----------------------------------------------------------------------------------------
# the app
# ----------------------------------------------------------------------------------------


def create_app(
    scorer: Scorer,
    config: ServerConfig | None = None,
    *,
    tokenizer: Any = None,
    name: str | None = None,
    **overrides: Any,
) -> Any:
    """The FastAPI app serving ``scorer`` (any Scorer; ``score_batch`` is used when it has one).

    Args:
        scorer: the model; it runs in one worker thread, one batch at a time.
        config: limits and batching (:class:`ServerConfig`); keyword ``overrides`` replace
            single fields (``create_app(s, max_batch=1, token="t")``).
        tokenizer: counts context tokens for ``max_context_tokens`` (default: the scorer's
            ``tokenizer`` attribute).
        name: what ``/health`` reports as the model (default: the scorer's ``spec``).
    """

    cfg = config or ServerConfig()
    if overrides:
        fields = {k: getattr(cfg, k) for k in cfg.__dataclass_fields__}
        unknown = set(overrides) - set(fields)
        if unknown:
            raise TypeError(f"unknown server option(s): {', '.join(sorted(unknown))}")
        fields.update(overrides)
        cfg = ServerConfig(**fields)
    metrics = ServerMetrics(window=cfg.latency_window)
    batcher = Batcher(scorer, cfg, metrics)
    tok = tokenizer if tokenizer is not None else getattr(scorer, "tokenizer", None)
    model_name = name or scorer_name(scorer)
    token_bytes = cfg.token.encode() if cfg.token else None

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> Any:
        batcher.start()
        try:
            yield
        finally:
            await batcher.drain()

    docs: dict[str, Any] = {}
    if token_bytes is not None:  # the docs routes would answer without the token: off
        docs = {"docs_url": None, "redoc_url": None, "openapi_url": None}
    app = FastAPI(
        title="agentq scoring server",
        description="Step-level Q-value scores for candidate agent actions.",
        lifespan=lifespan,
        **docs,
    )
    app.state.batcher = batcher
    app.state.metrics = metrics
    app.state.config = cfg

    def problem(status: int, message: str, headers: dict[str, str] | None = None) -> Any:
        kind = {
            401: "unauthorized",
            408: "timeout",
            413: "too_large",
            422: "invalid_request",
            503: "overloaded",
        }
        return JSONResponse(
            {
                "error": {
                    "message": message,
                    "type": kind.get(status, "server_error"),
                    "code": status,
                }
            },
            status_code=status,
            headers=headers,
        )

    def check_token(request: Request) -> None:
        if token_bytes is None:
            return
        got = request.headers.get("authorization", "")
        scheme, _, value = got.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            value.strip().encode(), token_bytes
        ):
            raise _HTTPProblem(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})

    async def read_json(request: Request) -> Any:
        limit = cfg.max_body_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise _HTTPProblem(
                413, f"request body of {declared} bytes is over the limit of {limit}"
            )
        chunks: list[bytes] = []

        async def receive() -> None:
            size = 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise _HTTPProblem(413, f"request body is over the limit of {limit} bytes")
                chunks.append(chunk)

        try:
            await asyncio.wait_for(receive(), cfg.body_timeout_s)
        except TimeoutError as e:
            raise _HTTPProblem(
                408, f"request body not received within {cfg.body_timeout_s} s"
            ) from e
        try:
            body = json.loads(b"".join(chunks))
        except RecursionError as e:
            raise _HTTPProblem(422, "request JSON is nested too deeply") from e
        except ValueError as e:  # bad JSON, bad UTF-8
            raise _HTTPProblem(422, f"request body is not valid JSON: {e}") from e
        check_json_shape(body, cfg.max_depth)
        return body

    async def check_limits(items: list[tuple[Context, list[str]]]) -> None:
        for i, (_context, actions) in enumerate(items):
            where = f"items[{i}]: " if len(items) > 1 else ""
            if len(actions) > cfg.max_actions:
                raise _HTTPProblem(
                    413, f"{where}{len(actions)} actions is over the limit of {cfg.max_actions}"
                )
        if cfg.max_context_tokens is None:
            return
        most_chars = cfg.max_context_tokens * MAX_CHARS_PER_TOKEN
        for i, (context, _actions) in enumerate(items):
            chars = sum(len(m.get("content") or "") for m in context)
            if chars > most_chars:  # refused before tokenizing: no memory spent on it
                where = f"items[{i}]: " if len(items) > 1 else ""
                raise _HTTPProblem(
                    413,
                    f"{where}context of {chars} characters is over the limit of "
                    f"{cfg.max_context_tokens} tokens",
                )
        counts = await asyncio.to_thread(lambda: [_context_tokens(tok, c) for c, _ in items])
        for i, n in enumerate(counts):
            if n > cfg.max_context_tokens:
                where = f"items[{i}]: " if len(items) > 1 else ""
                raise _HTTPProblem(
                    413,
                    f"{where}context of {n} tokens is over the limit of {cfg.max_context_tokens}",
                )

    async def score_items(items: list[tuple[Context, list[str]]]) -> list[list[float]]:
        if batcher.closing:
            raise _HTTPProblem(503, "the server is shutting down", {"Retry-After": "1"})
        if batcher.room() < len(items):
            metrics.rejected_queue_full += 1
            raise _HTTPProblem(
                503,
                f"the queue is full ({cfg.max_queue} requests waiting); retry later",
                {"Retry-After": "1"},
            )
        futures = []
        for c, a in items:
            if not a:
                continue
            futures.append(batcher.submit(c, a))
        try:
            done = await asyncio.gather(*futures)
        except _ItemError as e:
            raise _HTTPProblem(e.status, str(e)) from e
        it = iter(done)
        return [next(it) if a else [] for _, a in items]

    async def handle(request: Request, batch: bool) -> Any:
        t0 = time.perf_counter()
        try:
            check_token(request)
            body = await read_json(request)
            if batch:
                if not isinstance(body, dict) or not isinstance(body.get("items"), list):
                    raise _HTTPProblem(422, "expected a JSON object with an 'items' list")
                if len(body["items"]) > cfg.max_items:
                    raise _HTTPProblem(
                        413, f"{len(body['items'])} items is over the limit of {cfg.max_items}"
                    )
                items = [_parse_item(x, f"items[{i}]: ") for i, x in enumerate(body["items"])]
            else:
                items = [_parse_item(body)]
            await check_limits(items)
            scores = await score_items(items)
        except _HTTPProblem as e:
            metrics.record_request(e.status, None)
            return problem(e.status, e.message, e.headers)
        metrics.record_request(200, time.perf_counter() - t0)
        return JSONResponse({"scores": scores if batch else scores[0]})

    @app.post("/v1/score")
    async def score(request: Request) -> Any:
        """Score ``actions`` in ``context``: ``{"context": [...], "actions": [...]}``."""
        return await handle(request, batch=False)

    @app.post("/v1/score_batch")
    async def score_batch(request: Request) -> Any:
        """Score several items: ``{"items": [{"context": [...], "actions": [...]}, ...]}``."""
        return await handle(request, batch=True)

    def cache_stats() -> dict[str, Any] | None:
        fn = getattr(scorer, "stats", None)
        if not callable(fn):
            return None
        try:
            d = fn()
        except Exception:  # noqa: BLE001 - stats are informative, never fail a route
            return None
        return d if isinstance(d, dict) else None

    @app.get("/health")
    async def health() -> Any:
        """Liveness: status, model, queue depth, prefix-cache summary (no token needed)."""
        out: dict[str, Any] = {
            "status": "draining" if batcher.closing else "ok",
            "model": model_name,
            "queued": batcher.queued,
            "batching": cfg.max_batch > 1,
        }
        st = cache_stats()
        if st is not None:
            cache = st.get("cache") or {}
            out["prefix_cache"] = {
                "hit_rate": st.get("hit_rate"),
                "tokens_reused": st.get("tokens_reused"),
                "tokens_computed": st.get("tokens_computed"),
                "bytes": cache.get("bytes"),
                "budget_bytes": cache.get("budget_bytes"),
            }
        return out

    @app.get("/stats")
    async def get_stats(request: Request) -> Any:
        """The scorer's prefix-cache statistics (``stats()``), or null when it has none."""
        try:
            check_token(request)
        except _HTTPProblem as e:
            return problem(e.status, e.message, e.headers)
        return {"model": model_name, "prefix_cache": cache_stats()}

    @app.get("/metrics")
    async def get_metrics(request: Request) -> Any:
        """Requests, statuses, batch sizes, queue depth and latency percentiles."""
        try:
            check_token(request)
        except _HTTPProblem as e:
            return problem(e.status, e.message, e.headers)
        return metrics.snapshot(
            queued=batcher.queued,
            in_model=batcher.busy,
            config={
                "max_batch": cfg.max_batch,
                "batch_window_ms": cfg.batch_window_ms,
                "max_queue": cfg.max_queue,
                "max_actions": cfg.max_actions,
                "max_context_tokens": cfg.max_context_tokens,
            },
        )

    return app


# ----------------------------------------------------------------------------------------
# running it
# ----------------------------------------------------------------------------------------

LOOPBACK = ("127.0.0.1", "::1", "localhost")


def serve(
    app: Any,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    log_level: str = "info",
    graceful_timeout: int | None = 60,
) -> None:
    """Run ``app`` with uvicorn until SIGINT/SIGTERM; in-flight requests finish first."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        lifespan="on",
        timeout_graceful_shutdown=graceful_timeout,
        access_log=False,
        http=idle_timeout_protocol(_idle_timeout(app)),
    )
    FlushingServer(config, app).run()


def _idle_timeout(app: Any) -> float:
    cfg = getattr(getattr(app, "state", None), "config", None)
    return float(getattr(cfg, "idle_timeout_s", ServerConfig.idle_timeout_s))


def idle_timeout_protocol(seconds: float) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol with a request-head deadline.

    A connection must deliver a whole request head within ``seconds`` of opening, and again
    within ``seconds`` of each response; otherwise it is closed. uvicorn's own keep-alive timer
    is cancelled by any byte received, so a client trickling one byte at a time (or a half-open
    connection) would hold a socket forever without this.
    """
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    base: Any = AutoHTTPProtocol

    class HeadDeadlineProtocol(base):  # type: ignore[misc, valid-type]
        _deadline: asyncio.TimerHandle | None = None

        def _in_request(self) -> bool:
            cycle = getattr(self, "cycle", None)
            return cycle is not None and not cycle.response_complete

        def _arm(self) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(seconds, self._expire)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expire(self) -> None:
            self._deadline = None
            if not self._in_request() and not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._in_request():
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self._in_request():
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return HeadDeadlineProtocol


def _flush_app(app: Any) -> None:
    batcher = getattr(getattr(app, "state", None), "batcher", None)
    loop = getattr(batcher, "loop", None)
    if batcher is not None and loop is not None and not loop.is_closed():
        loop.call_soon_threadsafe(batcher.flush)


class FlushingServer(uvicorn.Server):
    """uvicorn's server that, on SIGINT/SIGTERM, also tells the batcher to stop waiting."""

    def __init__(self, config: uvicorn.Config, app: Any) -> None:
        super().__init__(config)
        self._app = app

    def handle_exit(self, sig: int, frame: Any) -> None:
        """Flush the batcher, then uvicorn's graceful shutdown."""
        _flush_app(self._app)
        super().handle_exit(sig, frame)


class BackgroundServer:
    """Run an ASGI app with uvicorn in a daemon thread (tests, notebooks, benchmarks).

    ``with BackgroundServer(app) as srv: RemoteScorer(srv.url)...``; ``port=0`` picks a free
    port. Stopping it is a graceful shutdown, as under SIGTERM.
    """

    def __init__(
        self, app: Any, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"
    ) -> None:
        self.host = host
        self._config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level=log_level,
            lifespan="on",
            access_log=False,
            http=idle_timeout_protocol(_idle_timeout(app)),
        )
        self.app = app
        self.server = uvicorn.Server(self._config)
        self._thread: threading.Thread | None = None
        self.port = port

    @property
    def url(self) -> str:
        """``http://host:port`` of the running server."""
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> BackgroundServer:
        """Start serving (once); returns when the server accepts connections."""
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self.server.run, name="agentq-uvicorn", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the server thread stopped before it started")
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not start in time")
            time.sleep(0.01)
        socks = [s for srv in getattr(self.server, "servers", []) for s in (srv.sockets or [])]
        if socks:
            self.port = socks[0].getsockname()[1]
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful shutdown: finish in-flight requests, then stop."""
        _flush_app(self.app)
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
