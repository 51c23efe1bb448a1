"""The learned tool-augmented reward model (Themis, Li et al., "Tool-Augmented Reward
Modeling", ICLR 2024): a causal LM with a scalar value head that first writes a verification
trace in ReAct form, has its tool calls executed, then is read at the last token.

Its tools and their executor come from a tool set (:mod:`agentq.models.reward.tools`); its
prompt from :mod:`~agentq.models.reward.prompt`; its traces' text and tokens from
:mod:`~agentq.models.reward.trace`; its directory format from
:mod:`~agentq.models.reward.storage`; the Scorer over it from :mod:`~agentq.models.reward.scorer`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from agentq.errors import UserInputError
from agentq.models.reward.prompt import RM_SYSTEM_PROMPT, rm_messages, tool_descriptions
from agentq.models.reward.tools import ToolResult, ToolRunner, Toolset, load_toolset
from agentq.models.reward.trace import (
    OBSERVATION,
    RATIONALE,
    RMBudget,
    RMTrace,
    TraceStep,
    clip_observation,
    encode_trace,
    observation_segment,
    parse_tool_call,
)
from agentq.types import Context

POOLINGS = ("last", "mean")
TRACE_MODES = ("generate", "no-tools", "none")
"""``generate``: the model writes its trace and agentq executes each tool call; ``no-tools``:
the same generation with no tool executed (after ``Observation:`` the model goes on writing,
its own observation included), the ablation that tells what the tools add; ``none``: no trace,
the value head reads the prompt and answer."""


class ToolAugmentedRewardModel:
    """A causal LM (optionally with a LoRA adapter) plus a scalar value head (Themis).

    ``score_candidates`` writes a verification trace per candidate (batched generation across
    candidates, tool calls executed by the tool set's executor and fed back as observations),
    then reads the value head at the last token (``pooling="last"``) or averaged over the
    non-padding tokens (``pooling="mean"``).

    ``generator`` may replace the LM's own generation: a callable ``(list of token-id lists,
    max_new_tokens) -> list of texts`` (scripted traces in tests, a remote server).

    ``prefix_cache`` (default True: the process-wide
    :func:`~agentq.models.prefix_cache.shared_prefix_cache`) lets the value pass with
    ``pooling="last"`` start each sequence from its longest cached prefix (the system prompt,
    tools and question recur across candidates and calls); ``pooling="mean"`` needs every
    token's hidden state, which a KV cache does not keep, so it runs uncached, and so does
    trace generation (many different prompts left-padded into one ``generate``).

    ``tools`` (name -> tool) are the tools its prompt describes, by default all those of
    ``toolset`` (a :class:`~agentq.models.reward.tools.Toolset`, by default the registered
    ``tara`` set), whose executor runs the calls.
    """

    def __init__(
        self,
        lm: Any,
        tokenizer: Any,
        *,
        value_head: Any = None,
        pooling: str = "last",
        max_length: int = 1024,
        budget: RMBudget | None = None,
        tools: Mapping[str, Any] | None = None,
        system_prompt: str = RM_SYSTEM_PROMPT,
        generator: Callable[[list[list[int]], int], list[str]] | None = None,
        prefix_cache: Any = True,
        cache_bytes: Any = None,
        toolset: Toolset | None = None,
    ) -> None:
        import torch

        from agentq.models.prefix_cache import CacheStats, resolve_prefix_cache

        if pooling not in POOLINGS:
            raise UserInputError(f"pooling must be one of {', '.join(POOLINGS)}, not {pooling!r}")
        self.lm = lm
        self.tokenizer = tokenizer
        hidden = int(
            getattr(lm.config, "hidden_size", 0) or lm.get_input_embeddings().weight.shape[1]
        )
        if value_head is None:
            value_head = torch.nn.Linear(hidden, 1)
            torch.nn.init.normal_(value_head.weight, std=1.0 / math.sqrt(hidden + 1))
            torch.nn.init.zeros_(value_head.bias)
        dev = next(lm.parameters()).device
        self.value_head = value_head.to(device=dev, dtype=torch.float32)
        self.pooling = pooling
        self.max_length = max_length
        self.budget = budget or RMBudget()
        self.toolset: Toolset = toolset if toolset is not None else load_toolset()
        self.tools: dict[str, Any] = dict(tools) if tools is not None else self.toolset.tools()
        self.system_prompt = system_prompt
        self.generator = generator
        self.last_traces: list[RMTrace] = []
        self.prefix_cache = resolve_prefix_cache(prefix_cache, cache_bytes)
        self.cache_stats = CacheStats()
        """The value pass's prefix-cache use (tokens reused and computed)."""

    @property
    def device(self) -> Any:
        """The LM's device."""
        return next(self.lm.parameters()).device

    def messages(self, question: str, answer: str) -> Context:
        """The prompt messages for one candidate."""
        return rm_messages(question, answer, tool_descriptions(self.tools), self.system_prompt)

    def new_executor(self, timeout_s: float | None = None) -> ToolRunner:
        """An executor of :attr:`tools` (the tool set's), with the budget's time limit."""
        limit = self.budget.tool_timeout_s if timeout_s is None else timeout_s
        return self.toolset.executor(self.tools, timeout_s=limit)

    # -- values ----------------------------------------------------------------------------
    def values(self, input_ids: Any, attention_mask: Any) -> tuple[Any, Any]:
        """``(values [B], logits [B, T, V])`` for right-padded inputs."""
        import torch

        out = self.lm(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        h = out.hidden_states[-1].float()
        if self.pooling == "mean":
            m = attention_mask.unsqueeze(-1).float()
            pooled = (h * m).sum(1) / m.sum(1).clamp(min=1.0)
        else:
            last = attention_mask.long().sum(1) - 1
            pooled = h[torch.arange(h.shape[0], device=h.device), last]
        return self.value_head(pooled).squeeze(-1), out.logits

    def value_of(self, sequences: Sequence[Sequence[int]], batch_size: int = 8) -> list[float]:
        """Values of whole token sequences (no grad)."""
        import torch

        out: list[float] = []
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        cached = (
            self.prefix_cache is not None
            and self.pooling == "last"
            and not self.lm.training
            and all(len(s) for s in sequences)
        )
        with torch.no_grad():
            for i in range(0, len(sequences), batch_size):
                chunk = sequences[i : i + batch_size]
                if cached:
                    out.extend(self._cached_values(chunk, pad))
                    continue
                ids, mask = pad_right(chunk, pad, self.device)
                v, _ = self.values(ids, mask)
                out.extend(float(x) for x in v.tolist())
        return out

    def _cached_values(self, chunk: Sequence[Sequence[int]], pad: int) -> list[float]:
        """``pooling="last"`` values of ``chunk``, each sequence from its cached prefix."""
        import torch

        from agentq.models.prefix_cache import cached_prefill

        pre = cached_prefill(
            self.lm,
            [list(s) for s in chunk],
            cache=self.prefix_cache,
            stats=self.cache_stats,
            pad_id=pad,
            output_hidden_states=True,
            logits_to_keep=1,
        )
        h = pre.output.hidden_states[-1].float()
        rows = torch.arange(h.shape[0], device=h.device)
        pooled = h[rows, torch.tensor(pre.last_index, device=h.device)]
        return [float(x) for x in self.value_head(pooled).squeeze(-1).tolist()]

    # -- generation ------------------------------------------------------------------------
    def _generate(self, batch: list[list[int]], max_new: int) -> list[tuple[str, int]]:
        """Greedy generation for a batch of prompts (left-padded), stopping each row at
        ``Observation:`` or EOS. Returns ``(text, n_tokens)`` per row."""
        if self.generator is not None:
            texts = self.generator(batch, max_new)
            return [(t, len(self.tokenizer.encode(t, add_special_tokens=False))) for t in texts]
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        tok = self.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        width = max(len(b) for b in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, b in enumerate(batch):
            ids[i, width - len(b) :] = torch.tensor(b, dtype=torch.long)
            mask[i, width - len(b) :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)

        class _StopAtObservation(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kw: Any) -> Any:
                tails = tok.batch_decode(input_ids[:, width:][:, -24:], skip_special_tokens=False)
                return torch.tensor([OBSERVATION in t for t in tails], device=input_ids.device)

        with torch.no_grad():
            out = self.lm.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=max_new,
                do_sample=False,
                stopping_criteria=StoppingCriteriaList([_StopAtObservation()]),
                pad_token_id=pad,
                eos_token_id=tok.eos_token_id,
            )
        res = []
        for row in out[:, width:].tolist():
            n = 0
            kept: list[int] = []
            for t in row:
                n += 1
                if t == tok.eos_token_id:
                    break
                if t == pad and pad != tok.eos_token_id:
                    break
                kept.append(t)
            res.append((tok.decode(kept, skip_special_tokens=True), n))
        return res

    def generate_traces(
        self,
        items: Sequence[tuple[str, str]],
        executor: ToolRunner,
        budget: RMBudget | None = None,
        *,
        execute_tools: bool = True,
    ) -> list[RMTrace]:
        """Write, execute and finish the verification trace of each (question, answer).

        With ``execute_tools=False`` (trace mode ``no-tools``) a tool call is recorded as a
        :class:`TraceStep` with ``source="not-executed"`` and the model writes on after
        ``Observation:`` itself.

        All unfinished candidates generate together in each round; each round ends at an
        ``Observation:`` (the tool call is executed and its result appended) or at EOS /
        ``Rationale:`` text (the trace is finished). Budgets cut a trace, which is then scored
        as it stands, with ``budget_hit`` set.
        """
        b = budget or self.budget
        traces = [RMTrace() for _ in items]
        msgs = [self.messages(q, a) for q, a in items]
        active = list(range(len(items)))
        while active:
            batch, rows = [], []
            for i in active:
                remaining = b.max_new_tokens - traces[i].generated_tokens
                if remaining <= 0:
                    traces[i].budget_hit = "tokens"
                    continue
                ids, _ = encode_trace(
                    self.tokenizer,
                    msgs[i],
                    traces[i].segments,
                    add_eos=False,
                    max_length=self.max_length,
                )
                batch.append(ids)
                rows.append(i)
            if not rows:
                break
            max_new = max(
                1,
                min(
                    b.max_segment_tokens,
                    min(b.max_new_tokens - traces[i].generated_tokens for i in rows),
                ),
            )
            outs = self._generate(batch, max_new)
            still: list[int] = []
            for i, (text, n) in zip(rows, outs, strict=True):
                tr = traces[i]
                tr.generated_tokens += n
                if OBSERVATION in text:
                    text = text[: text.index(OBSERVATION) + len(OBSERVATION)]
                    tr.segments.append(("model", text))
                    if len(tr.steps) >= b.max_tool_calls:
                        tr.budget_hit = "tool_calls"
                        continue
                    call = parse_tool_call(text)
                    if not execute_tools:
                        name, arg = call or ("", "")
                        tr.steps.append(TraceStep(name, arg, "", False, "not-executed"))
                        if tr.generated_tokens >= b.max_new_tokens:
                            tr.budget_hit = "tokens"
                            continue
                        still.append(i)
                        continue
                    if call is None:
                        res = ToolResult(
                            f"Error: no 'Action:' and 'Action Input:' before '{OBSERVATION}'",
                            False,
                            "error",
                        )
                        name, arg = "", ""
                    else:
                        name, arg = call
                        res = executor.execute(name, arg)
                    if not res.ok:
                        tr.invalid_calls += 1
                    obs = clip_observation(res.observation, b.max_observation_chars)
                    tr.segments.append(observation_segment(obs))
                    tr.steps.append(TraceStep(name, arg, obs, res.ok, res.source))
                    if tr.generated_tokens >= b.max_new_tokens:
                        tr.budget_hit = "tokens"
                        continue
                    still.append(i)
                else:
                    tr.segments.append(("rationale" if RATIONALE in text else "model", text))
                    if n >= max_new and tr.generated_tokens >= b.max_new_tokens:
                        tr.budget_hit = "tokens"
                    elif n >= max_new:  # cut by the per-round cap: keep writing next round
                        still.append(i)
                        continue
                    tr.finished = tr.budget_hit is None
            active = still
        return traces

    def score_candidates(
        self,
        question: str,
        answers: Sequence[str],
        executor: ToolRunner | None = None,
        *,
        trace: str = "generate",
        budget: RMBudget | None = None,
    ) -> list[float]:
        """Scores of ``answers`` to ``question``; traces are kept in ``last_traces``."""
        return self.score_items(
            [(question, a) for a in answers], executor, trace=trace, budget=budget
        )

    def score_items(
        self,
        items: Sequence[tuple[str, str]],
        executor: ToolRunner | None = None,
        *,
        trace: str = "generate",
        budget: RMBudget | None = None,
    ) -> list[float]:
        """Scores of several (question, answer) items, generation batched across all of them."""
        if not items:
            self.last_traces = []
            return []
        if trace not in TRACE_MODES:
            raise UserInputError(f"trace must be one of {', '.join(TRACE_MODES)}, not {trace!r}")
        ex = executor or self.new_executor((budget or self.budget).tool_timeout_s)
        if trace != "none":
            traces = self.generate_traces(items, ex, budget, execute_tools=trace == "generate")
        else:
            traces = [RMTrace(finished=True) for _ in items]
        seqs = [
            encode_trace(
                self.tokenizer, self.messages(q, a), tr.segments, max_length=self.max_length
            )[0]
            for (q, a), tr in zip(items, traces, strict=True)
        ]
        vals = self.value_of(seqs)
        for tr, v in zip(traces, vals, strict=True):
            tr.score = v
        self.last_traces = traces
        return vals

    # -- persistence -----------------------------------------------------------------------
    def save(
        self, directory: str | Path, *, base_model: str, extra: Mapping[str, Any] | None = None
    ) -> Path:
        """Write the adapter (when the LM is a peft model), the value head and the JSON config
        (:func:`agentq.models.reward.storage.save_reward_model`)."""
        from agentq.models.reward.storage import save_reward_model

        return save_reward_model(self, directory, base_model=base_model, extra=extra)


def pad_right(seqs: Sequence[Sequence[int]], pad: int, device: Any = None) -> tuple[Any, Any]:
    """Right-padded ``(input_ids, attention_mask)`` tensors."""
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(list(s), dtype=torch.long)
        mask[i, : len(s)] = 1
    if device is not None:
        ids, mask = ids.to(device), mask.to(device)
    return ids, mask


__all__ = ["POOLINGS", "TRACE_MODES", "ToolAugmentedRewardModel", "pad_right"]
