"""Stop strings for ``generate``, prepared once per tokenizer.

``generate(stop_strings=..., tokenizer=...)`` builds a ``StopStringCriteria`` on every call,
and building one walks the tokenizer's whole vocabulary to find the tokens that can end each
stop string (55-60 ms for SmolLM2's 49,152 tokens on a CPU core, measured, as much as decoding a
dozen tokens). An agent generates at every step with the same stop strings, so the criteria
are kept per tokenizer and stop-string tuple. They hold no state between calls (they read
the ``input_ids`` they are given), so one object serves every call and thread.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from typing import Any

_BY_TOKENIZER: weakref.WeakKeyDictionary[Any, dict[tuple[str, ...], Any]] = (
    weakref.WeakKeyDictionary()
)
_LOCK = threading.Lock()


def stop_string_criteria(tokenizer: Any, stop: Sequence[str]) -> Any:
    """A ``StoppingCriteriaList`` ending a sequence at any of ``stop`` (transformers'
    ``StopStringCriteria``), built once per ``tokenizer`` and ``stop`` tuple; pass it to
    ``generate(stopping_criteria=...)`` where ``stop_strings=`` would go."""
    from transformers import StoppingCriteriaList, StopStringCriteria

    key = tuple(stop)
    with _LOCK:
        try:
            per = _BY_TOKENIZER.setdefault(tokenizer, {})
        except TypeError:  # not weak-referenceable: build it each time
            per = {}
        crit = per.get(key)
        if crit is None:
            crit = per[key] = StopStringCriteria(tokenizer=tokenizer, stop_strings=list(key))
    return StoppingCriteriaList([crit])
