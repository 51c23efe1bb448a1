"""Layers an adapter does not touch, computed once for the adapter-on and adapter-off passes.

A Q-model trained with ``--lora-layers K`` has LoRA in its top K decoder layers only. Below
them, the adapter-on pass (pi_theta) and the adapter-off pass (pi_ref, the base model, the
policy when the policy is that base) compute the very same numbers: same weights, same inputs.
So when the base model has run a prompt, the hidden state entering the first adapted layer and
the keys and values of every lower layer are already known for the adapter-on pass, and it
only has to run the adapted layers (:func:`upper_forward`).

:func:`agentq.models.prefix_cache.cached_prefill` keeps the hidden state entering that layer
next to the base model's KV (:meth:`~agentq.models.prefix_cache.PrefixCache.track_hidden`, a
namespace of its own: :func:`~agentq.models.prefix_cache.hidden_namespace`), and the
adapter-on prefill reads it. Used only where the result is the same computation:

* the adapter is LoRA inside decoder layers only (:func:`adapter_free_layers`; nothing on the
  embeddings, and no ``modules_to_save``);
* the model is a plain decoder stack (``layers``, ``norm``, ``rotary_emb`` under the causal LM,
  Llama-style) with an attention that takes a 4-D mask (``sdpa`` or ``eager``);
* the base model's namespace holds the whole prompt (its KV and its hidden states); otherwise
  the adapter-on pass runs every layer, as before.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

_LAYER_RE = re.compile(r"\.layers\.(\d+)\.")


def _peft_modules(model: Any) -> list[tuple[str, Any]]:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [(n, m) for n, m in model.named_modules() if isinstance(m, BaseTunerLayer)]


def decoder_parts(model: Any) -> tuple[Any, Any] | None:
    """(decoder stack with ``layers``/``norm``/``rotary_emb``, output head) of a causal LM
    (peft-wrapped or not), or None when the model is not laid out that way."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    inner = getattr(base, getattr(base, "base_model_prefix", "model"), None)
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    if inner is None or head is None:
        return None
    if not all(hasattr(inner, a) for a in ("layers", "norm", "rotary_emb")):
        return None
    return inner, head


def adapter_free_layers(model: Any) -> int:
    """How many decoder layers, from the bottom, no adapter module touches (0: none, or the
    model does not qualify; see the module docstring)."""
    if not hasattr(model, "peft_config"):
        return 0
    impl = getattr(getattr(model, "config", None), "_attn_implementation", None)
    if impl not in ("sdpa", "eager") or decoder_parts(model) is None:
        return 0
    for conf in model.peft_config.values():
        if getattr(conf, "modules_to_save", None):
            return 0
    lowest: int | None = None
    for name, _ in _peft_modules(model):
        m = _LAYER_RE.search(name + ".")
        if m is None:  # an adapter outside the decoder layers (embeddings, head): none shared
            return 0
        idx = int(m.group(1))
        lowest = idx if lowest is None else min(lowest, idx)
    return lowest or 0


def _layer_cache_kwarg(layer: Any) -> str:
    params = inspect.signature(layer.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def segment_mask(context: Any, segments: Any, dtype: Any) -> Any:
    """A 4-D additive attention mask over ``[context columns | new tokens]``.

    ``context`` (R, C) marks each row's real context columns; ``segments`` (R, W) gives each
    new token's segment (-1: padding). A new token sees its row's context and the earlier
    tokens of its own segment; a padding query sees itself only (no fully masked row). One
    segment per row is a cached prefill; several are candidates packed side by side.
    """
    import torch

    rows, width = segments.shape
    device = segments.device
    causal = torch.ones((width, width), dtype=torch.bool, device=device).tril()
    own = (segments.unsqueeze(2) == segments.unsqueeze(1)) & (segments.unsqueeze(2) >= 0)
    own = (own & causal) | torch.eye(width, dtype=torch.bool, device=device).unsqueeze(0)
    seen = context.to(device).bool().unsqueeze(1).expand(rows, width, -1)
    allow = torch.cat([seen, own], dim=2).unsqueeze(1)
    return torch.zeros(allow.shape, dtype=dtype, device=device).masked_fill_(
        ~allow, torch.finfo(dtype).min
    )


def prefill_mask(mask: Any, held: int, dtype: Any) -> Any:
    """:func:`segment_mask` of a cached prefill: ``mask`` (R, held + width) marks each row's
    real slots (its cached prefix, then its new tokens from the first new column)."""
    import torch

    segments = torch.where(mask[:, held:].bool(), 0, -1)  # one segment: the new tokens
    return segment_mask(mask[:, :held], segments, dtype)


def upper_forward(
    model: Any,
    hidden: Any,
    mask: Any,
    held: int,
    position_ids: Any,
    cache: Any,
    start: int,
    keep: Any = None,
    *,
    attention: Any = None,
) -> Any:
    """Run decoder layers ``start``.. on ``hidden`` (the states entering layer ``start``).

    ``cache`` is a ``DynamicCache`` over every layer, ``held`` slots wide (``mask`` marks each
    row's real ones); the layers run append the new tokens' keys and values to theirs, the
    lower layers are left to the caller. ``attention`` (a 4-D additive mask) replaces the
    one :func:`prefill_mask` makes of ``mask``. Returns the logits at the positions ``keep``
    (a 1-D index over the new tokens; all when None).
    """
    parts = decoder_parts(model)
    assert parts is not None
    inner, head = parts
    if attention is None:
        attention = prefill_mask(mask, held, hidden.dtype)
    embeddings = inner.rotary_emb(hidden, position_ids=position_ids)
    layers = inner.layers[start : inner.config.num_hidden_layers]
    kw = _layer_cache_kwarg(layers[0]) if len(layers) else "cache"
    for layer in layers:
        hidden = layer(
            hidden,
            attention_mask=attention,
            position_ids=position_ids,
            use_cache=True,
            position_embeddings=embeddings,
            **{kw: cache},
        )
        if isinstance(hidden, tuple):
            hidden = hidden[0]
    hidden = inner.norm(hidden)
    if keep is not None:
        hidden = hidden[:, keep]
    return head(hidden)
