"""One bounded prefix (KV) cache for local transformers models, shared across steps and models.

An agent's context only grows: step t's prompt is step t-1's plus an action and an observation.
:class:`PrefixCache` keeps the key/value states of prompts already computed, keyed by their
token ids, so the next prompt runs only its new tokens through the model.

Structure (after SGLang's radix cache): one radix tree per *namespace*, each edge a run of
token ids holding that run's KV slice (every layer, batch 1). A lookup walks the tree along
the prompt and concatenates the slices of the longest matching path; an insert adds the
unmatched tail as a new leaf, splitting an edge where two prompts diverge. Memory is bounded
by ``max_bytes`` (default :data:`DEFAULT_CACHE_BYTES`): after each insert, leaves are evicted
least-recently-used first until the stored tensors fit (a prompt larger than the whole budget
is therefore not kept). All methods take one lock, so concurrent callers are safe; stored
tensors are never written in place, and lookups hand out fresh copies.

A namespace is the identity of the function that produced the KV: :func:`model_namespace`
gives (checkpoint path, dtype, device, a fingerprint of the embedding weights, adapter). A
Q-model's adapter-off (reference) pass runs the bare base model, so its namespace equals the
policy's when both load the same checkpoint: the reference reuses what the policy computed
(the ``adapter`` part is only added when the adapter is on). The key is the checkpoint, never
the Python object, so two loads of one checkpoint share entries.

Who uses it (:func:`shared_prefix_cache` is the one process-wide instance by default):

* :func:`agentq.models.scorer.prefix_shared_logprobs`: the constrained
  :class:`~agentq.models.proposer.LocalProposer`, its log-probs of free candidates, and
  :class:`~agentq.models.scorer.QValueScorer` (adapter on and adapter off, each in its own
  namespace), so ``agentq serve`` reuses a prefix across requests too. Besides KV, the
  cache keeps the per-token log-probs of the actions scored (a small LRU of at most
  ``max_action_entries`` actions, keyed by namespace, a digest of the prompt ids and the
  action ids): when the Q-model's base is the policy's model, its reference pass over the
  N candidates reads what the constrained policy computed for every valid action at that
  step, and runs no model at all (``actions_reused`` in the stats). For a Q-model whose
  adapter leaves its lower layers alone, the base model's passes also keep the hidden
  states entering the first adapted layer (:meth:`PrefixCache.track_hidden`, and per action
  :meth:`PrefixCache.store_action_hidden`), from which the adapter-on pass runs only the
  adapted layers (:mod:`agentq.models.shared_layers`).
* Free generation (:func:`cached_generate`) in :class:`LocalProposer` and
  ``LocalChatModel``: used when every row of one ``generate`` call has the same prompt (one
  context, N samples). The prompt is computed once (batch 1) from its cached prefix, and the
  N rows decode against that one copy of its KV
  (:mod:`agentq.models.shared_prefix_decoding`). Several different prompts in one call are
  left-padded together and run uncached: their padded positions would not match the cached
  ones, and splitting the call would change how the sampler draws from the seeded generator.
* Not used: the tool-augmented reward model (``rm:DIR``) with ``pooling="mean"`` needs the
  hidden state of every token, which a KV cache does not keep, and its verification traces
  are generated across many different prompts at once (see above); ``LocalChatModel``'s
  streaming path runs uncached (its generation happens in a worker thread the caller does not
  wait for). Models whose cache is not a plain full-attention ``DynamicCache`` (sliding
  window, hybrid or recurrent layers) are never cached: :func:`supports_prefix_cache`.

When no prefix is reused: a context truncated by :func:`agentq.render.truncate_context`
loses whole middle turns, so every token after the task changes position; only the system
prompt and the task are then found in the cache, and each further step that drops another
turn recomputes everything after them. Different chat templates or ``max_length`` values give
different token ids and so different entries.
"""

from __future__ import annotations

import hashlib
import heapq
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from agentq.errors import UserInputError

DEFAULT_CACHE_BYTES = 512 * 1024**2
"""Default budget of the shared prefix cache: 512 MiB of stored KV tensors."""

KV = list[tuple[Any, Any]]
"""Per layer, (keys, values) tensors of shape (batch, kv_heads, tokens, head_dim)."""

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
    "t": 1000**4,
    "tb": 1000**4,
}


def parse_cache_bytes(value: Any) -> int:
    """A cache budget in bytes from an int or a size string (``"512MiB"``, ``"2G"``, ``"1e9"``).

    Raises ``UserInputError`` (one line) for anything that is not a positive size.
    """
    what = f"prefix cache budget must be a positive size such as 512MiB or 2GB, not {value!r}"
    if isinstance(value, bool):
        raise UserInputError(what)
    if isinstance(value, int | float):
        n = value
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-z]*)\s*", str(value).lower())
        if m is None or m.group(2) not in _UNITS:
            raise UserInputError(what)
        n = float(m.group(1)) * _UNITS[m.group(2)]
    if not n == n or n < 1 or n == float("inf"):  # NaN, non-positive, infinite
        raise UserInputError(what)
    return int(n)


@dataclass
class CacheStats:
    """Counters of prefix-cache use (one per consumer, and one for the whole cache)."""

    lookups: int = 0
    """Prompts looked up."""
    hits: int = 0
    """Lookups that found a cached prefix of at least one token."""
    tokens_reused: int = 0
    """Prompt tokens read from the cache instead of computed."""
    tokens_computed: int = 0
    """Prompt (prefill) tokens run through the model."""
    candidate_tokens: int = 0
    """Candidate-action tokens run over a prompt's KV (scoring; not prefill)."""
    actions_reused: int = 0
    """Candidate actions whose log-probs were read from the cache instead of computed (the
    Q-model's reference pass reading what the policy scored, see
    :meth:`PrefixCache.lookup_actions`)."""
    upper_candidates: int = 0
    """Candidate tokens of an adapter-on pass run through the adapted layers only, from the
    states the base model's pass over the same actions kept (in ``candidate_tokens`` too)."""
    upper_tokens: int = 0
    """Prompt tokens of an adapter-on pass run through the adapted layers only, from the
    lower layers' states the base model stored (:mod:`agentq.models.shared_layers`); they
    are counted in ``tokens_computed`` too."""

    @property
    def misses(self) -> int:
        """Lookups that found nothing."""
        return self.lookups - self.hits

    def add(
        self,
        lookups: int = 0,
        hits: int = 0,
        reused: int = 0,
        computed: int = 0,
        candidates: int = 0,
        actions_reused: int = 0,
        upper: int = 0,
        upper_candidates: int = 0,
    ) -> None:
        """Add to the counters."""
        self.upper_tokens += upper
        self.upper_candidates += upper_candidates
        self.candidate_tokens += candidates
        self.actions_reused += actions_reused
        self.lookups += lookups
        self.hits += hits
        self.tokens_reused += reused
        self.tokens_computed += computed

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form, with ``misses``, ``hit_rate`` and ``reuse_rate`` (token share)."""
        d: dict[str, Any] = asdict(self)
        d["misses"] = self.misses
        d["hit_rate"] = self.hits / self.lookups if self.lookups else 0.0
        total = self.tokens_reused + self.tokens_computed
        d["reuse_rate"] = self.tokens_reused / total if total else 0.0
        return d


class _Node:
    __slots__ = ("children", "kv", "last_used", "nbytes", "ns", "parent", "tokens")

    def __init__(self, ns: Hashable, tokens: tuple[int, ...], kv: KV | None, parent: Any) -> None:
        self.ns = ns
        self.tokens = tokens
        self.kv = kv or []
        self.parent: _Node | None = parent
        self.children: dict[int, _Node] = {}
        self.last_used = 0
        self.nbytes = sum(int(k.nbytes) + int(v.nbytes) for k, v in self.kv)


def ids_digest(ids: Sequence[int]) -> bytes:
    """A 128-bit digest of a sequence of token ids (ids are < 2**32): the action memo's key
    for a prompt, and with the model's namespace the reference cache's
    (:func:`agentq.models.step_dpo.reference_key`)."""
    from array import array

    return hashlib.blake2b(array("I", [int(t) for t in ids]).tobytes(), digest_size=16).digest()


def _common(a: Sequence[int], b: Sequence[int], start: int) -> int:
    """Length of the common prefix of ``a`` and ``b[start:]``."""
    n = min(len(a), len(b) - start)
    i = 0
    while i < n and a[i] == b[start + i]:
        i += 1
    return i


def _slice(kv: KV, start: int, end: int) -> KV:
    return [
        (k[:, :, start:end].clone().contiguous(), v[:, :, start:end].clone().contiguous())
        for k, v in kv
    ]


_ActionKey = tuple[Hashable, bytes, tuple[int, ...]]


def _action_key(namespace: Hashable, prompt_digest: bytes, action: Sequence[int]) -> _ActionKey:
    """The key of what the cache keeps per scored action: namespace, prompt digest, action ids."""
    return (namespace, prompt_digest, tuple(int(t) for t in action))


def _memo_get(memo: OrderedDict[_ActionKey, Any], key: _ActionKey) -> Any:
    """``memo[key]`` marked most recently used, or None (lock held by the caller)."""
    hit = memo.get(key)
    if hit is not None:
        memo.move_to_end(key)
    return hit


def _memo_put(memo: OrderedDict[_ActionKey, Any], key: _ActionKey, value: Any, cap: int) -> None:
    """Store ``value`` as most recently used; drop the least recently used beyond ``cap``."""
    memo[key] = value
    memo.move_to_end(key)
    while len(memo) > cap:
        memo.popitem(last=False)


def hidden_namespace(namespace: Hashable, layer: int) -> tuple[Any, ...]:
    """The namespace holding the hidden states that enter decoder layer ``layer`` of the model
    whose KV lives in ``namespace`` (stored as one pseudo-layer: keys (1, 1, tokens, hidden),
    empty values), see :meth:`PrefixCache.track_hidden`."""
    return ("hidden", layer, namespace)


class PrefixCache:
    """A radix tree of KV states keyed by (namespace, token-id prefix), LRU under a byte budget.

    ``match`` finds the longest cached prefix of a prompt and returns its KV; ``insert`` stores
    a prompt's KV (only the part not cached yet is copied). Thread-safe. See the module
    docstring for what a namespace is and who uses the cache.
    """

    def __init__(
        self,
        max_bytes: Any = DEFAULT_CACHE_BYTES,
        max_action_entries: int = 8192,
        max_action_states: int = 1024,
    ) -> None:
        self.max_bytes = parse_cache_bytes(max_bytes)
        self._lock = threading.RLock()
        self._roots: dict[Hashable, _Node] = {}
        self._clock = 0
        self.bytes = 0
        """Bytes of KV tensors stored now."""
        self.peak_bytes = 0
        """Most bytes stored at once after an insert's eviction (never above the budget)."""
        self.evictions = 0
        """Leaves evicted so far."""
        self.totals = CacheStats()
        """Counters over every consumer of this cache."""
        self.max_action_entries = max_action_entries
        self._actions: OrderedDict[_ActionKey, list[float]] = OrderedDict()
        self._hidden: dict[Hashable, frozenset[int]] = {}
        self.max_action_states = max_action_states
        self._action_states: OrderedDict[_ActionKey, Any] = OrderedDict()

    # -- public ----------------------------------------------------------------------------
    def set_budget(self, max_bytes: Any) -> None:
        """Change the budget (a positive size); evicts at once when the cache is over it."""
        with self._lock:
            self.max_bytes = parse_cache_bytes(max_bytes)
            self._evict()

    def clear(self) -> None:
        """Drop every entry (counters are kept)."""
        with self._lock:
            self._roots.clear()
            self._actions.clear()
            self._action_states.clear()
            self.bytes = 0

    def match(
        self,
        namespace: Hashable,
        tokens: Sequence[int],
        max_tokens: int | None = None,
        *,
        start: int = 0,
        layers: Sequence[int] | None = None,
    ) -> tuple[int, KV | None]:
        """(n, kv): the longest cached prefix of ``tokens`` (at most ``max_tokens`` long).

        ``kv`` holds fresh (batch 1) copies of that prefix's keys and values per layer (only
        ``layers`` when given, only positions ``start``.. when given), or None when ``n`` is 0
        (or not past ``start``). Marks the matched entries as recently used.
        """
        limit = len(tokens) if max_tokens is None else min(max_tokens, len(tokens))
        if limit <= 0:
            return 0, None
        with self._lock:
            self._clock += 1
            pieces = self._walk(namespace, tokens, limit)
            pos = sum(n for _, n in pieces)
            if pos <= start:
                return pos, None
            import torch

            spans: list[tuple[_Node, int, int]] = []  # (node, first, end) within the node
            at = 0
            for p, n in pieces:
                if at + n > start:
                    spans.append((p, max(start - at, 0), n))
                at += n
            which = range(len(pieces[0][0].kv)) if layers is None else layers
            kv = [
                (
                    torch.cat([p.kv[i][0][:, :, a:b] for p, a, b in spans], dim=2),
                    torch.cat([p.kv[i][1][:, :, a:b] for p, a, b in spans], dim=2),
                )
                for i in which
            ]
            return pos, kv

    def cached_length(self, namespace: Hashable, tokens: Sequence[int]) -> int:
        """Length of the longest cached prefix of ``tokens`` (no copy; marks it used)."""
        with self._lock:
            self._clock += 1
            return sum(n for _, n in self._walk(namespace, tokens, len(tokens)))

    def track_hidden(self, namespace: Hashable, layer: int) -> None:
        """From now on, prefills in ``namespace`` also keep the hidden states entering decoder
        layer ``layer`` (in :func:`hidden_namespace`), for an adapter that only changes the
        layers from there up (:mod:`agentq.models.shared_layers`)."""
        with self._lock:
            self._hidden[namespace] = self._hidden.get(namespace, frozenset()) | {int(layer)}

    def hidden_layers(self, namespace: Hashable) -> frozenset[int]:
        """The layers whose incoming hidden states prefills in ``namespace`` keep."""
        with self._lock:
            return self._hidden.get(namespace, frozenset())

    def insert(
        self, namespace: Hashable, tokens: Sequence[int], kv_of: Callable[[int, int], KV]
    ) -> int:
        """Store the KV of ``tokens``; ``kv_of(start, end)`` gives positions ``[start, end)``.

        Only the part of ``tokens`` not yet cached is asked for. Returns how many new tokens
        were stored (0 when all were cached, or when the entry did not fit in the budget).
        """
        toks = tuple(int(t) for t in tokens)
        if not toks:
            return 0
        with self._lock:
            self._clock += 1
            root = self._roots.get(namespace)
            if root is None:
                root = self._roots[namespace] = _Node(namespace, (), None, None)
            node, pos = root, 0
            while pos < len(toks):
                child = node.children.get(toks[pos])
                if child is None:
                    break
                n = _common(child.tokens, toks, pos)
                child.last_used = self._clock
                if n < len(child.tokens):
                    child = self._split(child, n)
                pos += n
                node = child
            added = len(toks) - pos
            if added:
                leaf = _Node(namespace, toks[pos:], _slice(kv_of(pos, len(toks)), 0, added), node)
                leaf.last_used = self._clock
                node.children[toks[pos]] = leaf
                self.bytes += leaf.nbytes
                self._evict()
                if leaf.parent is None:  # evicted at once: larger than the budget
                    added = 0
            self.peak_bytes = max(self.peak_bytes, self.bytes)
            return added

    def lookup_actions(
        self, namespace: Hashable, prompt: Sequence[int], actions: Sequence[Sequence[int]]
    ) -> list[list[float] | None]:
        """Per action, its per-token log-probs after ``prompt`` if stored, else None.

        A policy scoring every valid action and a Q-model's reference pass (the same base
        model: the same namespace) ask for the same (prompt, action) token ids at one step;
        the second reads the first's numbers instead of running the model again.
        """
        key = ids_digest(prompt)
        with self._lock:
            out: list[list[float] | None] = []
            for a in actions:
                hit = _memo_get(self._actions, _action_key(namespace, key, a))
                out.append(list(hit) if hit is not None else None)
            return out

    def store_actions(
        self,
        namespace: Hashable,
        prompt: Sequence[int],
        actions: Sequence[Sequence[int]],
        logprobs: Sequence[Sequence[float]],
    ) -> None:
        """Keep the per-token log-probs of ``actions`` after ``prompt`` (LRU, at most
        ``max_action_entries`` actions: a few floats each, outside the KV byte budget)."""
        if self.max_action_entries <= 0:
            return
        key = ids_digest(prompt)
        with self._lock:
            for a, lp in zip(actions, logprobs, strict=True):
                _memo_put(
                    self._actions,
                    _action_key(namespace, key, a),
                    [float(x) for x in lp],
                    self.max_action_entries,
                )

    def store_action_hidden(
        self, namespace: Hashable, prompt: Sequence[int], action: Sequence[int], states: Any
    ) -> None:
        """Keep the hidden states an action's tokens (all but its last) had entering a
        tracked layer after ``prompt`` (``namespace`` is that layer's
        :func:`hidden_namespace`), for the adapter-on pass over the same action (LRU, at most
        ``max_action_states`` actions, outside the byte budget: a few KiB each)."""
        if self.max_action_states <= 0:
            return
        k = _action_key(namespace, ids_digest(prompt), action)
        with self._lock:
            _memo_put(self._action_states, k, states, self.max_action_states)

    def action_hidden(
        self, namespace: Hashable, prompt: Sequence[int], action: Sequence[int]
    ) -> Any:
        """What :meth:`store_action_hidden` kept for this action after ``prompt``, or None."""
        k = _action_key(namespace, ids_digest(prompt), action)
        with self._lock:
            return _memo_get(self._action_states, k)

    def record(self, stats: CacheStats | None, **counts: int) -> None:
        """Add ``counts`` (``lookups``, ``hits``, ``reused``, ``computed``, ``candidates``,
        ``actions_reused``) to ``stats`` and to this cache's totals."""
        with self._lock:
            self.totals.add(**counts)
            if stats is not None:
                stats.add(**counts)

    def entries(self) -> int:
        """How many tree nodes hold KV now."""
        with self._lock:
            count = 0
            stack = list(self._roots.values())
            while stack:
                n = stack.pop()
                count += len(n.children)
                stack.extend(n.children.values())
            return count

    def stats(self) -> dict[str, Any]:
        """Totals (hits, misses, tokens reused and computed) and bytes, peak bytes, budget."""
        with self._lock:
            d = self.totals.to_dict()
            d.update(
                bytes=self.bytes,
                peak_bytes=self.peak_bytes,
                budget_bytes=self.max_bytes,
                entries=self.entries(),
                action_entries=len(self._actions),
                evictions=self.evictions,
                namespaces=len(self._roots),
            )
            return d

    # -- internals -------------------------------------------------------------------------
    def _walk(
        self, namespace: Hashable, tokens: Sequence[int], limit: int
    ) -> list[tuple[_Node, int]]:
        """The nodes along the longest cached prefix of ``tokens[:limit]`` and how many tokens
        of each it covers (lock held by the caller; marks them used)."""
        node = self._roots.get(namespace)
        pieces: list[tuple[_Node, int]] = []
        pos = 0
        while node is not None and pos < limit:
            child = node.children.get(tokens[pos])
            if child is None:
                break
            n = min(_common(child.tokens, tokens, pos), limit - pos)
            if n == 0:
                break
            pieces.append((child, n))
            child.last_used = self._clock
            pos += n
            if n < len(child.tokens):
                break
            node = child
        return pieces

    def _split(self, node: _Node, n: int) -> _Node:
        """Cut ``node``'s edge after ``n`` tokens; return the new upper node."""
        parent = node.parent
        assert parent is not None
        upper = _Node(node.ns, node.tokens[:n], _slice(node.kv, 0, n), parent)
        upper.last_used = node.last_used
        lower_kv = _slice(node.kv, n, len(node.tokens))
        old = node.nbytes
        node.tokens, node.kv, node.parent = node.tokens[n:], lower_kv, upper
        node.nbytes = sum(int(k.nbytes) + int(v.nbytes) for k, v in lower_kv)
        upper.children[node.tokens[0]] = node
        parent.children[upper.tokens[0]] = upper
        self.bytes += upper.nbytes + node.nbytes - old
        return upper

    def _evict(self) -> None:
        if self.bytes <= self.max_bytes:
            return
        heap: list[tuple[int, int, _Node]] = []
        stack = list(self._roots.values())
        while stack:
            n = stack.pop()
            for c in n.children.values():
                if c.children:
                    stack.append(c)
                else:
                    heap.append((c.last_used, id(c), c))
        heapq.heapify(heap)
        while self.bytes > self.max_bytes and heap:
            _, _, leaf = heapq.heappop(heap)
            parent = leaf.parent
            assert parent is not None
            del parent.children[leaf.tokens[0]]
            leaf.parent = None
            self.bytes -= leaf.nbytes
            self.evictions += 1
            if parent.parent is not None and not parent.children:
                heapq.heappush(heap, (parent.last_used, id(parent), parent))
            elif parent.parent is None and not parent.children:
                self._roots.pop(parent.ns, None)


_SHARED: PrefixCache | None = None
_SHARED_LOCK = threading.Lock()


def shared_prefix_cache(max_bytes: Any = None) -> PrefixCache:
    """The process-wide prefix cache (created on first use with :data:`DEFAULT_CACHE_BYTES`).

    With ``max_bytes`` its budget is set to that size (the last caller's budget wins), so a
    policy and a Q-model loaded with the same option share one bounded cache.
    """
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = PrefixCache(DEFAULT_CACHE_BYTES if max_bytes is None else max_bytes)
        elif max_bytes is not None:
            _SHARED.set_budget(max_bytes)
        return _SHARED


def resolve_prefix_cache(prefix_cache: Any = True, cache_bytes: Any = None) -> PrefixCache | None:
    """The cache a model option names: True (the shared one), False/None/"off" (none), or a
    :class:`PrefixCache`. ``cache_bytes`` (a positive size) sets the budget; invalid values
    raise ``UserInputError``."""
    if cache_bytes is not None:
        parse_cache_bytes(cache_bytes)
    if isinstance(prefix_cache, PrefixCache):
        if cache_bytes is not None:
            prefix_cache.set_budget(cache_bytes)
        return prefix_cache
    if isinstance(prefix_cache, str):
        low = prefix_cache.strip().lower()
        if low in ("0", "false", "no", "off", "none"):
            prefix_cache = False
        elif low in ("1", "true", "yes", "on", "shared"):
            prefix_cache = True
        else:
            raise UserInputError(f"prefix_cache must be true or false, not {prefix_cache!r}")
    if not prefix_cache:
        return None
    return shared_prefix_cache(cache_bytes)


# ------------------------------------------------------------------------------------------
# namespaces
# ------------------------------------------------------------------------------------------


def _weights_sample(t: Any) -> str:
    import torch

    flat = t.detach().reshape(-1)
    step = max(1, flat.numel() // 64)
    sample = flat[::step][:64].float().cpu()
    return hashlib.sha256(sample.numpy().tobytes() + str(tuple(t.shape)).encode()).hexdigest()[
        :16
    ] + str(torch.finfo(t.dtype).bits if t.dtype.is_floating_point else "")


def _base_model(model: Any) -> Any:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def model_namespace(model: Any, adapter: bool | None = None) -> tuple[Any, ...]:
    """The cache namespace of ``model``'s forward pass: checkpoint identity + adapter state.

    ``(name_or_path, dtype, device, fingerprint of the input/output embeddings)`` for the bare
    model; with ``adapter=True`` (a peft model with its adapter on) the adapter's name, config
    and a fingerprint of its weights are added. ``adapter=None`` means "on when ``model`` is a
    peft model". The adapter-off pass of a Q-model therefore shares the namespace of a policy
    loaded from the same checkpoint in the same dtype on the same device.
    """
    base = _base_model(model)
    cfg = getattr(base, "config", None)
    name = str(getattr(cfg, "_name_or_path", "") or "")
    param = next(base.parameters())
    parts: list[Any] = ["lm", name, str(param.dtype), str(param.device)]
    emb = base.get_input_embeddings()
    parts.append(_weights_sample(emb.weight))
    out = base.get_output_embeddings()
    if out is not None and out.weight is not emb.weight:
        parts.append(_weights_sample(out.weight))
    if adapter is None:
        adapter = hasattr(model, "peft_config")
    if adapter and hasattr(model, "peft_config"):
        active = getattr(model, "active_adapter", "default")
        conf = model.peft_config.get(active) if isinstance(model.peft_config, dict) else None
        lora = [p for n, p in model.named_parameters() if "lora_" in n]
        import torch

        if lora:
            sample = torch.stack([p.detach().reshape(-1)[:16].float().sum() for p in lora])
            digest = hashlib.sha256(sample.cpu().numpy().tobytes()).hexdigest()[:16]
        else:
            digest = ""
        parts.append(("adapter", str(active), repr(conf), digest))
    return tuple(parts)


def supports_prefix_cache(model: Any) -> bool:
    """True when ``model`` uses plain full-attention KV layers (what this cache stores) and is
    not in training mode (dropout on: its outputs are not the same twice)."""
    if getattr(model, "training", False):
        return False
    cfg = getattr(_base_model(model), "config", None)
    if cfg is None:
        return False
    if getattr(cfg, "sliding_window", None) and getattr(cfg, "use_sliding_window", True):
        return False
    types = getattr(cfg, "layer_types", None)
    return not (types and any(t != "full_attention" for t in types))


def cache_kwarg(model: Any) -> str:
    """Name of the argument that takes a KV cache (``cache`` in newer transformers)."""
    import inspect

    params = inspect.signature(_base_model(model).forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def kv_to_cache(kv: KV, config: Any) -> Any:
    """A ``DynamicCache`` holding ``kv`` (one (keys, values) pair per layer)."""
    from transformers import DynamicCache

    return DynamicCache(ddp_cache_data=[(k, v) for k, v in kv], config=config)


def output_cache(out: Any) -> Any:
    """The KV cache a model output carries (``cache`` in newer transformers), or None."""
    past = getattr(out, "cache", None)
    return past if past is not None else getattr(out, "past_key_values", None)


def cache_layers(cache: Any) -> KV:
    """(keys, values) per layer of a ``DynamicCache`` (either transformers layout)."""
    layers = getattr(cache, "layers", None)
    if layers is not None:
        return [(layer.keys, layer.values) for layer in layers]
    return [(k, v) for k, v in zip(cache.key_cache, cache.value_cache, strict=True)]


# ------------------------------------------------------------------------------------------
# one prefill pass from cached prefixes
# ------------------------------------------------------------------------------------------


@dataclass
class Prefill:
    """The result of :func:`cached_prefill` for a batch of prompts.

    The batch's KV layout per row r is ``[cached m_r | masked hole up to held | news[r] new
    tokens | padding]``; ``mask`` (R, held + max news) marks the real positions.
    """

    output: Any
    """The model's output (``logits`` at the kept positions, the KV cache, hidden states)."""
    mask: Any
    """Attention mask over the batch cache's slots (on the model's device)."""
    held: int
    """Width of the cached part of the batch (the longest cached prefix of any row)."""
    news: list[int]
    """Tokens computed per row (prompt length minus its cached prefix)."""
    last_index: list[int]
    """Per row, the input position (0-based, in the new tokens) of its prompt's last token."""
    last_column: list[int]
    """Per row, the column of ``output.logits`` holding its last token (``last_logits_only``)."""


def _padded_cache(hits: list[tuple[int, KV | None]], held: int, config: Any) -> Any:
    """A batch cache of width ``held``: row r holds its cached prefix, zeros (masked) after."""
    import torch

    first = next(kv for _, kv in hits if kv is not None)
    data = []
    for i, (k0, v0) in enumerate(first):
        keys = torch.zeros(
            (len(hits), k0.shape[1], held, k0.shape[3]), dtype=k0.dtype, device=k0.device
        )
        vals = torch.zeros(
            (len(hits), v0.shape[1], held, v0.shape[3]), dtype=v0.dtype, device=v0.device
        )
        for r, (m, kv) in enumerate(hits):
            if kv is not None:
                keys[r, :, :m] = kv[i][0][0]
                vals[r, :, :m] = kv[i][1][0]
        data.append((keys, vals))
    return kv_to_cache(data, config)


def _row_kv(layers: KV, row: int, slots: Any) -> Callable[[int, int], KV]:
    """``kv_of(start, end)`` for :meth:`PrefixCache.insert`: prompt positions of batch row
    ``row`` (its slots in the batch cache are ``slots``)."""

    def kv_of(start: int, end: int) -> KV:
        idx = slots[start:end]
        return [
            (k[row : row + 1].index_select(2, idx), v[row : row + 1].index_select(2, idx))
            for k, v in layers
        ]

    return kv_of


def _row_hidden(states: Any, row: int, first: int) -> Callable[[int, int], KV]:
    """``kv_of`` for storing row ``row``'s hidden states (new tokens from prompt position
    ``first``) as one pseudo-layer (keys (1, 1, tokens, hidden), empty values)."""

    def kv_of(start: int, end: int) -> KV:
        h = states[row : row + 1, start - first : end - first].unsqueeze(1)
        return [(h, h[..., :0])]

    return kv_of


def _lower_states(
    cache: PrefixCache,
    prompts: Sequence[Sequence[int]],
    hits: list[tuple[int, KV | None]],
    base: Hashable,
    layer: int,
) -> list[tuple[Any, KV]] | None:
    """Per row, the hidden states entering ``layer`` and the lower layers' KV of the new tokens
    (after the row's own cached prefix), from the base model's namespace; None unless the base
    namespace holds every prompt whole."""
    out: list[tuple[Any, KV]] = []
    for p, (m, _) in zip(prompts, hits, strict=True):
        n, states = cache.match(hidden_namespace(base, layer), p, start=m)
        if n < len(p) or states is None:
            return None
        n, kv = cache.match(base, p, start=m, layers=range(layer))
        if n < len(p) or kv is None:
            return None
        ((hidden, _),) = states  # the one pseudo-layer: (1, 1, tokens, hidden)
        out.append((hidden[0, 0], kv))
    return out


def _upper_prefill(
    model: Any,
    lower: list[tuple[Any, KV]],
    hits: list[tuple[int, KV | None]],
    held: int,
    news: list[int],
    mask: Any,
    position_ids: Any,
    layer: int,
    keep: Any = None,
) -> Any:
    """The prefill of :func:`cached_prefill` run from decoder layer ``layer`` up (the layers
    below are the base model's, see :mod:`agentq.models.shared_layers`): returns an object
    with ``logits`` (at the new positions ``keep``, all when None) and ``cache`` (every layer,
    as a full pass leaves it)."""
    from types import SimpleNamespace

    import torch

    from agentq.models.shared_layers import upper_forward

    rows, width = len(lower), max(news)
    h0 = lower[0][0]
    hidden = h0.new_zeros((rows, width, h0.shape[-1]))
    for r, (h, _) in enumerate(lower):
        hidden[r, : news[r]] = h
    config = model.config
    if held:
        past = _padded_cache(hits, held, config)
    else:  # nothing cached in this namespace yet: empty layers of the right shape
        k0 = lower[0][1][0][0]
        n_layers = int(getattr(config, "num_hidden_layers", 0) or len(lower[0][1]))
        empty = k0.new_zeros((rows, k0.shape[1], 0, k0.shape[3]))
        past = kv_to_cache([(empty, empty)] * n_layers, config)
    logits = upper_forward(model, hidden, mask, held, position_ids, past, layer, keep)
    for i in range(layer):  # the lower layers: the base model's KV of the new tokens
        k0, v0 = lower[0][1][i]
        keys = k0.new_zeros((rows, k0.shape[1], width, k0.shape[3]))
        vals = v0.new_zeros((rows, v0.shape[1], width, v0.shape[3]))
        for r, (_, kv) in enumerate(lower):
            keys[r, :, : news[r]] = kv[i][0][0]
            vals[r, :, : news[r]] = kv[i][1][0]
        lay = past.layers[i]
        lay.keys = torch.cat([lay.keys, keys], dim=2)
        lay.values = torch.cat([lay.values, vals], dim=2)
    return SimpleNamespace(logits=logits, cache=past, past_key_values=past)


MIN_SHARED_SAVING = 128
"""Fewest prompt tokens a shared prefix must save, (prompts holding it - 1) x its uncached
tokens, before :func:`cached_prefill` computes it in a pass of its own. Measured on SmolLM2 on
2 CPU cores: a pass costs about 85 ms whatever its length, a token about 1.2 ms in a batch."""


def shared_prefixes(
    prompts: Sequence[Sequence[int]],
    cached: Sequence[int],
    min_saving: int = MIN_SHARED_SAVING,
) -> list[list[int]]:
    """The prefixes that two or more of ``prompts`` share beyond what is cached for them.

    ``cached[r]`` is how much of prompt r the cache already holds. Each prompt's candidate is
    its longest common prefix with another prompt, stopped one token short of every prompt
    holding it (whose last token must be computed). A candidate is returned when computing it
    once saves at least ``min_saving`` tokens ((prompts holding it - 1) x its tokens not yet
    cached); one that is a prefix of another returned prefix is left out (storing the longer
    one stores it too). The several agents of one server batch, or the sibling contexts of a
    search, share their system prompt, task and common history this way.
    """
    order = sorted(range(len(prompts)), key=lambda r: tuple(prompts[r]))
    # common[i]: the common prefix of the i-th and (i+1)-th prompts in sorted order
    common = [
        min(_common(prompts[a], prompts[b], 0), len(prompts[a]) - 1, len(prompts[b]) - 1)
        for a, b in zip(order, order[1:], strict=False)
    ]
    found: set[tuple[int, ...]] = set()
    for i, r in enumerate(order):
        n = max(common[i - 1] if i else 0, common[i] if i < len(common) else 0)
        if n <= 0:
            continue
        # the prompts holding these n tokens are a run around i in sorted order
        lo, hi = i, i
        while lo > 0 and common[lo - 1] >= n:
            lo -= 1
        while hi < len(common) and common[hi] >= n:
            hi += 1
        if (hi - lo) * (n - cached[r]) >= min_saving:
            found.add(tuple(prompts[r][:n]))
    return [
        list(p)
        for p in sorted(found)
        if not any(len(q) > len(p) and q[: len(p)] == p for q in found)
    ]


def cached_prefill(
    model: Any,
    prompts: Sequence[Sequence[int]],
    *,
    cache: PrefixCache | None,
    namespace: Hashable | None = None,
    stats: CacheStats | None = None,
    pad_id: int = 0,
    last_logits_only: bool = False,
    store: bool = True,
    lower_from: tuple[Hashable, int] | None = None,
    **forward_kwargs: Any,
) -> Prefill:
    """Run a batch of prompts through ``model``, each from its longest cached prefix.

    At least the last token of every prompt is computed (its logits or hidden state is what
    callers read). Rows with different cached lengths share one batch: their cached parts are
    laid side by side, the gap masked, so each row attends to exactly its own prompt and the
    result equals an uncached pass to float rounding. The prompts' KV is stored afterwards
    (``store``). With ``cache=None`` this is a plain right-padded prefill.
    ``last_logits_only`` computes logits only at each row's last prompt position.
    Prompts of one batch that share an uncached prefix (:func:`shared_prefixes`, e.g. the
    system prompt of several agents' first requests) have it computed once, in a pass of its
    own before the batch, which then reads it from the cache.

    In a namespace with :meth:`PrefixCache.track_hidden` layers, the hidden states entering
    those layers are stored too. ``lower_from=(base namespace, layer)`` (an adapter-on pass
    whose adapter starts at ``layer``, :mod:`agentq.models.shared_layers`): when the base
    namespace holds every prompt whole, the new tokens run through the adapted layers only,
    from the stored hidden states, and the lower layers' KV is the base model's.
    """
    import torch

    device = next(model.parameters()).device
    if cache is not None and not supports_prefix_cache(model):
        cache = None
    if cache is not None and namespace is None:
        namespace = model_namespace(model)
    tracked = sorted(cache.hidden_layers(namespace)) if cache is not None else []

    def usable(p: Sequence[int]) -> int:  # the cached prefix a prompt may start from
        assert cache is not None
        limit = len(p) - 1
        for layer in tracked:  # the hidden states stay as long as the KV
            limit = min(limit, cache.cached_length(hidden_namespace(namespace, layer), p))
        return limit

    if cache is not None and store and not forward_kwargs and len(prompts) > 1:
        shared = shared_prefixes(prompts, [cache.cached_length(namespace, p) for p in prompts])
        if shared:  # computed once, first: the rows below then find them in the cache
            cached_prefill(
                model,
                shared,
                cache=cache,
                namespace=namespace,
                stats=stats,
                pad_id=pad_id,
                last_logits_only=True,
                lower_from=lower_from,
            )
    hits: list[tuple[int, KV | None]] = []
    for p in prompts:
        if cache is None:
            hits.append((0, None))
        else:
            hits.append(cache.match(namespace, p, max_tokens=usable(p)))
    held = max(m for m, _ in hits)
    news = [len(p) - m for p, (m, _) in zip(prompts, hits, strict=True)]
    width = max(news)
    if cache is not None:
        cache.record(
            stats,
            lookups=len(prompts),
            hits=sum(1 for m, _ in hits if m),
            reused=sum(m for m, _ in hits),
            computed=sum(news),
        )
    elif stats is not None:
        stats.add(computed=sum(news))
    rows = len(prompts)
    ids = torch.full((rows, width), pad_id, dtype=torch.long)
    mask = torch.zeros((rows, held + width), dtype=torch.long)
    pos_ids = torch.zeros((rows, width), dtype=torch.long)
    for r, (p, (m, _)) in enumerate(zip(prompts, hits, strict=True)):
        ids[r, : news[r]] = torch.tensor(list(p[m:]), dtype=torch.long)
        mask[r, :m] = 1
        mask[r, held : held + news[r]] = 1
        pos_ids[r] = m + torch.arange(width)
    mask = mask.to(device)
    last_index = [n - 1 for n in news]
    kwargs = dict(forward_kwargs)
    lasts = sorted(set(last_index))
    column = [lasts.index(i) for i in last_index] if last_logits_only else list(last_index)
    if last_logits_only:
        kwargs["logits_to_keep"] = torch.tensor(lasts, device=device)
    lower = None
    if cache is not None and lower_from is not None and not forward_kwargs:
        lower = _lower_states(cache, prompts, hits, *lower_from)
    if lower is not None:
        assert lower_from is not None
        keep = torch.tensor(lasts, device=device) if last_logits_only else None
        out = _upper_prefill(
            model, lower, hits, held, news, mask, pos_ids.to(device), lower_from[1], keep
        )
        cache.record(stats, upper=sum(news))  # type: ignore[union-attr]
    else:
        if held:
            kwargs[cache_kwarg(model)] = _padded_cache(hits, held, model.config)
        if tracked and cache is not None and store:
            kwargs["output_hidden_states"] = True
        out = model(
            input_ids=ids.to(device),
            attention_mask=mask,
            position_ids=pos_ids.to(device),
            use_cache=True,
            **kwargs,
        )
    if tracked and cache is not None and store and lower is None:
        for layer in tracked:
            states = out.hidden_states[layer]  # (rows, width, hidden): the new tokens only
            for r, (p, (m, _)) in enumerate(zip(prompts, hits, strict=True)):
                cache.insert(hidden_namespace(namespace, layer), p, _row_hidden(states, r, m))
    if cache is not None and store:
        past = output_cache(out)
        if past is not None:
            layers = cache_layers(past)
            for r, (p, (m, _)) in enumerate(zip(prompts, hits, strict=True)):
                slots = torch.cat([torch.arange(m), held + torch.arange(news[r])]).to(device)
                cache.insert(namespace, p, _row_kv(layers, r, slots))
    return Prefill(out, mask, held, news, last_index, column)


# ------------------------------------------------------------------------------------------
# generation
# ------------------------------------------------------------------------------------------


def cached_generate(
    model: Any,
    prompt: Sequence[int],
    rows: int,
    *,
    cache: PrefixCache | None,
    stats: CacheStats | None = None,
    namespace: Hashable | None = None,
    **generate_kwargs: Any,
) -> Any:
    """``model.generate`` for ``rows`` copies of one ``prompt``, starting from its cached prefix.

    The prompt (all but its last token) is computed once, in a batch of one, from its longest
    cached prefix, and stored; the rows then decode against that one copy of the prompt's KV
    (:mod:`agentq.models.shared_prefix_decoding`: no per-row copies, the prompt read once per
    generated token; a prompt the budget cannot hold decodes the same way from the prefill's
    own KV). Models that path does not support start ``generate`` from the cached prefix
    copied into every row instead.

    Returns the ``generate`` output (``return_dict_in_generate=True``: ``.sequences`` holds
    prompt + generated ids). Samples are the same as an uncached call under the same seed: the
    sampler draws in the same shape and order; only the attention's arithmetic differs, by
    float rounding.
    """
    import torch

    from agentq.models import shared_prefix_decoding as spd

    device = next(model.parameters()).device
    ids = [int(t) for t in prompt]
    use = cache is not None and supports_prefix_cache(model)
    ns = namespace if namespace is not None else (model_namespace(model) if use else None)
    input_ids = torch.tensor([ids] * rows, dtype=torch.long, device=device)
    kwargs = dict(generate_kwargs)
    kwargs["return_dict_in_generate"] = True
    shared = None
    prefix: KV = []
    if use and len(ids) > 1 and spd.supported(model):
        assert cache is not None
        with torch.inference_mode():
            pre = cached_prefill(
                model, [ids[:-1]], cache=cache, namespace=ns, stats=stats, last_logits_only=True
            )
        # one row, no padding: the prefill's own cache is the prompt's KV (stored or not)
        prefix = cache_layers(output_cache(pre.output))
        shared = spd.shared_prefix_cache(prefix)
        cache.record(stats, computed=1)  # the last prompt token (one per row, the same)
        kwargs[cache_kwarg(model)] = shared
    else:
        n, kv = (0, None)
        if use:
            assert cache is not None
            n, kv = cache.match(ns, ids, max_tokens=len(ids) - 1)
            cache.record(stats, lookups=1, hits=int(n > 0), reused=n, computed=len(ids) - n)
        elif stats is not None:
            stats.add(computed=len(ids))
        if kv is not None:
            expanded = [
                (k.expand(rows, -1, -1, -1).contiguous(), v.expand(rows, -1, -1, -1).contiguous())
                for k, v in kv
            ]
            kwargs[cache_kwarg(model)] = kv_to_cache(expanded, model.config)
        else:
            kwargs["use_cache"] = True
    try:
        with torch.inference_mode():
            out = model.generate(
                input_ids=input_ids, attention_mask=torch.ones_like(input_ids), **kwargs
            )
    finally:
        spd.clear_handoff()
    if use and shared is not None:
        assert cache is not None
        # the whole prompt: the shared part, then row 0's first own token (the last one)
        last = spd.own_tokens(shared)

        def whole(start: int, end: int) -> KV:
            return [
                (
                    torch.cat([pk[:, :, start:], k[:, :, :1]], 2),
                    torch.cat([pv[:, :, start:], v[:, :, :1]], 2),
                )
                for (pk, pv), (k, v) in zip(prefix, last, strict=True)
            ]

        cache.insert(ns, ids, whole)
    elif use:
        assert cache is not None
        past = output_cache(out)
        if past is not None:
            layers = cache_layers(past)
            if layers and layers[0][0] is not None and layers[0][0].shape[2] >= len(ids):
                cache.insert(
                    ns,
                    ids,
                    lambda s, e: [(k[:1, :, s:e], v[:1, :, s:e]) for k, v in layers],
                )
    return out
