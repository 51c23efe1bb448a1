"""WebShop pages as compact text, and the action grammar ``search[query]`` / ``click[element]``.

Pages: ``search`` (a search box), ``results`` (10 products a page, ``next >`` / ``< prev``),
``item`` (options grouped per type, ``description`` / ``features`` / ``reviews``, ``buy now``),
``sub`` (one of the three item sub-pages) and ``done``. Every page shows its clickable elements
in square brackets; products as ``[b0123abcd] Title | $12.34``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

PRODUCT_WINDOW = 10
"""Products per results page."""

BUY_NOW = "buy now"
NEXT_PAGE = "next >"
PREV_PAGE = "< prev"
BACK_TO_SEARCH = "back to search"
SUB_PAGES = ("description", "features", "reviews")

_ACTION_RE = re.compile(r"\b(search|click)\s*\[([^\[\]\n]*)\]", re.IGNORECASE)


def parse_action(text: str) -> tuple[str, str] | None:
    """The last ``search[...]`` or ``click[...]`` command in ``text`` as (verb, argument).

    The verb is lower-cased; the argument is stripped (and lower-cased for clicks).
    Returns None when the text holds no command.
    """
    found = _ACTION_RE.findall(text or "")
    if not found:
        return None
    verb, arg = found[-1]
    verb = verb.lower()
    arg = arg.strip()
    if verb == "click":
        arg = arg.lower()
    return verb, arg


@dataclass(frozen=True)
class PageState:
    """Where the shopper is: the page and everything needed to render it (immutable)."""

    page: str = "search"
    """``search``, ``results``, ``item``, ``sub`` or ``done``."""
    query: str = ""
    results: tuple[str, ...] = ()
    page_no: int = 1
    asin: str | None = None
    options: tuple[tuple[str, str], ...] = ()
    """The chosen options, as (type, value) pairs in choice order."""
    sub: str | None = None
    visited: tuple[str, ...] = field(default=())

    def chosen(self) -> dict[str, str]:
        """The chosen options as a dict."""
        return dict(self.options)

    def with_option(self, kind: str, value: str) -> PageState:
        """The state with option ``kind`` set to ``value``."""
        opts = dict(self.options)
        opts[kind] = value
        return replace(self, options=tuple(opts.items()))

    def num_pages(self) -> int:
        """Result pages for the current query (at least 1)."""
        return max(1, (len(self.results) + PRODUCT_WINDOW - 1) // PRODUCT_WINDOW)

    def page_asins(self) -> list[str]:
        """ASINs shown on the current results page."""
        lo = (self.page_no - 1) * PRODUCT_WINDOW
        return list(self.results[lo : lo + PRODUCT_WINDOW])


def shorten(text: str, limit: int | None) -> str:
    """``text`` on one line, cut to ``limit`` characters (with ``...``) when a limit is given."""
    text = " ".join(str(text).split())
    if limit is not None and len(text) > limit:
        return text[: max(0, limit - 3)].rstrip() + "..."
    return text


def format_price(price: float) -> str:
    """``$12.34``."""
    return f"${price:.2f}"


def option_lookup(product: Mapping[str, Any], value: str) -> str | None:
    """The option type that offers ``value`` on ``product`` (first type wins), else None."""
    for kind, values in (product.get("options") or {}).items():
        if value in values:
            return str(kind)
    return None


def clickables(state: PageState, product: Mapping[str, Any] | None) -> list[str]:
    """The clickable elements of the page (lower-case, as in ``click[...]``)."""
    if state.page == "results":
        out = [BACK_TO_SEARCH]
        if state.page_no > 1:
            out.append(PREV_PAGE)
        if state.page_no < state.num_pages():
            out.append(NEXT_PAGE)
        out.extend(a.lower() for a in state.page_asins())
        return out
    if state.page == "item":
        out = [BACK_TO_SEARCH, PREV_PAGE]
        seen: set[str] = set()
        for values in (product or {}).get("options", {}).values():
            for v in values:
                if v not in seen:
                    seen.add(v)
                    out.append(v)
        out.extend(SUB_PAGES)
        out.append(BUY_NOW)
        return out
    if state.page == "sub":
        return [BACK_TO_SEARCH, PREV_PAGE]
    return []


def render_results(
    state: PageState,
    products: Mapping[str, Mapping[str, Any]],
    prices: Mapping[str, float],
    title_chars: int | None,
) -> str:
    """The results page text."""
    total = len(state.results)
    if total == 0:
        return f'No results for "{shorten(state.query, 60)}".\n[{BACK_TO_SEARCH}]'
    lines = [f"Page {state.page_no} of {state.num_pages()} ({total} results):"]
    for asin in state.page_asins():
        p = products[asin]
        lines.append(
            f"[{asin.lower()}] {shorten(p.get('Title', ''), title_chars)} | {format_price(prices[asin])}"
        )
    buttons = [BACK_TO_SEARCH]
    if state.page_no > 1:
        buttons.append(PREV_PAGE)
    if state.page_no < state.num_pages():
        buttons.append(NEXT_PAGE)
    lines.append(" ".join(f"[{b}]" for b in buttons))
    return "\n".join(lines)


def render_item(
    state: PageState, product: Mapping[str, Any], price: float, title_chars: int | None
) -> str:
    """The item page text: title, price, rating, one line per option type, chosen options, buttons."""
    asin = str(product["asin"]).lower()
    head = f"[{asin}] {shorten(product.get('Title', ''), title_chars)} | {format_price(price)}"
    rating = product.get("Rating")
    if isinstance(rating, (int, float)):
        head += f" | rating {rating:.1f}"
    lines = [head]
    for kind, values in (product.get("options") or {}).items():
        lines.append(f"{kind}: " + " ".join(f"[{v}]" for v in values))
    chosen = state.chosen()
    if chosen:
        lines.append("chosen: " + ", ".join(f"{k}={v}" for k, v in chosen.items()))
    lines.append(" ".join(f"[{b}]" for b in (*SUB_PAGES, BUY_NOW, PREV_PAGE, BACK_TO_SEARCH)))
    return "\n".join(lines)


_OPTION_ROW = re.compile(r"^([^\[\]\n:]+): \[", re.MULTILINE)
_CHOSEN_ROW = re.compile(r"^chosen: (.*)$", re.MULTILINE)


def read_item_options(page: str) -> tuple[list[str], dict[str, str]]:
    """The option kinds an item page (:func:`render_item`) offers and the ones chosen on it
    (``{kind: value}``); ``([], {})`` for any other page."""
    chosen_row = _CHOSEN_ROW.search(page)
    chosen = dict(
        part.split("=", 1) for part in (chosen_row.group(1).split(", ") if chosen_row else [])
    )
    return _OPTION_ROW.findall(page), chosen


def render_sub(state: PageState, product: Mapping[str, Any], text_chars: int | None) -> str:
    """A sub-page: the description, the features (bullet points) or up to three reviews."""
    asin = str(product["asin"]).lower()
    if state.sub == "description":
        body = shorten(product.get("Description", "") or "(no description)", text_chars)
    elif state.sub == "features":
        bullets = [
            shorten(b, text_chars) for b in product.get("BulletPoints") or [] if str(b).strip()
        ]
        body = "\n".join(f"- {b}" for b in bullets) or "(no features)"
    else:
        revs = []
        for r in (product.get("Reviews") or [])[:3]:
            score = r.get("score", "")
            revs.append(shorten(f"{score}/5 {r.get('title', '')}: {r.get('body', '')}", text_chars))
        body = "\n".join(f"- {r}" for r in revs) or "(no reviews)"
    return f"{str(state.sub).capitalize()} of [{asin}]:\n{body}\n[{PREV_PAGE}] [{BACK_TO_SEARCH}]"


def render_search(instruction: str) -> str:
    """The search page (also the first observation)."""
    return f"Instruction: {instruction}\nSearch page: type search[your query]."


def describe_valid(actions: Sequence[str], limit: int = 8) -> str:
    """A short list of valid actions for an invalid-action message."""
    shown = list(actions[:limit])
    more = len(actions) - len(shown)
    return ", ".join(shown) + (f" (+{more} more)" if more > 0 else "")


__all__ = [
    "BACK_TO_SEARCH",
    "BUY_NOW",
    "NEXT_PAGE",
    "PREV_PAGE",
    "PRODUCT_WINDOW",
    "SUB_PAGES",
    "PageState",
    "clickables",
    "describe_valid",
    "format_price",
    "option_lookup",
    "parse_action",
    "read_item_options",
    "render_item",
    "render_results",
    "render_search",
    "render_sub",
    "shorten",
]
