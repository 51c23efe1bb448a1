"""Prefix-shared Q-value scoring with a step-level DPO model (LoRA adapter on a base LM).

    Q(s, a) = beta * sum_t [ log pi_theta(a_t | s, a_<t) - log pi_ref(a_t | s, a_<t) ]

where pi_theta is the base with the adapter and pi_ref the base with the adapter disabled (one
model in memory). The action tokens are the assistant turn under the chat template, including
its end-of-turn token (:func:`agentq.render.tokenize_for_scoring`), with the context truncated
from the left exactly as in training. ``aggregation="mean"`` averages over tokens instead.

Prefix sharing: each distinct context runs through the model once per model (adapter on and
off), in one padded batch across contexts; then the N candidates run after it, packed side by
side in one row per context under a 4-D attention mask (each token sees the context and its own
candidate's earlier tokens: :func:`_candidate_pass`), or, where the attention takes no
custom mask (flash attention), one row per candidate over the context's KV cache expanded to
them. The result equals a naive full-sequence computation (:func:`naive_logprobs`) to float
rounding.

The core, :func:`score_items` / :func:`prefix_shared_logprobs`, takes a list of
(context, actions) items so a server can batch many requests into one call.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentq.errors import ScorerError, UserInputError
from agentq.models.prefix_cache import (
    CacheStats,
    PrefixCache,
    cache_kwarg,
    cached_prefill,
    hidden_namespace,
    model_namespace,
    output_cache,
    parse_cache_bytes,
    resolve_prefix_cache,
    supports_prefix_cache,
)
from agentq.models.shared_layers import adapter_free_layers, segment_mask, upper_forward
from agentq.protocols import BaseScorer, ScoringItem
from agentq.render import tokenize_actions_for_scoring
from agentq.types import Context

Item = ScoringItem
"""One scoring request: a context and the candidate actions taken in it."""


@dataclass
class _Group:
    """Candidates of one item that share the exact same (possibly truncated) prompt."""

    item: int
    prompt: list[int]
    members: list[int]  # action indices within the item
    actions: list[list[int]]


def model_max_length(model: Any) -> int | None:
    """The longest sequence the model's positions allow (None when unknown)."""
    cfg = getattr(model, "config", None)
    n = getattr(cfg, "max_position_embeddings", None)
    return int(n) if n else None


def encode_items(
    tokenizer: Any, items: Sequence[Item], max_length: int | None = None
) -> list[list[tuple[list[int], list[int]]]]:
    """Token ids (prompt, action) for every action of every item, as training sees them.

    Raises ``UserInputError`` when an action alone does not fit in ``max_length``.
    """
    out = []
    for context, actions in items:
        try:
            out.append(
                tokenize_actions_for_scoring(tokenizer, list(context), list(actions), max_length)
            )
        except ValueError as e:
            raise UserInputError(f"cannot score this action: {e}") from e
    return out


def _groups(encoded: list[list[tuple[list[int], list[int]]]]) -> list[_Group]:
    groups: list[_Group] = []
    for i, row in enumerate(encoded):
        by_prompt: dict[tuple[int, ...], _Group] = {}
        for j, (prompt, action) in enumerate(row):
            key = tuple(prompt)
            g = by_prompt.get(key)
            if g is None:
                g = by_prompt[key] = _Group(i, prompt, [], [])
                groups.append(g)
            g.members.append(j)
            g.actions.append(action)
    return groups


_SHARED_LAYER: Any = None


def _shared_layer_class() -> Any:
    """A cache layer that holds the prefix rows once and expands them per call, never storing.

    ``update`` returns ``cat(prefix[rows], new)`` for the attention of this layer only, so the
    expanded copy of the prefix lives for one layer at a time instead of for all layers.
    """
    global _SHARED_LAYER
    if _SHARED_LAYER is None:
        import torch
        from transformers.cache_utils import DynamicLayer

        class SharedPrefixLayer(DynamicLayer):  # type: ignore[misc, valid-type]
            _layer_type = None  # do not register in transformers' layer-type mapping

            def __init__(self, keys: Any, values: Any, rows: Any) -> None:
                super().__init__()
                self.prefix_keys, self.prefix_values, self.rows = keys, values, rows
                self.keys, self.values = keys, values  # for get_seq_length (mask sizes)
                self.device = keys.device
                self.is_initialized = True

            def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> Any:
                k = torch.cat([self.prefix_keys.index_select(0, self.rows), key_states], dim=-2)
                v = torch.cat([self.prefix_values.index_select(0, self.rows), value_states], dim=-2)
                return k, v

        _SHARED_LAYER = SharedPrefixLayer
    return _SHARED_LAYER


def _expand_cache(cache: Any, index: Any, config: Any) -> Any:
    """A cache whose batch rows are ``cache``'s rows at ``index`` (rows may repeat).

    Plain full-attention caches get :func:`_shared_layer_class` layers (no stored copy); other
    cache types are copied row by row.
    """
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    layers = getattr(cache, "layers", None)
    if layers is not None and all(
        type(layer) is DynamicLayer and layer.keys is not None for layer in layers
    ):
        cls = _shared_layer_class()
        new = DynamicCache()
        new.layers = [cls(layer.keys, layer.values, index) for layer in layers]
        return new
    if layers is not None and all(getattr(layer, "keys", None) is not None for layer in layers):
        data = [
            (layer.keys.index_select(0, index), layer.values.index_select(0, index))
            for layer in layers
        ]
        return DynamicCache(ddp_cache_data=data, config=config)
    import copy

    new = copy.deepcopy(cache)
    new.batch_select_indices(index)
    return new


_cache_kwarg = cache_kwarg  # the name step_dpo imports


def shared_prefix_forward(
    model: Any, prefix: Sequence[int], suffixes: Sequence[Sequence[int]], **forward_kwargs: Any
) -> tuple[Any, Any, Any]:
    """One prompt run once, then several continuations of it in one right-padded batch.

    The prefix runs with a KV cache (keeping only its last position's logits); the cache is
    expanded to one row per suffix, and the suffixes run after it. Differentiable, so training
    shares the prefix's forward and backward pass too. ``forward_kwargs`` go to the suffix pass
    (``output_hidden_states=True``, ...). Returns ``(prefix output, suffix output, suffix
    mask [k, width] on the model's device)``; a suffix may be empty (its row is all padding).
    """
    import torch

    device = next(model.parameters()).device
    p, k = len(prefix), len(suffixes)
    res = model(
        input_ids=torch.tensor([list(prefix)], device=device),
        attention_mask=torch.ones((1, p), dtype=torch.long, device=device),
        use_cache=True,
        logits_to_keep=1,
    )
    width = max(1, max(len(s) for s in suffixes))
    ids = torch.zeros((k, width), dtype=torch.long)
    mask = torch.zeros((k, width), dtype=torch.long)
    for r, s in enumerate(suffixes):
        if s:
            ids[r, : len(s)] = torch.tensor(list(s), dtype=torch.long)
            mask[r, : len(s)] = 1
    ids, mask = ids.to(device), mask.to(device)
    cache = _expand_cache(
        output_cache(res), torch.zeros(k, dtype=torch.long, device=device), model.config
    )
    out = model(
        input_ids=ids,
        attention_mask=torch.cat([torch.ones((k, p), dtype=torch.long, device=device), mask], 1),
        position_ids=(p + torch.arange(width, device=device)).unsqueeze(0).expand(k, width),
        use_cache=True,
        **{_cache_kwarg(model): cache},
        **forward_kwargs,
    )
    return res, out, mask


def _chunks(seq: list[_Group], max_tokens: int) -> Iterator[list[_Group]]:
    """Groups in runs whose padded prefix batch stays under ``max_tokens`` tokens."""
    run: list[_Group] = []
    longest = 0
    for g in sorted(seq, key=lambda g: len(g.prompt)):
        new_longest = max(longest, len(g.prompt))
        if run and new_longest * (len(run) + 1) > max_tokens:
            yield run
            run, new_longest = [], len(g.prompt)
        run.append(g)
        longest = new_longest
    if run:
        yield run


def prefix_shared_logprobs(
    model: Any,
    tokenizer: Any,
    items: Sequence[Item],
    *,
    max_length: int | None = None,
    encoded: list[list[tuple[list[int], list[int]]]] | None = None,
    max_prefix_tokens: int = 16384,
    max_candidates: int = 64,
    cache: PrefixCache | None = None,
    namespace: Hashable | None = None,
    stats: CacheStats | None = None,
    lower_from: tuple[Hashable, int] | None = None,
) -> list[list[list[float]]]:
    """Per-token log-probs of each action under ``model``, sharing each context's prefix pass.

    Returns ``out[i][j]`` = the log-probs of the tokens of action ``j`` of item ``i``. Contexts
    are batched in prefix passes of at most ``max_prefix_tokens`` padded tokens; candidates run
    packed, at most ``max_candidates`` to a row (:func:`_candidate_pass`), or, without
    custom-mask attention, over the expanded KV cache in batches of at most ``max_candidates``.

    With a :class:`~agentq.models.prefix_cache.PrefixCache` each prompt starts from its longest
    cached prefix in ``namespace`` (default :func:`~agentq.models.prefix_cache.model_namespace`
    of ``model``; pass it explicitly when an adapter is disabled) and only the rest is computed;
    the whole prompt's KV is stored for later calls. Rows of one batch with different cached
    lengths are laid out as ``[cached | hole | new tokens]`` with the hole masked, so the
    result equals the uncached one to float rounding. ``stats`` counts reuse and compute.
    An action the cache already scored after the same prompt ids in the same namespace is not
    run again (:meth:`~agentq.models.prefix_cache.PrefixCache.lookup_actions`): a Q-model's
    reference pass reads the log-probs the policy computed when it scored its valid actions.
    ``lower_from`` (an adapter-on pass, see :func:`score_items`) goes to
    :func:`~agentq.models.prefix_cache.cached_prefill`.
    """
    import torch

    if encoded is None:
        encoded = encode_items(tokenizer, items, max_length)
    out: list[list[list[float]]] = [[[] for _ in row] for row in encoded]
    groups = _groups(encoded)
    if any(not g.prompt for g in groups):
        raise ScorerError("an empty prompt cannot be scored (the chat template produced no tokens)")
    if cache is not None and not supports_prefix_cache(model):
        cache = None
    if cache is not None and namespace is None:
        namespace = model_namespace(model)
    if cache is not None:
        groups = _read_stored_actions(cache, namespace, groups, out, stats)
    if not groups:
        return out
    tracked = sorted(cache.hidden_layers(namespace)) if cache is not None else []
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    cache_kw = cache_kwarg(model)
    with torch.inference_mode():
        for run in _chunks(groups, max_prefix_tokens):
            # one prefill pass from each prompt's cached prefix (at least its last token is
            # computed: its logits give the first action token)
            pre = cached_prefill(
                model,
                [g.prompt for g in run],
                cache=cache,
                namespace=namespace,
                stats=stats,
                pad_id=pad,
                last_logits_only=True,
                lower_from=lower_from,
            )
            res, mask = pre.output, pre.mask
            col = pre.last_column
            last_logits = res.logits  # (R, distinct last positions, V)
            cache_out = output_cache(res)
            # first action token of each candidate: from the prompt's last position
            flat: list[tuple[int, int, list[int]]] = []  # (run row, (item, action) slot, ids)
            for r, g in enumerate(run):
                lsm = torch.log_softmax(last_logits[r, col[r]].float(), dim=-1)
                for j, a in zip(g.members, g.actions, strict=True):
                    out[g.item][j] = [float(lsm[a[0]])]
                    if len(a) > 1:
                        flat.append((r, j, a))
            del last_logits
            given = None
            if cache is not None and lower_from is not None:
                base, layer = lower_from
                found = {}
                for r, j, a in flat:
                    h = cache.action_hidden(hidden_namespace(base, layer), run[r].prompt, a)
                    if h is not None:
                        found[(r, j)] = h
                given = (layer, found)
            cand_tokens, kept, upper = _candidate_pass(
                model,
                run,
                flat,
                out,
                mask,
                cache_out,
                pad,
                cache_kw,
                max_candidates,
                keep_layers=tracked,
                given=given,
            )
            if stats is not None:
                stats.add(candidates=cand_tokens, upper_candidates=upper)
            if cache is not None:
                cache.record(None, candidates=cand_tokens, upper_candidates=upper)
                for (r, j, layer), h in kept.items():
                    g = run[r]
                    action = g.actions[g.members.index(j)]
                    cache.store_action_hidden(
                        hidden_namespace(namespace, layer), g.prompt, action, h
                    )
                for g in run:
                    cache.store_actions(
                        namespace, g.prompt, g.actions, [out[g.item][j] for j in g.members]
                    )
            del cache_out
    return out


PACKED_QUERY_TOKENS = 1024
"""Most candidate tokens (padded) in one packed candidate pass: bounds its logits' memory."""


def packs_candidates(model: Any) -> bool:
    """Whether candidates run packed (:func:`_candidate_pass`): the attention takes a
    custom 4-D mask (``sdpa`` or ``eager``; flash attention does not)."""
    impl = getattr(getattr(model, "config", None), "_attn_implementation", None)
    return impl in ("sdpa", "eager")


def _candidate_pass(
    model: Any,
    run: list[_Group],
    flat: list[tuple[int, int, list[int]]],
    out: list[list[list[float]]],
    mask: Any,
    cache_out: Any,
    pad: int,
    cache_kw: str,
    max_candidates: int,
    *,
    keep_layers: Sequence[int] = (),
    given: tuple[int, dict[tuple[int, int], Any]] | None = None,
) -> tuple[int, dict[tuple[int, int, int], Any], int]:
    """The candidates' tokens after the first, run over their prompts' KV (``cache_out``,
    whose columns ``mask`` marks per prompt row); appends each candidate's log-probs to
    ``out``. Returns (tokens run, the hidden states entering each of ``keep_layers`` per
    (run row, slot, layer), tokens run through the upper layers only).

    ``given = (layer, {(run row, slot): hidden states entering layer})`` (an adapter-on pass,
    :mod:`agentq.models.shared_layers`): a packed batch whose candidates all have their
    states there runs from ``layer`` up only.

    Packed (:func:`packs_candidates`): a row holds up to ``max_candidates`` candidates of one
    prompt side by side; a custom 4-D mask lets each token attend to its prompt and to the
    earlier tokens of its own candidate only, and each candidate's positions restart after
    the prompt, so every token sees exactly what it sees in its own sequence. The prompt's KV
    is then read once per row of candidates instead of copied once per candidate. Otherwise
    (flash attention takes no custom mask) each candidate has its own row, ``max_candidates``
    rows to a pass.
    """
    import torch

    device = next(model.parameters()).device
    packed = packs_candidates(model)
    chunks: list[tuple[int, list[tuple[int, list[int]]]]] = []  # (run row, [(slot, ids)])
    if packed:
        per_row: dict[int, list[tuple[int, list[int]]]] = {}
        for r, j, a in flat:
            per_row.setdefault(r, []).append((j, a))
        for r, cands in per_row.items():
            for start in range(0, len(cands), max_candidates):
                chunks.append((r, cands[start : start + max_candidates]))
    else:
        chunks = [(r, [(j, a)]) for r, j, a in flat]
    lengths = [sum(len(a) - 1 for _, a in c) for _, c in chunks]
    batches: list[list[int]] = []
    if packed:  # by length, at most PACKED_QUERY_TOKENS padded tokens a pass
        for i in sorted(range(len(chunks)), key=lambda i: lengths[i]):
            if batches and max(lengths[k] for k in [*batches[-1], i]) * (
                len(batches[-1]) + 1
            ) <= max(PACKED_QUERY_TOKENS, lengths[i]):
                batches[-1].append(i)
            else:
                batches.append([i])
    else:
        order = list(range(len(chunks)))
        batches = [order[k : k + max_candidates] for k in range(0, len(order), max_candidates)]
    computed = upper_run = 0
    kept: dict[tuple[int, int, int], Any] = {}
    for batch in batches:
        b, width = len(batch), max(lengths[i] for i in batch)
        from_states = (
            packed
            and given is not None
            and all((chunks[i][0], j) in given[1] for i in batch for j, _ in chunks[i][1])
        )
        # each candidate's place: (batch row, run row, slot, ids, first column, tokens run)
        places = []
        for k, i in enumerate(batch):
            r, cands = chunks[i]
            at = 0
            for j, a in cands:
                places.append((k, r, j, a, at, len(a) - 1))
                at += len(a) - 1
            computed += at
        ids = torch.full((b, width), pad, dtype=torch.long)
        pos = torch.zeros((b, width), dtype=torch.long)
        seg = torch.full((b, width), -1, dtype=torch.long)
        targets = torch.zeros((b, width), dtype=torch.long)
        rows = torch.tensor([chunks[i][0] for i in batch], dtype=torch.long)
        for k, r, j, a, at, n in places:
            ids[k, at : at + n] = torch.tensor(a[:-1])
            targets[k, at : at + n] = torch.tensor(a[1:])
            pos[k, at : at + n] = len(run[r].prompt) + torch.arange(n)
            seg[k, at : at + n] = j
        prompt = mask.cpu().index_select(0, rows)
        if packed:
            attention = segment_mask(prompt, seg, next(model.parameters()).dtype)
        else:
            attention = torch.cat([prompt, (seg >= 0).long()], dim=1)
        past = _expand_cache(cache_out, rows.to(device), model.config)
        if from_states:
            assert given is not None
            layer, states = given
            h0 = next(iter(states.values()))
            hidden = h0.new_zeros((b, width, h0.shape[-1]))
            for k, r, j, _, at, n in places:
                hidden[k, at : at + n] = states[(r, j)]
            logits = upper_forward(
                model, hidden, None, 0, pos.to(device), past, layer, attention=attention.to(device)
            )
            upper_run += sum(lengths[i] for i in batch)
        else:
            res = model(
                input_ids=ids.to(device),
                attention_mask=attention.to(device),
                position_ids=pos.to(device),
                use_cache=True,
                output_hidden_states=bool(keep_layers),
                **{cache_kw: past},
            )
            logits = res.logits
            for layer in keep_layers:
                states_in = res.hidden_states[layer]
                for k, r, j, _, at, n in places:
                    kept[(r, j, layer)] = states_in[k, at : at + n].clone()
        lsm = torch.log_softmax(logits.float(), dim=-1)
        tok_lp = lsm.gather(-1, targets.to(device).unsqueeze(-1)).squeeze(-1).cpu()
        del logits, lsm
        for k, r, j, _, at, n in places:
            out[run[r].item][j].extend(tok_lp[k, at : at + n].tolist())
    return computed, kept, upper_run


def _read_stored_actions(
    cache: PrefixCache,
    namespace: Hashable,
    groups: list[_Group],
    out: list[list[list[float]]],
    stats: CacheStats | None,
) -> list[_Group]:
    """Fill ``out`` with the actions whose log-probs the cache holds for the same prompt in
    the same namespace (:meth:`PrefixCache.lookup_actions`); return the groups still to run."""
    left: list[_Group] = []
    reused = 0
    for g in groups:
        stored = cache.lookup_actions(namespace, g.prompt, g.actions)
        keep = _Group(g.item, g.prompt, [], [])
        for j, a, lp in zip(g.members, g.actions, stored, strict=True):
            if lp is None:
                keep.members.append(j)
                keep.actions.append(a)
            else:
                out[g.item][j] = lp
                reused += 1
        if keep.members:
            left.append(keep)
    if reused:
        cache.record(stats, actions_reused=reused)
    return left


def naive_logprobs(
    model: Any,
    tokenizer: Any,
    items: Sequence[Item],
    *,
    max_length: int | None = None,
    encoded: list[list[tuple[list[int], list[int]]]] | None = None,
) -> list[list[list[float]]]:
    """Reference computation: each candidate's full sequence through the model on its own."""
    import torch

    if encoded is None:
        encoded = encode_items(tokenizer, items, max_length)
    device = next(model.parameters()).device
    out: list[list[list[float]]] = []
    with torch.inference_mode():
        for row in encoded:
            res_row = []
            for prompt, action in row:
                seq = torch.tensor([prompt + action], device=device)
                logits = model(input_ids=seq).logits[0, len(prompt) - 1 : -1].float()
                lsm = torch.log_softmax(logits, dim=-1)
                tgt = torch.tensor(action, device=device)
                res_row.append(lsm.gather(-1, tgt.unsqueeze(-1)).squeeze(-1).cpu().tolist())
            out.append(res_row)
    return out


@contextlib.contextmanager
def adapter_disabled(model: Any) -> Iterator[None]:
    """Run ``model`` as the reference: a peft model with its adapter disabled."""
    disable = getattr(model, "disable_adapter", None)
    if disable is None:
        raise ScorerError("the Q-value model has no adapter to disable (not a peft model)")
    with disable():
        yield


def aggregate(
    policy: Sequence[float], reference: Sequence[float], beta: float, aggregation: str
) -> float:
    """``beta`` times the sum (or mean) over tokens of ``policy - reference`` log-probs."""
    diffs = [p - r for p, r in zip(policy, reference, strict=True)]
    if not diffs:
        return 0.0
    total = sum(diffs)
    if aggregation == "mean":
        total /= len(diffs)
    elif aggregation != "sum":
        raise UserInputError(f"unknown aggregation {aggregation!r}; use sum or mean")
    return float(beta * total)


def score_items(
    model: Any,
    tokenizer: Any,
    items: Sequence[Item],
    *,
    beta: float,
    aggregation: str = "sum",
    max_length: int | None = None,
    naive: bool = False,
    max_prefix_tokens: int = 16384,
    max_candidates: int = 64,
    cache: PrefixCache | None = None,
    stats: CacheStats | None = None,
    lower_layers: int | None = None,
) -> list[list[float]]:
    """Q values of every action of every (context, actions) item: the batched scoring core.

    ``model`` is a peft model (adapter = policy, adapter disabled = reference). With
    ``naive=True`` each candidate's full sequence is computed on its own (for checks and
    benchmarks). Empty action lists give empty score lists. With a prefix ``cache`` the
    adapter-off pass and the adapter-on pass each reuse their own cached prefixes (the
    adapter-off namespace is the base checkpoint's, shared with a policy on that checkpoint),
    the adapter-off pass first: when the adapter leaves the lowest ``lower_layers`` decoder
    layers alone (default :func:`~agentq.models.shared_layers.adapter_free_layers`), the
    adapter-on prefill runs only the layers above them, from the states the adapter-off pass
    (or the policy) stored.
    """
    if not any(len(a) for _, a in items):
        return [[] for _ in items]
    encoded = encode_items(tokenizer, items, max_length)
    if naive:
        pol = naive_logprobs(model, tokenizer, items, encoded=encoded)
        with adapter_disabled(model):
            ref = naive_logprobs(model, tokenizer, items, encoded=encoded)
    else:
        kw: dict[str, Any] = {
            "max_prefix_tokens": max_prefix_tokens,
            "max_candidates": max_candidates,
            "cache": cache,
            "stats": stats,
        }
        on = off = None
        lower_from = None
        if cache is not None and supports_prefix_cache(model):
            on, off = model_namespace(model, adapter=True), model_namespace(model, adapter=False)
            if lower_layers is None:
                lower_layers = adapter_free_layers(model)
            if lower_layers:
                cache.track_hidden(off, lower_layers)
                lower_from = (off, lower_layers)
        with adapter_disabled(model):
            ref = prefix_shared_logprobs(
                model, tokenizer, items, encoded=encoded, namespace=off, **kw
            )
        pol = prefix_shared_logprobs(
            model, tokenizer, items, encoded=encoded, namespace=on, lower_from=lower_from, **kw
        )
    return [
        [aggregate(p, r, beta, aggregation) for p, r in zip(prow, rrow, strict=True)]
        for prow, rrow in zip(pol, ref, strict=True)
    ]


class QValueScorer(BaseScorer):
    """A step-level Q-value model: base LM + LoRA adapter trained with step-level DPO.

    ``score(context, actions)`` returns ``beta * sum(log pi_theta - log pi_ref)`` per action
    (or the mean over tokens with ``aggregation="mean"``); ``score_batch`` scores several
    contexts in shared batches. Thread-safe (one forward at a time).

    ``prefix_cache`` (default True: the process-wide
    :func:`~agentq.models.prefix_cache.shared_prefix_cache`; False: none; or a
    :class:`~agentq.models.prefix_cache.PrefixCache`) lets each step reuse the KV of the
    previous steps' context, adapter on and off; ``cache_bytes`` sets its budget (a positive
    size such as ``"512MiB"``). :meth:`stats` reports hits, tokens reused and cache bytes.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        beta: float = 0.1,
        aggregation: str = "sum",
        max_length: int | None = 1024,
        max_prefix_tokens: int = 16384,
        max_candidates: int = 64,
        config: dict[str, Any] | None = None,
        prefix_cache: Any = True,
        cache_bytes: Any = None,
        spec: str = "",
    ) -> None:
        if aggregation not in ("sum", "mean"):
            raise UserInputError(f"unknown aggregation {aggregation!r}; use sum or mean")
        limit = model_max_length(model)
        if max_length is None:
            max_length = limit
        elif limit is not None and max_length > limit:
            raise UserInputError(
                f"max_length {max_length} is longer than the model can take ({limit} positions)"
            )
        self.spec = spec
        self.model = model
        self.tokenizer = tokenizer
        self.beta = float(beta)
        self.aggregation = aggregation
        self.max_length = max_length
        self.max_prefix_tokens = max_prefix_tokens
        self.max_candidates = max_candidates
        self.config = config or {}
        self.prefix_cache = resolve_prefix_cache(prefix_cache, cache_bytes)
        self.cache_stats = CacheStats()
        """This scorer's own use of the prefix cache (the cache itself may be shared)."""
        self.lower_layers = adapter_free_layers(model)
        """Decoder layers below the adapter, computed once for both adapter states
        (:mod:`agentq.models.shared_layers`; 0: none)."""
        if self.prefix_cache is not None and self.lower_layers and supports_prefix_cache(model):
            # the policy on the same base keeps these states too, from its first step
            self.prefix_cache.track_hidden(model_namespace(model, adapter=False), self.lower_layers)
        self._lock = threading.Lock()

    def stats(self) -> dict[str, Any]:
        """Prefix-cache use: this scorer's hits, misses, tokens reused and computed, and the
        cache's bytes, peak bytes and budget (``cache`` is None when caching is off)."""
        with self._lock:
            d = self.cache_stats.to_dict()
        d["cache"] = self.prefix_cache.stats() if self.prefix_cache is not None else None
        return d

    @classmethod
    def from_pretrained(
        cls,
        directory: str | Path,
        device: str | None = None,
        dtype: Any = None,
        *,
        aggregation: str | None = None,
        max_length: int | None = None,
        **options: Any,
    ) -> QValueScorer:
        """Load a Q-model directory written by ``agentq train`` (adapter + ``qmodel.json``).

        Raises ``UserInputError`` for a missing directory, config or adapter file, or a base
        model that does not fit the adapter.
        """
        from agentq.models.loading import load_causal_lm
        from agentq.models.qmodel import check_base_compatible, read_qmodel_config

        if options.get("cache_bytes") is not None:  # bad input before the model loads
            parse_cache_bytes(options["cache_bytes"])
        d = Path(directory).expanduser()
        doc = read_qmodel_config(d)
        base, tok = load_causal_lm(doc["base_model"], device=device, dtype=dtype)
        check_base_compatible(doc, base.config, str(d))
        if doc.get("chat_template"):
            tok.chat_template = doc["chat_template"]
        try:
            from peft import PeftModel

            model = PeftModel.from_pretrained(base, str(d), is_trainable=False)
        except (OSError, ValueError, RuntimeError, KeyError) as e:
            raise UserInputError(
                f"cannot load the adapter in {d}: {str(e).strip().splitlines()[0]}"
            ) from e
        model.eval()
        return cls(
            model,
            tok,
            beta=float(doc["beta"]),
            aggregation=aggregation or doc.get("aggregation", "sum"),
            max_length=max_length or doc.get("max_length"),
            config=doc,
            **options,
        )

    def score(self, context: Context, actions: Sequence[str]) -> list[float]:
        """Q value of each action taken in ``context`` (an empty list for no actions)."""
        return self.score_batch([(context, actions)])[0]

    def score_batch(self, items: Sequence[Item]) -> list[list[float]]:
        """Q values for several (context, actions) items, batched across contexts."""
        with self._lock:
            return score_items(
                self.model,
                self.tokenizer,
                items,
                beta=self.beta,
                aggregation=self.aggregation,
                max_length=self.max_length,
                max_prefix_tokens=self.max_prefix_tokens,
                max_candidates=self.max_candidates,
                cache=self.prefix_cache,
                stats=self.cache_stats,
                lower_layers=self.lower_layers,
            )

    def score_naive(self, context: Context, actions: Sequence[str]) -> list[float]:
        """The same scores computed without prefix sharing (one full sequence per candidate)."""
        with self._lock:
            return score_items(
                self.model,
                self.tokenizer,
                [(context, actions)],
                beta=self.beta,
                aggregation=self.aggregation,
                max_length=self.max_length,
                naive=True,
            )[0]


def scorer_from_spec(directory: str, **options: Any) -> QValueScorer:
    """The ``qmodel:DIR`` SCORER spec: :meth:`QValueScorer.from_pretrained` on ``DIR``.

    Options: ``device``, ``dtype``, ``aggregation``, ``max_length``, ``max_candidates``,
    ``prefix_cache`` (true/false), ``cache_bytes`` (the prefix cache's budget, e.g. ``1GiB``).
    """
    return QValueScorer.from_pretrained(directory, spec=f"qmodel:{directory}", **options)
