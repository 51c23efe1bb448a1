"""OpenAI-compatible servers (vLLM and others) over httpx: a Proposer and a Q-value Scorer.

Three layers:

* :class:`AsyncHTTPClient` - the one async httpx client every remote part of agentq uses: a
  shared connection pool (one per event loop), bounded concurrency, timeouts, retries with
  exponential backoff and full jitter on 429/5xx, dropped connections, timeouts and malformed
  bodies, :class:`RemoteUnavailableError` after the last retry and :class:`RemoteRequestError`
  (no retry) for other 4xx answers. Sync callers go through a private background event loop,
  so the pool is shared by sync calls too.
* :class:`OpenAIProposer` - chat completions with ``n`` candidates (falling back to N parallel
  requests for servers that ignore ``n``), temperature/top-p/max tokens/stop, and the sum of the
  token log-probs when the server returns them. MODEL spec ``openai:URL#model``.
* :class:`VLLMQValueScorer` - a step-level Q-value model served by vLLM: the base model and the
  LoRA adapter as two served model names (or two servers). Each (context, action) is tokenised
  with :func:`agentq.render.tokenize_for_scoring` and sent as token ids to ``/v1/completions``
  with ``echo`` and ``prompt_logprobs``, so the tokens scored are exactly the training tokens;
  ``Q = beta * sum_t (logp_adapter(t) - logp_base(t))`` over the action tokens.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import httpx

from agentq.errors import ProposerError, RemoteError, ScorerError, UserInputError
from agentq.protocols import BaseProposer, BaseScorer
from agentq.render import render_action, tokenize_for_scoring
from agentq.types import Candidate, Context

log = logging.getLogger("agentq.remote")

T = TypeVar("T")

__all__ = [
    "AsyncHTTPClient",
    "MalformedResponse",
    "OpenAIProposer",
    "RemoteRequestError",
    "RemoteUnavailableError",
    "RetryPolicy",
    "VLLMQValueScorer",
    "parse_openai_spec",
    "proposer_from_spec",
    "vllm_scorer_from_spec",
]


# ----------------------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------------------


class RemoteRequestError(RemoteError):
    """The server refused the request (a 4xx other than 408/425/429): retrying will not help.

    Typical causes: a wrong model name (404), a context longer than the model's window (400),
    a bad API key (401/403), a request over a server limit (413).
    """


class RemoteUnavailableError(RemoteError):
    """The server kept failing (429/5xx, dropped connections, timeouts, malformed bodies)
    until the last retry."""


class MalformedResponse(ValueError):
    """A 2xx answer whose body is not the JSON shape expected (retried like a 5xx)."""


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


# ----------------------------------------------------------------------------------------
# specs
# ----------------------------------------------------------------------------------------


def parse_openai_spec(rest: str) -> tuple[str, str | None]:
    """Split ``http://host:port/v1#model`` into (base URL, model name or None).

    A URL without a path gets ``/v1`` appended (``http://host:8000#m`` -> ``http://host:8000/v1``).
    """
    url, _, model = rest.strip().partition("#")
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise UserInputError(
            f"OpenAI-compatible endpoint {rest!r} must look like http://host:port/v1#model"
        )
    parsed = httpx.URL(url)
    if not parsed.host:
        raise UserInputError(f"OpenAI-compatible endpoint {rest!r} has no host")
    if parsed.path in ("", "/"):
        url = url + "/v1"
    return url, (model.strip() or None)


def _api_key(explicit: str | None) -> str | None:
    if explicit:
        return explicit
    return os.environ.get("AGENTQ_API_KEY") or os.environ.get("OPENAI_API_KEY") or None


# ----------------------------------------------------------------------------------------
# proposer
# ----------------------------------------------------------------------------------------


def _check_choices(data: Any) -> Any:
    choices = data["choices"]
    if not isinstance(choices, list) or not choices:
        raise MalformedResponse("no choices in the response")
    for c in choices:
        msg = c["message"]
        if not isinstance(msg, dict):
            raise MalformedResponse("choice.message is not an object")
        content = msg.get("content")
        if content is not None and not isinstance(content, str):
            raise MalformedResponse("choice.message.content is not a string")
    return data


def _choice_candidate(choice: dict[str, Any]) -> Candidate:
    msg = choice["message"]
    text = render_action(msg.get("content"), msg.get("tool_calls"))
    logprob: float | None = None
    tokens: int | None = None
    lp = choice.get("logprobs")
    if isinstance(lp, dict) and isinstance(lp.get("content"), list):
        vals = [t.get("logprob") for t in lp["content"] if isinstance(t, dict)]
        nums = [float(v) for v in vals if isinstance(v, (int, float))]
        if nums and len(nums) == len(vals):
            logprob = sum(nums)
            tokens = len(nums)
    return Candidate(text=text, logprob=logprob, tokens=tokens)


def _with_usage(cands: list[Candidate], usage: Any) -> list[Candidate]:
    """Fill ``tokens`` from the response's ``usage.completion_tokens`` where the log-probs did
    not count them: one choice gets the whole count; several share what the counted ones leave
    (split evenly, so the step's total is the server's)."""
    total = usage.get("completion_tokens") if isinstance(usage, dict) else None
    unknown = [i for i, c in enumerate(cands) if c.tokens is None]
    if not unknown or not isinstance(total, int) or isinstance(total, bool):
        return cands
    left = max(0, total - sum(c.tokens or 0 for c in cands))
    share, extra = divmod(left, len(unknown))
    out = list(cands)
    for j, i in enumerate(unknown):
        out[i] = replace(cands[i], tokens=share + (1 if j < extra else 0))
    return out


class OpenAIProposer(BaseProposer):
    """Proposes actions with an OpenAI-compatible chat completions endpoint (vLLM, TGI, ...).

    One request with ``n`` samples; when the server returns fewer choices than asked (it ignores
    ``n``) or refuses ``n`` > 1, the rest come from parallel requests of one sample each, and
    later calls go straight to parallel requests. Log-probs are asked for and each candidate's
    ``logprob`` is the sum over its tokens when the server returns them; a server that refuses
    log-probs is asked again without them.

    ``valid_actions`` is not sent: the environment's context already lists the actions, and the
    sampled text is executed as is (a bad action becomes an invalid-action observation).

    Args:
        base_url: ``http://host:port/v1``.
        model: served model name (None: the first of ``GET /models``, looked up once).
        temperature, top_p, max_tokens, stop: sampling settings sent with every request.
        logprobs: ask for token log-probs.
        n_mode: ``"auto"`` (``n``, falling back), ``"n"`` (always ``n``), ``"parallel"``.
        seed: base seed sent to the server (request ``i`` of a parallel fallback gets seed + i).
        extra_body: extra fields merged into every request body (e.g. vLLM's ``top_k``).
        api_key: bearer token (default ``$AGENTQ_API_KEY`` or ``$OPENAI_API_KEY``).
        timeout, connect_timeout, max_retries, backoff_base, concurrency: the HTTP client's.
        client: an :class:`AsyncHTTPClient` to share (the other HTTP settings are then unused).
    """

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        *,
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_tokens: int = 256,
        stop: Sequence[str] | str | None = None,
        logprobs: bool = True,
        n_mode: str = "auto",
        seed: int | None = None,
        extra_body: dict[str, Any] | None = None,
        api_key: str | None = None,
        timeout: float = 120.0,
        connect_timeout: float = 5.0,
        max_retries: int = 4,
        backoff_base: float = 0.25,
        concurrency: int = 32,
        client: AsyncHTTPClient | None = None,
    ) -> None:
        if n_mode not in ("auto", "n", "parallel"):
            raise UserInputError(f"n_mode must be auto, n or parallel, not {n_mode!r}")
        if max_tokens < 1:
            raise UserInputError("max_tokens must be >= 1")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.temperature = temperature
        self.top_p = top_p
        self.max_tokens = max_tokens
        self.stop = [stop] if isinstance(stop, str) else (list(stop) if stop else None)
        self.logprobs = logprobs
        self.n_mode = n_mode
        self.seed = seed
        self.extra_body = dict(extra_body or {})
        self.http = client or AsyncHTTPClient(
            self.base_url,
            api_key=_api_key(api_key),
            timeout=timeout,
            connect_timeout=connect_timeout,
            concurrency=concurrency,
            retry=RetryPolicy(max_retries=max_retries, backoff_base=backoff_base),
            seed=seed,
            name="OpenAI-compatible server",
        )
        self._n_supported: bool | None = None if n_mode == "auto" else n_mode == "n"
        self._logprobs_ok = logprobs
        self._calls = 0

    # -- models ---------------------------------------------------------------------------
    async def amodels(self) -> list[str]:
        """Names the server serves (``GET /models``)."""
        data = await self.http.get("/models", validate=lambda d: [m["id"] for m in d["data"]])
        return list(data)

    def models(self) -> list[str]:
        """Sync twin of :meth:`amodels`."""
        return self.http.run(self.amodels())

    async def _model(self) -> str:
        if self.model:
            return self.model
        names = await self.amodels()
        if not names:
            raise RemoteRequestError(f"{self.base_url}/models lists no model; name one: URL#model")
        self.model = names[0]
        return self.model

    # -- proposing ------------------------------------------------------------------------
    def _body(self, model: str, context: Context, n: int, seed: int | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": model,
            "messages": [dict(m) for m in context],
            "n": n,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
        }
        if self.stop:
            body["stop"] = self.stop
        if self._logprobs_ok:
            body["logprobs"] = True
        if seed is not None:
            body["seed"] = seed
        body.update(self.extra_body)
        return body

    async def _chat(
        self, model: str, context: Context, n: int, seed: int | None
    ) -> list[Candidate]:
        body = self._body(model, context, n, seed)
        try:
            data = await self.http.post("/chat/completions", body, validate=_check_choices)
        except RemoteRequestError as e:
            if self._logprobs_ok and e.status_code in (400, 422) and "logprob" in str(e).lower():
                log.warning("server refused logprobs; proposing without them: %s", e)
                self._logprobs_ok = False
                body.pop("logprobs", None)
                data = await self.http.post("/chat/completions", body, validate=_check_choices)
            else:
                raise
        choices = sorted(data["choices"], key=lambda c: c.get("index", 0))
        return _with_usage([_choice_candidate(c) for c in choices], data.get("usage"))

    async def _parallel(
        self, model: str, context: Context, k: int, seed: int | None
    ) -> list[Candidate]:
        seeds = [None if seed is None else seed + i for i in range(k)]
        parts = await asyncio.gather(*(self._chat(model, context, 1, s) for s in seeds))
        return [c for p in parts for c in p[:1]]

    async def apropose(
        self, context: Context, n: int, *, valid_actions: Sequence[str] | None = None
    ) -> list[Candidate]:
        """Return ``n`` sampled actions (with log-probs when the server gives them)."""
        if n < 1:
            return []
        model = await self._model()
        seed = None if self.seed is None else self.seed + 1009 * self._calls
        self._calls += 1
        if n == 1 or self._n_supported is False:
            out = await self._parallel(model, context, n, seed)
        else:
            try:
                out = await self._chat(model, context, n, seed)
            except RemoteRequestError as e:
                if self.n_mode != "auto" or e.status_code not in (400, 422):
                    raise
                # maybe the server refuses n > 1: one sample alone tells
                out = await self._parallel(model, context, 1, seed)
                self._n_supported = False
                log.warning("server refused n=%d (%s); using parallel requests", n, e)
            if len(out) >= n:
                self._n_supported = True
                out = out[:n]
            else:
                if self.n_mode == "auto" and len(out) <= 1:
                    self._n_supported = False
                more_seed = None if seed is None else seed + len(out)
                out += await self._parallel(model, context, n - len(out), more_seed)
        if len(out) != n:
            raise ProposerError(f"OpenAI-compatible server returned {len(out)} of {n} candidates")
        return out

    def propose(
        self, context: Context, n: int, *, valid_actions: Sequence[str] | None = None
    ) -> list[Candidate]:
        """Sync twin of :meth:`apropose` (runs on the client's background loop)."""
        return self.http.run(self.apropose(context, n, valid_actions=valid_actions))

    async def aclose(self) -> None:
        """Close the connection pool of the running loop."""
        await self.http.aclose()

    def close(self) -> None:
        """Close the background loop's pool."""
        self.http.close()


_LOCAL_ONLY_OPTIONS = frozenset({"device", "dtype", "torch_dtype", "batch_size", "progress"})
_PROPOSER_OPTIONS = frozenset(
    {
        "temperature", "top_p", "max_tokens", "stop", "logprobs", "n_mode", "seed", "extra_body",
        "api_key", "timeout", "connect_timeout", "max_retries", "backoff_base", "concurrency",
        "client",
    }
)  # fmt: skip


def proposer_from_spec(rest: str, **options: Any) -> OpenAIProposer:
    """Build an :class:`OpenAIProposer` from ``http://host:port/v1#model`` (``openai:`` spec).

    ``max_new_tokens`` is accepted as an alias of ``max_tokens``; options that only concern
    local models (``device``, ``dtype``, ...) are ignored; any other unknown option is a
    :class:`UserInputError`.
    """
    url, model = parse_openai_spec(rest)
    opts = dict(options)
    if "max_new_tokens" in opts:
        opts["max_tokens"] = opts.pop("max_new_tokens")
    for k in _LOCAL_ONLY_OPTIONS:
        opts.pop(k, None)
    unknown = sorted(set(opts) - _PROPOSER_OPTIONS)
    if unknown:
        raise UserInputError(f"unknown option(s) for an openai: policy: {', '.join(unknown)}")
    return OpenAIProposer(url, model, **opts)


# ----------------------------------------------------------------------------------------
# Q-value scorer on vLLM
# ----------------------------------------------------------------------------------------


def _prompt_logprobs(choice: dict[str, Any], ids: Sequence[int]) -> list[float | None]:
    """Per-position log-prob of each prompt token: vLLM ``prompt_logprobs`` or OpenAI echo."""
    pl = choice.get("prompt_logprobs")
    if isinstance(pl, list) and len(pl) >= len(ids):
        out: list[float | None] = []
        for pos, tid in enumerate(ids):
            entry = pl[pos]
            if entry is None:
                out.append(None)
                continue
            if not isinstance(entry, dict):
                raise MalformedResponse("prompt_logprobs entry is not an object")
            hit = entry.get(str(tid), entry.get(tid))  # type: ignore[call-overload]
            if hit is None:
                raise MalformedResponse(f"prompt_logprobs at {pos} lacks token {tid}")
            val = hit.get("logprob") if isinstance(hit, dict) else hit
            if not isinstance(val, (int, float)):
                raise MalformedResponse("prompt logprob is not a number")
            out.append(float(val))
        return out
    lp = choice.get("logprobs")
    if isinstance(lp, dict) and isinstance(lp.get("token_logprobs"), list):
        vals = lp["token_logprobs"]
        if len(vals) < len(ids):
            raise MalformedResponse("echoed token_logprobs shorter than the prompt")
        return [None if v is None else float(v) for v in vals[: len(ids)]]
    raise MalformedResponse("the response has neither prompt_logprobs nor echoed logprobs")


@dataclass
class _Seq:
    ids: list[int]
    start: int  # first action position


class VLLMQValueScorer(BaseScorer):
    """The step-level Q-value of a LoRA Q-model served by vLLM (or any server with prompt log-probs).

    ``Q(s, a) = beta * sum_t [log pi_adapter(t | s, a<t) - log pi_base(t | s, a<t)]`` over the
    action tokens ``t`` (``aggregation="mean"`` divides by their number). The base model and
    the adapter are two served model names (``vllm serve BASE --enable-lora --lora-modules
    qmodel=DIR``), or two URLs (``base_url``). Every (context, action) is tokenised with
    :func:`agentq.render.tokenize_for_scoring` and sent as token ids, with ``echo``, a
    ``max_tokens`` of 1 and ``prompt_logprobs``; all sequences of a call go in one request per
    model (split into ``max_prompts`` sized requests), the two models concurrently.

    vLLM does not use its prefix cache for requests that ask for prompt log-probs, so every
    candidate re-computes its whole context: see docs/remote.md for the cost.

    Args:
        url: ``http://host:port/v1`` serving the adapter (and the base, unless ``base_url``).
        adapter_model: served name of the LoRA adapter.
        base_model: served name of the base model.
        tokenizer: a tokenizer object or a MODEL spec/path whose tokenizer is loaded (the
            Q-model's tokenizer: the chat template must be the training one).
        beta, aggregation, max_length: as in ``qmodel.json`` (see :meth:`from_qmodel`).
        base_url: a second server for the base model.
        max_tokens: 1 works everywhere; recent vLLM also accepts 0 with ``echo``.
        max_prompts: sequences per request.
        logprob_format: ``"prompt_logprobs"`` (vLLM's field) or ``"echo"`` (OpenAI-style
            ``echo`` + ``logprobs``, for other servers); either answer format is read.
    """

    def __init__(
        self,
        url: str,
        adapter_model: str,
        base_model: str,
        *,
        tokenizer: Any,
        beta: float = 0.1,
        aggregation: str = "sum",
        max_length: int | None = None,
        base_url: str | None = None,
        max_tokens: int = 1,
        max_prompts: int = 64,
        logprob_format: str = "prompt_logprobs",
        api_key: str | None = None,
        timeout: float = 120.0,
        connect_timeout: float = 5.0,
        max_retries: int = 4,
        backoff_base: float = 0.25,
        concurrency: int = 16,
    ) -> None:
        if aggregation not in ("sum", "mean"):
            raise UserInputError(f"aggregation must be sum or mean, not {aggregation!r}")
        if logprob_format not in ("prompt_logprobs", "echo"):
            raise UserInputError("logprob_format must be prompt_logprobs or echo")
        if isinstance(tokenizer, (str, Path)):
            from agentq.models.loading import load_tokenizer

            tokenizer = load_tokenizer(str(tokenizer))
        self.tokenizer = tokenizer
        self.adapter_model = adapter_model
        self.base_model = base_model
        self.beta = float(beta)
        self.aggregation = aggregation
        self.max_length = max_length
        self.max_tokens = max_tokens
        self.max_prompts = max(1, max_prompts)
        self.logprob_format = logprob_format
        retry = RetryPolicy(max_retries=max_retries, backoff_base=backoff_base)
        key = _api_key(api_key)

        def client(u: str) -> AsyncHTTPClient:
            return AsyncHTTPClient(
                u.rstrip("/"),
                api_key=key,
                timeout=timeout,
                connect_timeout=connect_timeout,
                concurrency=concurrency,
                retry=retry,
                name="vLLM server",
            )

        self.http = client(url)
        self.base_http = client(base_url) if base_url else self.http

    @classmethod
    def from_qmodel(
        cls,
        qmodel_dir: str | Path,
        url: str,
        adapter_model: str,
        base_model: str | None = None,
        **options: Any,
    ) -> VLLMQValueScorer:
        """Build from a Q-model directory: beta, aggregation, max length, tokenizer, base name.

        The tokenizer is the base model's (``qmodel.json``'s ``base_model``) with the chat
        template the Q-model was trained with.
        """
        from agentq.models.qmodel import read_qmodel_config

        doc = read_qmodel_config(qmodel_dir)
        tok = options.pop("tokenizer", None)
        if tok is None:
            from agentq.models.loading import load_tokenizer

            tok = load_tokenizer(doc["base_model"])  # the base's, as the local scorer loads it
            if doc.get("chat_template"):
                tok.chat_template = doc["chat_template"]
        options.setdefault("beta", doc["beta"])
        options.setdefault("aggregation", doc["aggregation"])
        options.setdefault("max_length", doc.get("max_length"))
        return cls(url, adapter_model, base_model or doc["base_model"], tokenizer=tok, **options)

    # -- sequences ------------------------------------------------------------------------
    def _sequences(self, items: Sequence[tuple[Context, Sequence[str]]]) -> list[_Seq]:
        seqs = []
        for context, actions in items:
            for a in actions:
                p, act = tokenize_for_scoring(self.tokenizer, context, a, self.max_length)
                if not act:
                    raise ScorerError(f"action {a!r} has no tokens")
                seqs.append(_Seq(list(p) + list(act), len(p)))
        return seqs

    async def _logprobs(
        self, http: AsyncHTTPClient, model: str, seqs: list[_Seq]
    ) -> list[list[float]]:
        chunks = [seqs[i : i + self.max_prompts] for i in range(0, len(seqs), self.max_prompts)]
        parts = await asyncio.gather(*(self._chunk(http, model, c) for c in chunks))
        return [lp for part in parts for lp in part]

    async def _chunk(
        self, http: AsyncHTTPClient, model: str, seqs: list[_Seq]
    ) -> list[list[float]]:
        body: dict[str, Any] = {
            "model": model,
            "prompt": [s.ids for s in seqs],
            "max_tokens": self.max_tokens,
            "temperature": 0.0,
            "echo": True,
        }
        if self.logprob_format == "prompt_logprobs":
            body["prompt_logprobs"] = 0
        else:
            body["logprobs"] = 0

        def parse(data: Any) -> list[list[float]]:
            choices = data["choices"]
            if not isinstance(choices, list) or len(choices) != len(seqs):
                raise MalformedResponse(f"expected {len(seqs)} choices, got {len(choices)}")
            by_index = sorted(choices, key=lambda c: c.get("index", 0))
            out = []
            for s, c in zip(seqs, by_index, strict=True):
                lps = _prompt_logprobs(c, s.ids)
                act = lps[s.start :]
                if any(v is None for v in act):
                    raise MalformedResponse("an action token has no log-prob")
                out.append([float(v) for v in act])  # type: ignore[arg-type]
            return out

        return await http.post("/completions", body, validate=parse)

    # -- scoring --------------------------------------------------------------------------
    async def ascore_batch(
        self, items: Sequence[tuple[Context, Sequence[str]]]
    ) -> list[list[float]]:
        """Q values of every action of every (context, actions) item."""
        try:
            seqs = self._sequences(items)
        except ValueError as e:
            raise ScorerError(str(e)) from e
        if not seqs:
            return [[] for _ in items]
        lp_ad, lp_base = await asyncio.gather(
            self._logprobs(self.http, self.adapter_model, seqs),
            self._logprobs(self.base_http, self.base_model, seqs),
        )
        flat = []
        for a, b in zip(lp_ad, lp_base, strict=True):
            diff = sum(x - y for x, y in zip(a, b, strict=True))
            if self.aggregation == "mean":
                diff /= max(1, len(a))
            flat.append(self.beta * diff)
        out, i = [], 0
        for _, actions in items:
            out.append(flat[i : i + len(actions)])
            i += len(actions)
        return out

    def score_batch(self, items: Sequence[tuple[Context, Sequence[str]]]) -> list[list[float]]:
        """Sync twin of :meth:`ascore_batch`."""
        return self.http.run(self.ascore_batch(items))

    async def ascore(self, context: Context, actions: Sequence[str]) -> list[float]:
        """Q value of each action in ``context``."""
        return (await self.ascore_batch([(context, actions)]))[0]

    def score(self, context: Context, actions: Sequence[str]) -> list[float]:
        """Sync twin of :meth:`ascore`."""
        return self.http.run(self.ascore(context, actions))

    async def aclose(self) -> None:
        """Close the pools of the running loop."""
        await self.http.aclose()
        if self.base_http is not self.http:
            await self.base_http.aclose()

    def close(self) -> None:
        """Close the background loops' pools."""
        self.http.close()
        if self.base_http is not self.http:
            self.base_http.close()


def vllm_scorer_from_spec(rest: str, **options: Any) -> VLLMQValueScorer:
    """``URL#adapter`` plus options (``base_model``, ``tokenizer`` or ``qmodel_dir``, ...).

    With ``qmodel_dir`` the tokenizer, beta, aggregation, max length and base model name come
    from the Q-model directory (:meth:`VLLMQValueScorer.from_qmodel`).
    """
    url, adapter = parse_openai_spec(rest)
    if not adapter:
        raise UserInputError("a vLLM Q-value scorer needs the adapter's served name: URL#adapter")
    qdir = options.pop("qmodel_dir", None)
    if qdir is not None:
        return VLLMQValueScorer.from_qmodel(
            qdir, url, adapter, options.pop("base_model", None), **options
        )
    if "base_model" not in options or "tokenizer" not in options:
        raise UserInputError("a vLLM Q-value scorer needs base_model and tokenizer (or qmodel_dir)")
    base = options.pop("base_model")
    return VLLMQValueScorer(url, adapter, base, **options)
