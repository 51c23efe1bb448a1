"""Pages and questions from local files in the official HotpotQA formats, with BM25 for "Similar".

Readers accept JSON and JSON Lines, plain, gzipped (``.gz``) or bzip2-compressed (``.bz2``):

- question files: the official distractor/fullwiki files (a list of ``{"_id", "question",
  "answer", "type", "level", "supporting_facts", "context"}``), the ReAct repository's simplified
  dev file (``{"question", "answer", "type"}``) and the shipped world (the distractor format plus
  a ``split`` field);
- page files: the ``context`` paragraphs of any such question file (``[title, [sentence, ...]]``,
  collected over every example), a bare list of ``[title, sentences]``, a ``{title: sentences}``
  mapping, or JSON Lines of ``{"title", "text" | "sentences"}``; a folder of such files is
  read whole, which covers the HotpotQA processed Wikipedia abstracts (the fullwiki corpus:
  ``wiki_XX.bz2`` files of ``{"id", "url", "title", "text"}`` lines, link tags stripped).
"""

from __future__ import annotations

import bz2
import gzip
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentq.errors import UserInputError


@dataclass(frozen=True)
class SearchResult:
    """What ``search[query]`` found: a page (``title`` and its sentences) or similar titles."""

    query: str
    title: str | None
    sentences: tuple[str, ...] = ()
    similar: tuple[str, ...] = ()

    @property
    def found(self) -> bool:
        """True when a page was found."""
        return self.title is not None


def read_json_file(path: str | Path) -> Any:
    """Parse a JSON or JSON Lines file (plain, ``.gz`` or ``.bz2``); ``UserInputError`` when it cannot."""
    p = Path(path)
    if not p.is_file():
        raise UserInputError(f"file not found: {p}")
    try:
        if p.name.endswith(".gz"):
            with gzip.open(p, "rt", encoding="utf-8") as fh:
                text = fh.read()
        elif p.name.endswith(".bz2"):
            with bz2.open(p, "rt", encoding="utf-8") as fh:
                text = fh.read()
        else:
            text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserInputError(f"cannot read {p}: {e}") from e
    stripped = text.lstrip()
    try:
        return json.loads(stripped)
    except json.JSONDecodeError as first:
        if not stripped.startswith("{"):
            raise UserInputError(f"{p} is not valid JSON: {first}") from first
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise UserInputError(f"{p}:{lineno}: not valid JSON Lines: {e}") from e
    return rows


_TAG = re.compile(r"</?a\b[^>]*>")


def clean_sentences(sentences: Iterable[Any]) -> tuple[str, ...]:
    """Sentences with surrounding whitespace and ``<a>`` link tags removed, empty ones dropped.

    A nested list (paragraphs of sentences) is flattened.
    """
    out: list[str] = []
    for s in sentences:
        if isinstance(s, list | tuple):
            out.extend(clean_sentences(s))
            continue
        s = " ".join(_TAG.sub("", str(s)).split())
        if s:
            out.append(s)
    return tuple(out)


def title_key(title: str) -> str:
    """The form titles are matched in: case-folded, underscores as spaces, single spaces."""
    return " ".join(title.replace("_", " ").split()).casefold()


def load_questions(path: str | Path) -> list[dict[str, Any]]:
    """Questions of a HotpotQA-format file as dicts with at least ``question`` and ``id``.

    ``id`` is the example's ``_id`` (or ``id``) when present, else ``<file stem>-<index>``.
    Examples without an ``answer`` (the official fullwiki test file) keep ``answer`` = None.
    """
    p = Path(path)
    data = read_json_file(p)
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise UserInputError(f"{p}: expected a list of questions, got {type(data).__name__}")
    stem = p.name.split(".")[0]
    out = []
    for i, ex in enumerate(data):
        if not isinstance(ex, dict) or not isinstance(ex.get("question"), str):
            raise UserInputError(f"{p}: entry {i} has no 'question' string")
        q = dict(ex)
        q["id"] = str(ex.get("_id", ex.get("id", f"{stem}-{i}")))
        q["answer"] = None if ex.get("answer") is None else str(ex["answer"])
        out.append(q)
    return out


def _pages_from(data: Any, where: str) -> dict[str, tuple[str, ...]]:
    pages: dict[str, tuple[str, ...]] = {}

    def add(title: Any, sentences: Any) -> None:
        if not isinstance(title, str) or not title.strip():
            raise UserInputError(f"{where}: a page has no title")
        if isinstance(sentences, str):
            sentences = [sentences]
        if not isinstance(sentences, list | tuple):
            raise UserInputError(f"{where}: page {title!r} has no list of sentences")
        pages.setdefault(title.strip(), clean_sentences(sentences))

    if isinstance(data, dict):
        for title, sentences in data.items():
            add(title, sentences)
        return pages
    if not isinstance(data, list):
        raise UserInputError(f"{where}: expected a list or a mapping of pages")
    for i, item in enumerate(data):
        if isinstance(item, dict) and "context" in item:
            for para in item["context"]:
                if not (isinstance(para, list | tuple) and len(para) == 2):
                    raise UserInputError(f"{where}: example {i} has a malformed context paragraph")
                add(para[0], para[1])
        elif isinstance(item, dict) and "title" in item:
            add(item["title"], item.get("sentences", item.get("text", [])))
        elif isinstance(item, list | tuple) and len(item) == 2:
            add(item[0], item[1])
        else:
            raise UserInputError(
                f"{where}: entry {i} is neither an example with 'context' nor a page"
            )
    return pages


_PAGE_SUFFIXES = (".json", ".jsonl", ".gz", ".bz2")


def load_pages(path: str | Path) -> dict[str, tuple[str, ...]]:
    """title -> sentences from a page file or the ``context`` of a question file (see module doc).

    A folder is read whole: every ``.json``/``.jsonl``/``.gz``/``.bz2`` file under it, in sorted
    order (the layout of the HotpotQA processed Wikipedia dump, ``wiki_00.bz2`` ...).
    """
    p = Path(path)
    if p.is_dir():
        pages: dict[str, tuple[str, ...]] = {}
        files = sorted(f for f in p.rglob("*") if f.is_file() and f.name.endswith(_PAGE_SUFFIXES))
        for f in files:
            for title, sentences in _pages_from(read_json_file(f), str(f)).items():
                pages.setdefault(title, sentences)
    else:
        pages = _pages_from(read_json_file(p), str(p))
    if not pages:
        raise UserInputError(f"{path}: no pages found")
    return pages


_TOKEN = re.compile(r"\w+")


class Corpus:
    """A local page store: exact (case-insensitive) title lookup, BM25 titles for misses.

    The BM25 index (bm25s) covers each page's title, repeated to weigh it like Wikipedia's
    search does, and its first sentences; it is built on the first miss.
    """

    def __init__(
        self,
        pages: Mapping[str, Sequence[str]] | Iterable[tuple[str, Sequence[str]]],
        *,
        similar_k: int = 5,
    ) -> None:
        items = pages.items() if isinstance(pages, Mapping) else pages
        self.pages: dict[str, tuple[str, ...]] = {}
        self._keys: dict[str, str] = {}
        for title, sentences in items:
            self.pages.setdefault(title, clean_sentences(sentences))
            self._keys.setdefault(title_key(title), title)
        self.titles = list(self.pages)
        self.similar_k = similar_k
        self._bm25: Any = None

    @classmethod
    def from_file(cls, path: str | Path, **kwargs: Any) -> Corpus:
        """A corpus from any page file :func:`load_pages` reads."""
        return cls(load_pages(path), **kwargs)

    def __len__(self) -> int:
        return len(self.pages)

    def __contains__(self, title: object) -> bool:
        return isinstance(title, str) and title_key(title) in self._keys

    def get(self, title: str) -> tuple[str, tuple[str, ...]] | None:
        """(exact title, sentences) of the page named ``title`` (case-insensitive), or None."""
        t = self._keys.get(title_key(title))
        return None if t is None else (t, self.pages[t])

    def _index(self) -> Any:
        if self._bm25 is None:
            import bm25s

            texts = [f"{t} {t} {t} " + " ".join(self.pages[t][:3]) for t in self.titles]
            tokens = bm25s.tokenize(texts, stopwords="en", show_progress=False)
            retriever = bm25s.BM25()
            retriever.index(tokens, show_progress=False)
            self._bm25 = retriever
        return self._bm25

    def similar(self, query: str, k: int | None = None) -> list[str]:
        """Up to ``k`` titles most similar to ``query`` under BM25 (none when nothing matches)."""
        import bm25s

        k = min(k or self.similar_k, len(self.titles))
        if k == 0 or not _TOKEN.search(query):
            return []
        q = bm25s.tokenize([query], stopwords="en", show_progress=False)
        if not any(len(ids) for ids in q.ids):
            return []
        docs, scores = self._index().retrieve(q, k=k, show_progress=False, n_threads=1)
        return [self.titles[int(d)] for d, s in zip(docs[0], scores[0], strict=True) if s > 0]

    def search(self, query: str) -> SearchResult:
        """The page titled ``query``, or the similar titles when there is none."""
        hit = self.get(query)
        if hit is not None:
            return SearchResult(query, hit[0], hit[1])
        return SearchResult(query, None, (), tuple(self.similar(query)))


__all__ = [
    "Corpus",
    "SearchResult",
    "clean_sentences",
    "load_pages",
    "load_questions",
    "read_json_file",
    "title_key",
]
