"""A local transformers policy that proposes candidate actions.

Free mode samples N whole assistant turns for a context in one batched ``generate``
(temperature, top-p, max new tokens, stop strings); several contexts batch together
(:meth:`LocalProposer.propose_batch`). Constrained mode, used when the environment gives
``valid_actions()``, scores every valid action under the policy (prefix-shared, one pass) and
samples the N candidates from that distribution, so even a small model proposes executable
actions; an entry with :data:`agentq.protocols.FREE_TEXT` (``search[...]``) keeps its fixed
prefix and suffix and has the free part generated (prompted with ``search[``, stopped at ``]``).

Prefix cache: every pass starts from the longest prefix of its prompt already computed
(:mod:`agentq.models.prefix_cache`, the process-wide cache by default, shared with a Q-model
on the same checkpoint), so a growing context costs only its new tokens. Free generation uses
it when all rows of one ``generate`` call share one prompt (one context, N samples).

A free candidate's ``tokens`` is its generated tokens. A constrained request generates little
or nothing, so its first candidate's ``tokens`` also carries the prompt and scoring tokens the
request computed (after the cache): an eval report's ``tokens`` then reads what was computed
instead of 0.

Each candidate's ``logprob`` is the log-probability under the policy (temperature 1) of the whole
assistant turn as :func:`agentq.render.tokenize_for_scoring` renders it, end-of-turn token
included, so the number means the same in both modes.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections.abc import Sequence
from typing import Any

from agentq.errors import ProposerError, UserInputError
from agentq.models.prefix_cache import (
    CacheStats,
    cached_generate,
    model_namespace,
    parse_cache_bytes,
    resolve_prefix_cache,
    supports_prefix_cache,
)
from agentq.models.scorer import model_max_length, prefix_shared_logprobs
from agentq.models.stopping import stop_string_criteria
from agentq.protocols import FREE_TEXT, BaseProposer, ProposalRequest
from agentq.render import tokenize_for_scoring, truncate_context
from agentq.seeding import current_task
from agentq.types import Candidate, Context

Request = ProposalRequest
"""One proposal request: context, number of candidates, valid actions (or None)."""


def split_free_text(entry: str) -> tuple[str, str] | None:
    """``("search[", "]")`` for ``"search[...]"``; None when ``entry`` has no free part."""
    if FREE_TEXT not in entry:
        return None
    head, _, tail = entry.partition(FREE_TEXT)
    return head, tail


class LocalProposer(BaseProposer):
    """A transformers causal LM as a Proposer (see the module docstring).

    ``stop`` strings end a free generation (the stop string is not part of the action).
    ``constrained=False`` ignores ``valid_actions`` and always generates freely.
    ``temperature=0`` is greedy (all N candidates are then the same action).
    ``distinct=True`` (the default) draws the N candidates of a constrained request without
    replacement (Gumbel-top-k over the valid actions at ``temperature``), so best-of-N sees N
    different actions; ``distinct=False`` draws them independently (duplicates merge).
    Sampling is seeded from ``seed``, the request and how many times that same request was
    made before, so results do not depend on how concurrent callers interleave. Inside a task
    scope (:func:`agentq.seeding.task_scope`: every eval episode and MCTS search) the seed also
    holds the scope's (seed, task id) and the count is the task's own, so a method's samples on
    a task never depend on which methods or tasks ran before or on what a resume skipped;
    outside one the count is this proposer's, restarted by :meth:`reseed`. ``apropose`` runs
    one request in a worker thread; use :meth:`propose_batch` to batch contexts.
    ``prefix_cache`` / ``cache_bytes``: as for :class:`~agentq.models.scorer.QValueScorer`
    (the shared cache by default); :meth:`stats` reports its use.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_new_tokens: int = 64,
        stop: Sequence[str] | None = None,
        constrained: bool = True,
        seed: int = 0,
        free_text_max_tokens: int = 24,
        max_length: int | None = None,
        distinct: bool = True,
        prefix_cache: Any = True,
        cache_bytes: Any = None,
        spec: str = "",
    ) -> None:
        if temperature < 0:
            raise UserInputError(f"temperature must be >= 0, not {temperature}")
        if not 0 < top_p <= 1:
            raise UserInputError(f"top_p must be in (0, 1], not {top_p}")
        if max_new_tokens < 1:
            raise UserInputError("max_new_tokens must be at least 1")
        self.model = model
        self.tokenizer = tokenizer
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.max_new_tokens = int(max_new_tokens)
        self.stop = [s for s in (stop or []) if s]
        self.constrained = constrained
        self.spec = spec
        self.seed = int(seed)
        self._base_seed = self.seed  # the draws outside a task scope (see reseed)
        self.free_text_max_tokens = int(free_text_max_tokens)
        self.max_length = max_length or model_max_length(model)
        self.distinct = bool(distinct)
        self._seen: dict[str, int] = {}
        self.prefix_cache = resolve_prefix_cache(prefix_cache, cache_bytes)
        self.cache_stats = CacheStats()
        """This proposer's prompt tokens reused and computed (the cache may be shared)."""
        self.generated_tokens = 0
        """Tokens sampled by free generation so far."""
        self._lock = threading.Lock()
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token

    # -- public -------------------------------------------------------------------------
    def propose(
        self, context: Context, n: int, *, valid_actions: Sequence[str] | None = None
    ) -> list[Candidate]:
        """``n`` candidate actions for ``context`` (constrained to ``valid_actions`` when given)."""
        return self.propose_batch([(context, n, valid_actions)])[0]

    def propose_batch(self, requests: Sequence[Request]) -> list[list[Candidate]]:
        """Candidates for several (context, n, valid_actions) requests, batched together."""
        import torch

        with self._lock:
            seed = self._request_seed(requests)
            devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(seed)
                before = self._computed()
                out = self._propose_batch(requests)
                constrained = [
                    cands
                    for cands, (_, n, valid) in zip(out, requests, strict=True)
                    if n >= 1 and self.constrained and valid
                ]
                self._charge(constrained, self._computed() - before)
                return out

    def reseed(self, seed: int) -> None:
        """Restart the draws made outside a task scope as if built with ``seed`` (a task scope's
        draws depend on the scope, not on this)."""
        with self._lock:
            self._base_seed = int(seed)
            self._seen.clear()

    def _computed(self) -> int:
        st = self.cache_stats
        return st.tokens_computed + st.candidate_tokens

    @staticmethod
    def _charge(out: list[list[Candidate]], computed: int) -> None:
        """Add the prompt and scoring tokens a batch computed to the first candidate of each
        constrained request, split evenly (a batch mixing free and constrained requests
        charges its free requests' prompt tokens to the constrained ones too)."""
        firsts = [cands[0] for cands in out if cands]
        if not firsts or computed <= 0:
            return
        share, rest = divmod(computed, len(firsts))
        for k, c in enumerate(firsts):
            c.tokens = (c.tokens or 0) + share + (1 if k < rest else 0)

    def stats(self) -> dict[str, Any]:
        """Prefix-cache use (hits, tokens reused and computed), generated tokens, and the
        cache's bytes and budget (``cache`` is None when caching is off)."""
        with self._lock:
            d = self.cache_stats.to_dict()
            d["generated_tokens"] = self.generated_tokens
        d["cache"] = self.prefix_cache.stats() if self.prefix_cache is not None else None
        return d

    async def apropose_batch(self, requests: Sequence[Request]) -> list[list[Candidate]]:
        """Async twin of :meth:`propose_batch` (runs in a worker thread)."""
        import asyncio

        return await asyncio.to_thread(self.propose_batch, requests)

    # -- internals ------------------------------------------------------------------------
    def _request_seed(self, requests: Sequence[Request]) -> int:
        """A seed from ``seed``, the requests' content and how often each was asked before.

        Independent of how concurrent callers interleave, so the same seed gives the same
        candidates for the same sequence of requests per context. Inside a task scope the
        seed is (``seed``, the scope's seed and task id) and the counts are the task's own.
        """
        scope = current_task()
        if scope is not None:
            h = hashlib.sha256(f"{self.seed}|{scope.seed}|{scope.task_id}".encode())
        else:
            h = hashlib.sha256(str(self._base_seed).encode())
        owner = f"policy:local:{id(self)}"
        for context, n, valid in requests:
            used = list(valid) if valid and self.constrained else None
            raw = json.dumps([context, n, used], sort_keys=True, default=str)
            key = hashlib.sha256(raw.encode()).hexdigest()[:32]
            if scope is not None:
                count = scope.occurrence(owner, key)
            else:
                count = self._seen.get(key, 0)
                self._seen[key] = count + 1
            h.update(f"|{key}|{count}".encode())
        return int(h.hexdigest()[:15], 16)

    def _propose_batch(self, requests: Sequence[Request]) -> list[list[Candidate]]:
        out: list[list[Candidate]] = [[] for _ in requests]
        # free-text parts to generate: (request, candidate slot, context, head, tail)
        free_jobs: list[tuple[int, int, Context, str, str]] = []
        plain: list[int] = []
        constrained_reqs = []
        for i, (_context, n, valid) in enumerate(requests):
            if n < 1:
                continue
            if self.constrained and valid:
                constrained_reqs.append(i)
            else:
                plain.append(i)
        # constrained: one prefix-shared pass over every valid action of every request
        if constrained_reqs:
            entries = {
                i: [str(a) for a in dict.fromkeys(requests[i][2] or [])] for i in constrained_reqs
            }
            fixed_items = [
                (requests[i][0], [self._fixed_part(e) for e in entries[i]])
                for i in constrained_reqs
            ]
            lps = self._entry_logprobs(fixed_items, entries)
            for i, lp in zip(constrained_reqs, lps, strict=True):
                context, n, _ = requests[i]
                picks = self._sample_indices(lp, n)
                for k in picks:
                    entry = entries[i][k]
                    parts = split_free_text(entry)
                    if parts is None:
                        out[i].append(Candidate(entry, logprob=lp[k], tokens=None))
                    else:
                        free_jobs.append((i, len(out[i]), context, parts[0], parts[1]))
                        out[i].append(Candidate(parts[0] + parts[1]))  # filled in below
        # free generation: plain requests (whole turns) and free-text parts, one generate each
        if plain:
            rows = [(requests[i][0], "") for i in plain for _ in range(requests[i][1])]
            texts = self._generate(rows, self.max_new_tokens, self.stop)
            k = 0
            for i in plain:
                for _ in range(requests[i][1]):
                    text, ntok = texts[k]
                    out[i].append(Candidate(text.strip(), tokens=ntok))
                    k += 1
        if free_jobs:
            rows = [(ctx, head) for _, _, ctx, head, _ in free_jobs]
            stops = sorted({tail[:1] for *_, tail in free_jobs if tail[:1]} | set(self.stop))
            texts = self._generate(rows, self.free_text_max_tokens, stops)
            for (i, slot, _, head, tail), (text, ntok) in zip(free_jobs, texts, strict=True):
                free = " ".join(text.split())
                if tail:
                    free = free.split(tail[:1])[0].strip()
                cand = out[i][slot]
                cand.text = head + (free or "?") + tail
                cand.tokens = ntok
        # log-probs of every candidate that has none yet: one prefix-shared pass
        todo = [
            (i, j) for i, cands in enumerate(out) for j, c in enumerate(cands) if c.logprob is None
        ]
        if todo:
            items: list[tuple[Context, list[str]]] = []
            index: dict[int, int] = {}
            for i, j in todo:
                if i not in index:
                    index[i] = len(items)
                    items.append((requests[i][0], []))
                items[index[i]][1].append(out[i][j].text)
            token_lps = prefix_shared_logprobs(
                self.model, self.tokenizer, items, max_length=self.max_length, **self._cache_kw()
            )
            pos = dict.fromkeys(index, 0)
            for i, j in todo:
                out[i][j].logprob = float(sum(token_lps[index[i]][pos[i]]))
                pos[i] += 1
        return out

    def _cache_kw(self) -> dict[str, Any]:
        return {"cache": self.prefix_cache, "stats": self.cache_stats}

    @staticmethod
    def _fixed_part(entry: str) -> str:
        parts = split_free_text(entry)
        return entry if parts is None else parts[0]

    def _entry_logprobs(
        self, items: list[tuple[Context, list[str]]], entries: dict[int, list[str]]
    ) -> list[list[float]]:
        """log pi(entry) per valid action; for a free-text entry, log pi of its fixed prefix."""
        per_token = prefix_shared_logprobs(
            self.model, self.tokenizer, items, max_length=self.max_length, **self._cache_kw()
        )
        out = []
        for (context, fixed), toks, ent in zip(items, per_token, entries.values(), strict=True):
            eot = len(tokenize_for_scoring(self.tokenizer, list(context), "")[1])
            row = []
            for text, lp, e in zip(fixed, toks, ent, strict=True):
                if split_free_text(e) is None:
                    row.append(float(sum(lp)))
                else:  # the prefix is not the end of the turn: leave the end-of-turn tokens out
                    row.append(float(sum(lp[: max(len(lp) - eot, 0)])) if text else 0.0)
            out.append(row)
        return out

    def _sample_indices(self, logprobs: list[float], n: int) -> list[int]:
        import torch

        if not logprobs:
            raise ProposerError("no valid actions to choose from")
        lp = torch.tensor(logprobs, dtype=torch.float64)
        if self.temperature == 0:
            return [int(torch.argmax(lp))] * n
        probs = torch.softmax(lp / self.temperature, dim=0)
        if self.top_p < 1:
            order = torch.argsort(probs, descending=True)
            cum = torch.cumsum(probs[order], 0)
            keep = order[: int((cum < self.top_p).sum()) + 1]
            mask = torch.zeros_like(probs)
            mask[keep] = 1
            probs = probs * mask
            probs = probs / probs.sum()
        if not math.isfinite(float(probs.sum())):
            return [int(torch.argmax(lp))] * n
        if not self.distinct:
            return [int(x) for x in torch.multinomial(probs, n, replacement=True)]
        # Gumbel-top-k: n distinct actions, drawn without replacement from the policy's own
        # distribution at its temperature (Kool et al., 2019); fewer when fewer are allowed
        keys = torch.log(probs) - torch.log(-torch.log(torch.rand(len(probs), dtype=torch.float64)))
        keys[probs <= 0] = -math.inf
        k = min(n, int((probs > 0).sum()))
        return [int(x) for x in torch.topk(keys, k).indices]

    def _prompt_ids(self, context: Context, head: str, room: int | None = None) -> list[int]:
        """The rendered prompt (the scorer's own), followed by the tokens of ``head``.

        With ``room`` the result fits in that many tokens: the context is cut by
        :func:`agentq.render.truncate_context` (middle turns first, the task stays).
        """
        prompt, action = tokenize_for_scoring(self.tokenizer, list(context), head or "x")
        head_ids: list[int] = []
        if head:
            eot = len(tokenize_for_scoring(self.tokenizer, list(context), "")[1])
            head_ids = action[: len(action) - eot]
        if room is not None and len(prompt) + len(head_ids) > room:
            prompt = truncate_context(self.tokenizer, list(context), max(room - len(head_ids), 1))[
                1
            ]
        return (prompt + head_ids)[-room:] if room is not None else prompt + head_ids

    def _generate(
        self, rows: list[tuple[Context, str]], max_new_tokens: int, stop: Sequence[str]
    ) -> list[tuple[str, int]]:
        """Generated continuation text and token count for each (context, assistant prefix) row."""
        import torch

        tok = self.tokenizer
        device = next(self.model.parameters()).device
        room: int | None = None
        if self.max_length:
            room = self.max_length - max_new_tokens
            if room < 1:
                raise UserInputError(
                    f"max_new_tokens={max_new_tokens} leaves no room for a context"
                )
        prompts = [self._prompt_ids(c, h, room) for c, h in rows]
        width = max(len(p) for p in prompts)
        pad = tok.pad_token_id
        kwargs: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "pad_token_id": pad,
            "eos_token_id": tok.eos_token_id,
        }
        if self.temperature > 0:
            kwargs.update(do_sample=True, temperature=self.temperature, top_p=self.top_p, top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if stop:
            kwargs.update(stopping_criteria=stop_string_criteria(tok, stop))
        if self.prefix_cache is not None and all(p == prompts[0] for p in prompts):
            # one prompt, N samples: start from its cached prefix (same draws as uncached)
            gen = cached_generate(
                self.model,
                prompts[0],
                len(prompts),
                cache=self.prefix_cache,
                stats=self.cache_stats,
                namespace=model_namespace(self.model)
                if supports_prefix_cache(self.model)
                else None,
                **kwargs,
            ).sequences
        else:
            ids = torch.full((len(prompts), width), pad, dtype=torch.long)
            mask = torch.zeros((len(prompts), width), dtype=torch.long)
            for r, p in enumerate(prompts):  # left padding
                ids[r, width - len(p) :] = torch.tensor(p)
                mask[r, width - len(p) :] = 1
            self.cache_stats.add(computed=sum(len(p) for p in prompts))
            with torch.inference_mode():
                gen = self.model.generate(
                    input_ids=ids.to(device), attention_mask=mask.to(device), **kwargs
                )
        new = gen[:, width:].cpu()
        out = []
        for r in range(len(prompts)):
            seq = new[r].tolist()
            ntok = len(seq)
            for k, t in enumerate(seq):
                if t == tok.eos_token_id or t == pad:
                    ntok = k
                    break
            text = tok.decode(seq[:ntok], skip_special_tokens=True)
            for s in stop:
                cut = text.find(s)
                if cut >= 0:
                    text = text[:cut]
            out.append((text, ntok))
            self.generated_tokens += ntok
        return out


_OPTIONS = {
    "temperature",
    "top_p",
    "max_new_tokens",
    "stop",
    "constrained",
    "seed",
    "free_text_max_tokens",
    "max_length",
    "distinct",
    "prefix_cache",
    "cache_bytes",
}


def proposer_from_spec(spec: str, **options: Any) -> LocalProposer:
    """The MODEL spec of a local transformers model (directory, hub id or ``smollm2``).

    Options: ``device``, ``dtype`` (loading) and the :class:`LocalProposer` arguments. The
    loaded model is shared in this process with other users of the same spec.
    """
    from agentq.models.loading import load_causal_lm

    device = options.pop("device", None)
    dtype = options.pop("dtype", None)
    unknown = set(options) - _OPTIONS
    if unknown:
        raise UserInputError(f"unknown option(s) for a local model: {', '.join(sorted(unknown))}")
    if options.get("cache_bytes") is not None:  # bad input before the model loads
        parse_cache_bytes(options["cache_bytes"])
    model, tok = load_causal_lm(spec, device=device, dtype=dtype, cache=True)
    return LocalProposer(model, tok, spec=spec, **options)
