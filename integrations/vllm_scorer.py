"""The step-level Q-value of a LoRA Q-model served by vLLM: the ``vllm-q:URL#adapter``
SCORER spec."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentq.integrations.http import AsyncHTTPClient, RetryPolicy
from agentq.integrations.openai_proposer import parse_openai_spec, resolve_api_key

from agentq.errors import MalformedResponse, ScorerError, UserInputError
from agentq.protocols import BaseScorer
from agentq.render import tokenize_actions_for_scoring
from agentq.types import Context

__all__ = ["VLLMQValueScorer", "vllm_scorer_from_spec"]


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
        key = resolve_api_key(api_key)

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
            pairs = tokenize_actions_for_scoring(
                self.tokenizer, context, list(actions), self.max_length
            )
            for a, (p, act) in zip(actions, pairs, strict=True):
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
