"""A Proposer over an OpenAI-compatible chat completions endpoint (vLLM, TGI, ...): the
``openai:URL#model`` MODEL spec."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import httpx
from agentq.integrations.http import AsyncHTTPClient, RetryPolicy

from agentq.errors import MalformedResponse, ProposerError, RemoteRequestError, UserInputError
from agentq.protocols import BaseProposer
from agentq.render import render_action
from agentq.seeding import scoped_seed
from agentq.types import Candidate, Context

log = logging.getLogger("agentq.remote")

__all__ = ["OpenAIProposer", "parse_openai_spec", "proposer_from_spec", "resolve_api_key"]


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


def resolve_api_key(explicit: str | None = None) -> str | None:
    """The API key of an OpenAI-compatible server: ``explicit``, else ``$AGENTQ_API_KEY``, else
    ``$OPENAI_API_KEY`` (None: none)."""
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
        seed: base seed sent to the server (None: no seed; request ``i`` of a parallel
            fallback gets seed + i). Inside a task scope (:func:`agentq.seeding.task_scope`:
            every eval episode and MCTS search) a call's seed derives from ``seed``, the scope's
            (seed, task id), the request and how often the task made it before
            (:func:`agentq.seeding.scoped_seed`), so a method's samples on a task depend only on
            that task; outside one it is ``seed`` plus the call count, restarted by
            :meth:`reseed`.
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
        self._base_seed = seed  # the draws outside a task scope (see reseed)
        self.extra_body = dict(extra_body or {})
        self.http = client or AsyncHTTPClient(
            self.base_url,
            api_key=resolve_api_key(api_key),
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
        seed = self._request_seed(context, n)
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

    def reseed(self, seed: int) -> None:
        """Restart the draws made outside a task scope from ``seed`` (a proposer built without
        a seed stays unseeded; a task scope's draws depend on the scope, not on this)."""
        if self.seed is not None:
            self._base_seed = seed % (2**31)
            self._calls = 0

    def _request_seed(self, context: Context, n: int) -> int | None:
        """The ``seed`` field of one call (None when this proposer is unseeded)."""
        if self.seed is None:
            return None
        key = hashlib.sha256(json.dumps([context, n], sort_keys=True, default=str).encode())
        seed = scoped_seed(self.seed, self, "policy:openai", key.hexdigest()[:32])
        if seed is not None:
            return seed
        assert self._base_seed is not None
        seed = self._base_seed + 1009 * self._calls
        self._calls += 1
        return seed

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
