"""N samples of one prompt, decoded against one copy of the prompt's KV.

``model.generate`` for N samples of one prompt (what a proposer asks for at every step) copies
the prompt's KV into N rows, and each decoding step's ``DynamicCache`` grows all N copies by
concatenation and reads all N in attention. With a long agent context that memory traffic,
not arithmetic, is most of a step on a CPU: at 2,000 tokens, five rows of SmolLM2's KV are
460 MB copied and read per generated token.

Here the prompt's KV stays one batch-1 tensor per layer (one copy, read from the prefix cache).
The cache of :func:`shared_prefix_cache` keeps only the generated tokens per row, and attention
is computed in two parts: every row's queries against the shared prompt keys in one batched
matrix product (the prompt KV read once per step), and each row's queries against its own
generated keys (causal); one softmax over both parts ("cascade" attention, as serving systems
decode shared prefixes). The numbers equal the per-row computation to float rounding, and
``generate``'s sampling (logits processors, stopping criteria, RNG draws) is untouched.

The attention runs through transformers' own dispatch: :func:`install` registers a wrapper of
the ``sdpa`` attention function that computes the two-part attention for a layer whose
shared-prefix cache layer has just handed it its prompt (a per-thread hand-off, so other
threads and every other call go to ``sdpa`` unchanged). Rows must share the whole prompt (no
padding): the caller's N copies of one prompt. Models other than plain full-attention ``sdpa``
decoders keep the copying path (:func:`supported`).
"""

from __future__ import annotations

import functools
import threading
from typing import Any

_handoff = threading.local()
_installed: list[Any] = []
_install_lock = threading.Lock()


def supported(model: Any) -> bool:
    """True when ``model``'s attention is transformers' ``sdpa`` (what :func:`install` wraps)."""
    cfg = getattr(model, "config", None)
    return getattr(cfg, "_attn_implementation", None) == "sdpa"


def install() -> None:
    """Register the two-part attention under transformers' ``sdpa`` name (once per process).

    Every call without a pending shared prefix goes to the original ``sdpa`` function with the
    same arguments, so models and callers that never use :func:`shared_prefix_cache` see no
    change.
    """
    with _install_lock:
        if _installed:
            return
        from transformers import AttentionInterface
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        original = sdpa_attention_forward

        def sdpa_or_shared_prefix(
            module: Any,
            query: Any,
            key: Any,
            value: Any,
            attention_mask: Any,
            *args: Any,
            **kwargs: Any,
        ) -> Any:
            pending = getattr(_handoff, "prefix", None)
            if pending is None or pending[0] != getattr(module, "layer_idx", None):
                return original(module, query, key, value, attention_mask, *args, **kwargs)
            _handoff.prefix = None
            _, prefix_keys, prefix_values = pending
            scaling = kwargs.get("scaling")
            return shared_prefix_attention(
                query, key, value, prefix_keys, prefix_values, scaling=scaling
            ), None

        AttentionInterface.register("sdpa", sdpa_or_shared_prefix)
        _installed.append(sdpa_or_shared_prefix)


def shared_prefix_attention(
    query: Any,
    keys: Any,
    values: Any,
    prefix_keys: Any,
    prefix_values: Any,
    scaling: float | None = None,
) -> Any:
    """Attention of ``query`` (rows, heads, q, d) over a shared prefix and per-row keys.

    ``prefix_keys``/``prefix_values``: (1, kv_heads, P, d), the prompt every row shares;
    ``keys``/``values``: (rows, kv_heads, S, d), each row's own tokens after the prompt, the
    last ``q`` of them being the queries' own (causal among themselves). Returns
    (rows, q, heads, d), the layout transformers' attention functions return.
    """
    import torch

    rows, heads, q, d = query.shape
    kv_heads, plen = prefix_keys.shape[1], prefix_keys.shape[2]
    groups = heads // kv_heads
    slen = keys.shape[2]
    scale = scaling if scaling is not None else d**-0.5
    # query head h reads kv head h // groups (transformers' repeat_kv order)
    qg = query.reshape(rows, kv_heads, groups * q, d)
    flat = qg.transpose(0, 1).reshape(kv_heads, rows * groups * q, d)
    prefix_scores = torch.matmul(flat, prefix_keys[0].transpose(1, 2)) * scale
    prefix_scores = prefix_scores.reshape(kv_heads, rows, groups * q, plen).transpose(0, 1)
    own_scores = torch.matmul(qg, keys.transpose(-1, -2)) * scale  # (rows, kv, g*q, S)
    position = torch.arange(slen - q, slen, device=query.device)  # the queries' own slots
    allowed = torch.arange(slen, device=query.device)[None, :] <= position[:, None]  # (q, S)
    own_scores = own_scores.masked_fill(~allowed.repeat(groups, 1), float("-inf"))
    weights = torch.softmax(torch.cat([prefix_scores, own_scores], dim=-1).float(), dim=-1)
    weights = weights.to(query.dtype)
    prefix_w = weights[..., :plen].transpose(0, 1).reshape(kv_heads, rows * groups * q, plen)
    out = torch.matmul(prefix_w, prefix_values[0])  # (kv, rows*g*q, d)
    out = out.reshape(kv_heads, rows, groups * q, d).transpose(0, 1)
    out = out + torch.matmul(weights[..., plen:], values)
    return out.reshape(rows, heads, q, d).transpose(1, 2).contiguous()


@functools.cache
def _layer_class() -> Any:
    """The cache layer class (defined on first use: transformers is imported lazily)."""
    from transformers.cache_utils import DynamicLayer

    class SharedPrefixLayer(DynamicLayer):  # type: ignore[misc]
        """One layer of :func:`shared_prefix_cache`: the shared prompt's (keys, values),
        batch 1, and each row's own tokens, grown like a ``DynamicLayer``."""

        is_croppable = False

        def __init__(self, layer_idx: int, prefix_keys: Any, prefix_values: Any) -> None:
            super().__init__()
            self.layer_idx = layer_idx
            self.prefix_keys = prefix_keys
            self.prefix_values = prefix_values

        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> Any:
            keys, values = super().update(key_states, value_states, *args, **kwargs)
            _handoff.prefix = (self.layer_idx, self.prefix_keys, self.prefix_values)
            return keys, values

        def get_seq_length(self) -> int:
            return int(self.prefix_keys.shape[2]) + super().get_seq_length()

        def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
            return self.get_seq_length() + query_length, 0

        def reorder_cache(self, beam_idx: Any) -> None:
            raise NotImplementedError("a shared-prefix cache does not support beam search")

    return SharedPrefixLayer


def shared_prefix_cache(prefix: list[tuple[Any, Any]]) -> Any:
    """A transformers ``Cache`` for ``generate`` whose layers share ``prefix`` (one batch-1
    (keys, values) pair per layer, the prompt minus its last token) across all rows."""
    from transformers.cache_utils import Cache

    install()
    layer = _layer_class()
    return Cache(layers=[layer(i, k, v) for i, (k, v) in enumerate(prefix)])


def own_tokens(cache: Any, row: int = 0) -> list[tuple[Any, Any]]:
    """Row ``row``'s tokens after the shared prompt, (keys, values) per layer, batch 1."""
    return [(lay.keys[row : row + 1], lay.values[row : row + 1]) for lay in cache.layers]


def clear_handoff() -> None:
    """Drop a pending prefix (after a failed forward, so no later call in this thread sees it)."""
    _handoff.prefix = None
