"""BM25 product search with bm25s, on the same document text as WebShop's Lucene index.

The original indexes, per product, the lower-cased concatenation of the title, the description,
the first bullet point and the option text (``"color: red, blue, and size: small, large"``) with
Pyserini/Lucene BM25 (k1=0.9, b=0.4) and returns the top 50 hits. This index uses the same text
and parameters with bm25s (pure Python/NumPy, no Java); tokens are ``\\w\\w+`` words minus English
stop words, without stemming (Lucene's default analyzer in Pyserini also applies the Porter
stemmer, so plural/singular variants match there and not here). Only documents that share at
least one query term are returned, as in Lucene.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import bm25s
import numpy as np

SEARCH_RETURN_N = 50
"""Hits a search returns (5 result pages of 10), as in WebShop."""


def option_text(options: Mapping[str, Sequence[str]]) -> str:
    """``"color: red, blue, and size: small, large"`` as in WebShop's index documents."""
    return ", and ".join(f"{name}: {', '.join(values)}" for name, values in options.items())


def document_text(product: Mapping[str, Any]) -> str:
    """The indexed text of a processed product (title, description, first bullet, options)."""
    bullets = product.get("BulletPoints") or [""]
    first = bullets[0] if bullets else ""
    return " ".join(
        [
            str(product.get("Title", "")),
            str(product.get("Description", "")),
            str(first),
            option_text(product.get("options") or {}),
        ]
    ).lower()


class ProductSearch:
    """A BM25 index over processed products; :meth:`search` returns ASINs, best first."""

    def __init__(
        self, products: Sequence[Mapping[str, Any]], k1: float = 0.9, b: float = 0.4
    ) -> None:
        self.asins = [str(p["asin"]) for p in products]
        corpus = [document_text(p) for p in products]
        tokens = bm25s.tokenize(corpus, stopwords="en", show_progress=False)
        self._retriever = bm25s.BM25(k1=k1, b=b, method="lucene")
        self._retriever.index(tokens, show_progress=False)
        self._vocab = set(self._retriever.vocab_dict)

    def __len__(self) -> int:
        return len(self.asins)

    def search(self, query: str, k: int = SEARCH_RETURN_N) -> list[str]:
        """The ASINs of the top ``k`` products for ``query`` (only products sharing a term)."""
        terms = bm25s.tokenize([query], stopwords="en", show_progress=False, return_ids=False)[0]
        terms = [t for t in terms if t in self._vocab]
        if not terms or not self.asins:
            return []
        k = min(k, len(self.asins))
        docs, scores = self._retriever.retrieve([terms], k=k, show_progress=False, n_threads=1)
        out = []
        for doc, score in zip(np.asarray(docs)[0], np.asarray(scores)[0], strict=True):
            if score > 0:
                out.append(self.asins[int(doc)])
        return out


__all__ = ["SEARCH_RETURN_N", "ProductSearch", "document_text", "option_text"]
