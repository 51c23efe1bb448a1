"""A tool that replays recorded observations, for services that cannot run offline.

TARA's ``history_weather`` and ``wiki_search`` were live services in Themis; offline they are
:class:`RecordedTool` objects that answer from the observations the TARA files recorded (see
``docs/reward.md``).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from typing import Any

from agentq.envs.tooluse.tools import Tool, ToolError


def norm_key(text: str) -> str:
    """``text`` in lower case with punctuation and runs of white space as single spaces."""
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s-]", " ", str(text).lower())).strip()


class RecordedTool(Tool):
    """A tool that replays recorded observations (for services that cannot run offline).

    ``records`` maps an input text to the observation the live service gave. Lookup is exact
    after normalisation (case, punctuation, spaces); with ``fuzzy`` the most similar recorded
    input scoring at least ``min_similarity`` (rapidfuzz ``token_set_ratio``, 0-100) is used.
    Inputs with no record go to ``fallback`` (another tool) or raise :class:`ToolError`.
    """

    parameters = {
        "type": "object",
        "properties": {"input": {"type": "string"}},
        "required": ["input"],
    }

    def __init__(
        self,
        name: str,
        description: str = "",
        records: Mapping[str, str] | None = None,
        *,
        fuzzy: bool = False,
        min_similarity: float = 60.0,
        fallback: Tool | None = None,
    ) -> None:
        self.name = name
        self.description = description or f"{name} (recorded observations)"
        self.records: dict[str, str] = {}
        self.fuzzy = fuzzy
        self.min_similarity = min_similarity
        self.fallback = fallback
        self._lock = threading.Lock()
        for k, v in (records or {}).items():
            self.add(k, v)

    def add(self, key: str, observation: str) -> None:
        """Record ``observation`` as the answer to input ``key``."""
        with self._lock:
            self.records[norm_key(key)] = observation

    def __len__(self) -> int:
        return len(self.records)

    def lookup(self, text: str) -> str | None:
        """The recorded observation for ``text`` (None when there is none)."""
        key = norm_key(text)
        if key in self.records:
            return self.records[key]
        if self.fuzzy and self.records:
            from rapidfuzz import fuzz, process

            best = process.extractOne(key, list(self.records), scorer=fuzz.token_set_ratio)
            if best is not None and best[1] >= self.min_similarity:
                return self.records[best[0]]
        return None

    def run(self, args: Mapping[str, Any] | str | None = None) -> str:
        """Replay the observation for ``args`` (a string or a dict of values)."""
        if isinstance(args, Mapping):
            text = str(
                args.get("input", args.get("query", ", ".join(str(v) for v in args.values())))
            )
        else:
            text = "" if args is None else str(args)
        obs = self.lookup(text)
        if obs is not None:
            return obs
        if self.fallback is not None:
            return self.fallback.run(args)
        raise ToolError(f"no recorded {self.name} result for {text.strip()[:200]!r}")

    def _call(self, input: str) -> str:  # type: ignore[override]
        return self.run(input)


__all__ = ["RecordedTool", "norm_key"]
