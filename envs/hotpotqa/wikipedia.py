"""Live Wikipedia pages through the MediaWiki API (opt-in: ``HotPotQAEnv(corpus="wikipedia")``).

Never used by default or in the test suite. Each request has a timeout, is retried with
exponential backoff on network errors, HTTP 429 and 5xx (``Retry-After`` is honoured, capped),
and its JSON answer is cached on disk, so a rerun or an MCTS replay of the same search costs no
request and sees the same page. After the last retry :class:`agentq.errors.RemoteError` is
raised (a remote fault, not an agent's bad action).

``search[entity]`` behaves like the ReAct environment: the page whose title is ``entity``
(following redirects; a case-insensitive match of Wikipedia's top search hit also counts), else
``Could not find entity. Similar: [...]`` with Wikipedia's top search titles. A disambiguation
page counts as not found, with its search titles as the similar ones.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path
from typing import Any

import httpx
from agentq.envs.hotpotqa.corpus import SearchResult, title_key

from agentq.errors import RemoteError

DEFAULT_API_URL = "https://en.wikipedia.org/w/api.php"
DEFAULT_USER_AGENT = "agentq-hotpotqa/0.1 (research agent environment; python-httpx)"

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")
_HEADING = re.compile(r"^=+.*=+$")


def default_cache_dir() -> Path:
    """``$AGENTQ_CACHE/wikipedia`` or ``~/.cache/agentq/wikipedia``."""
    root = os.environ.get("AGENTQ_CACHE") or Path.home() / ".cache" / "agentq"
    return Path(root) / "wikipedia"


def split_sentences(text: str) -> tuple[str, ...]:
    """Sentences of a plain-text extract: section headings dropped, one paragraph per line."""
    out: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or _HEADING.match(line):
            continue
        out.extend(s.strip() for s in _SENTENCE_END.split(line) if s.strip())
    return tuple(out)


class WikipediaBackend:
    """Pages from a MediaWiki API endpoint, with timeouts, retries, backoff and a disk cache.

    Args:
        api_url: the ``api.php`` endpoint (English Wikipedia by default; tests point it at a
            local stand-in).
        cache_dir: folder of the on-disk cache (default :func:`default_cache_dir`).
        timeout: seconds per request.
        retries: retries after the first attempt.
        backoff: first wait in seconds; doubled at each retry.
        similar_k: how many titles a miss lists.
        user_agent: the User-Agent header (Wikimedia asks for one that identifies the client).
    """

    def __init__(
        self,
        api_url: str = DEFAULT_API_URL,
        *,
        cache_dir: str | Path | None = None,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.5,
        similar_k: int = 5,
        user_agent: str = DEFAULT_USER_AGENT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.api_url = api_url
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.retries = retries
        self.backoff = backoff
        self.similar_k = similar_k
        self.requests_made = 0
        self._client = httpx.Client(
            timeout=timeout, headers={"User-Agent": user_agent}, transport=transport
        )

    # -- plumbing ----------------------------------------------------------------------------
    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()

    def __enter__(self) -> WikipediaBackend:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _cache_path(self, params: dict[str, Any]) -> Path:
        key = json.dumps([self.api_url, sorted(params.items())], ensure_ascii=False)
        digest = hashlib.sha256(key.encode()).hexdigest()
        return self.cache_dir / digest[:2] / f"{digest}.json"

    def get_json(self, params: dict[str, Any]) -> Any:
        """The API's JSON answer for ``params``: from the cache, or fetched (and then cached)."""
        params = {"format": "json", "formatversion": "2", **params}
        path = self._cache_path(params)
        if path.is_file():
            try:
                return json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                pass  # a damaged entry is fetched again
        data = self._fetch(params)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)
        return data

    def _fetch(self, params: dict[str, Any]) -> Any:
        last = "no attempt"
        status: int | None = None
        for attempt in range(self.retries + 1):
            wait = self.backoff * (2**attempt)
            try:
                self.requests_made += 1
                r = self._client.get(self.api_url, params=params)
            except httpx.TransportError as e:
                last, status = f"{type(e).__name__}: {e}", None
            else:
                status = r.status_code
                if r.status_code == 200:
                    try:
                        data = r.json()
                    except ValueError as e:
                        raise RemoteError(f"{self.api_url} answered with invalid JSON: {e}") from e
                    if isinstance(data, dict) and "error" in data:
                        raise RemoteError(f"{self.api_url}: API error {data['error']}")
                    return data
                last = f"HTTP {r.status_code}"
                if r.status_code != 429 and r.status_code < 500:
                    raise RemoteError(f"{self.api_url}: {last}", status_code=r.status_code)
                retry_after = r.headers.get("Retry-After", "")
                if retry_after.isdigit():
                    wait = min(float(retry_after), 30.0)
            if attempt < self.retries:
                time.sleep(wait)
        raise RemoteError(
            f"{self.api_url}: giving up after {self.retries + 1} attempts ({last})",
            status_code=status,
        )

    # -- pages ------------------------------------------------------------------------------
    def page(self, title: str) -> tuple[str, tuple[str, ...]] | None:
        """(title, sentences) of the article ``title`` (redirects followed), or None.

        A missing page and a disambiguation page are both None.
        """
        if "|" in title or not title.strip():
            return None  # "|" separates titles in the API; no article title contains it
        data = self.get_json(
            {
                "action": "query",
                "prop": "extracts|pageprops",
                "explaintext": "1",
                "redirects": "1",
                "titles": title,
            }
        )
        pages = (data.get("query") or {}).get("pages") or []
        if not pages:
            return None
        p = pages[0]
        if p.get("missing") or p.get("invalid") or "disambiguation" in (p.get("pageprops") or {}):
            return None
        sentences = split_sentences(p.get("extract") or "")
        if not sentences:
            return None
        return str(p.get("title", title)), sentences

    def similar(self, query: str) -> list[str]:
        """Titles of Wikipedia's top search hits for ``query``."""
        data = self.get_json(
            {"action": "query", "list": "search", "srsearch": query, "srlimit": str(self.similar_k)}
        )
        return [
            str(h["title"]) for h in (data.get("query") or {}).get("search", []) if "title" in h
        ]

    def search(self, query: str) -> SearchResult:
        """The page for ``query`` or the similar titles (see the module doc)."""
        hit = self.page(query)
        if hit is not None:
            return SearchResult(query, hit[0], hit[1])
        similar = self.similar(query)
        if similar and title_key(similar[0]) == title_key(query) and similar[0] != query:
            hit = self.page(similar[0])
            if hit is not None:
                return SearchResult(query, hit[0], hit[1])
        return SearchResult(query, None, (), tuple(similar))


__all__ = ["DEFAULT_API_URL", "WikipediaBackend", "default_cache_dir", "split_sentences"]
