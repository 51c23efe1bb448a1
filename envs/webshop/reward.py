"""The WebShop reward (Yao et al., 2022), reimplemented from its definition.

For a purchased product ``y`` with chosen options ``Y_opt`` and price ``p``, and a goal with
attributes ``U_att``, options ``U_opt`` and price bound ``u_price``::

    r = r_type * (|U_att ∩ Y_att| + |U_opt ∩ Y_opt| + 1[p <= u_price]) / (|U_att| + |U_opt| + 1)

* Attribute match: a goal attribute counts when some product attribute has a fuzzy
  ``token_set_ratio`` above 85 (rapidfuzz), or when the attribute occurs in the product's title,
  features (bullet points) or description.
* Option match: every chosen option value is colour-normalised (:func:`normalize_color`); a
  ``size`` option must equal a goal option exactly, any other option fuzzy-matches (ratio above
  85) a goal option, or occurs in the title, features or description. The count is capped at the
  number of goal options, so ``r_option`` is the fraction of goal options met.
* Price: 1 when the price is at most the goal's bound (ignored when the bound is not positive).
* Type: ``r_type`` is 1, 0.5, 0.1 or 0 from three signals: the purchased product's search query
  equals the goal's, at least two levels of the ``product_category`` path agree, and the share of
  the goal product name's nouns that occur in the purchased product's name (``title_score``).

**spaCy fallback.** The original finds the nouns of a product name with spaCy's
``en_core_web_lg`` tagger (tags ``NOUN``/``PROPN``). That model is not on PyPI, so by default
(``nouns="auto"``) this module uses spaCy only when it and an English model are installed, and
otherwise a heuristic: every alphabetic word of two or more letters that is not an English stop
word or a common product adjective counts as a noun. What changes: product names are title-cased,
so spaCy tags most of their words ``PROPN`` and the two agree on most names; where they differ the
heuristic counts a few more words (some adjectives and verbs), which can lower ``title_score`` for a
product of the same kind with differently worded names. The threshold logic (``title_score`` of 0.2
and 0.1) is unchanged and the purchase of the goal's own product always gets ``title_score`` 1.
``info["nouns"]`` says which was used.

Two deliberate differences from the original code: occurrence checks in title, features and
description match whole words (the original's substring test lets ``"red"`` match ``"colored"``),
and the option count is capped as described above.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rapidfuzz import fuzz

FUZZY_THRESHOLD = 85.0
"""A fuzzy match needs ``token_set_ratio`` strictly above this (as in the original)."""

EXACT_MATCH_OPTIONS = ("size",)
"""Option types that must match exactly (no fuzzy matching)."""

# Canonical colour names. Multi-word and more specific names come first; a colour string is
# normalised to the first entry that occurs in it as whole words.
COLOR_SET: tuple[str, ...] = (
    "rose gold",
    "navy",
    "black",
    "white",
    "ivory",
    "cream",
    "beige",
    "khaki",
    "tan",
    "brown",
    "coffee",
    "gray",
    "silver",
    "gold",
    "red",
    "burgundy",
    "wine",
    "maroon",
    "pink",
    "fuchsia",
    "coral",
    "orange",
    "yellow",
    "mustard",
    "olive",
    "green",
    "mint",
    "teal",
    "turquoise",
    "aqua",
    "blue",
    "purple",
    "lavender",
    "violet",
    "multicolor",
    "clear",
)

_COLOR_SYNONYMS = {
    "grey": "gray",
    "multi": "multicolor",
    "multicolour": "multicolor",
    "colour": "color",
    "transparent": "clear",
}

_STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further had
    has have having he her here hers herself him himself his how i if in into is it its itself just
    me more most my myself no nor not now of off on once only or other our ours ourselves out over
    own same she should so some such than that the their theirs them themselves then there these
    they this those through to too under until up very was we were what when where which while who
    whom why will with you your yours yourself yourselves pack count set pcs piece pieces inch
    inches oz ounce ounces ft lb lbs pound pounds new""".split()
)

_ADJECTIVES = frozenset(
    """best great premium quality soft large small medium big mini extra super ultra light heavy
    durable comfortable portable lightweight classic modern cute stylish elegant perfect easy
    natural organic long short high low slim thin thick wide deep warm cool hot cold fast quick
    multiple compatible adjustable waterproof breathable non free""".split()
)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+(?:\.[0-9]+)?", text.lower())


@functools.lru_cache(maxsize=65536)
def normalize_color(value: str) -> str:
    """The canonical colour named in ``value`` (``"Heather Grey"`` -> ``"gray"``), else ``value``.

    ``value`` is lower-cased and British spellings are mapped first; a string that names no colour
    comes back lower-cased and stripped.
    """
    text = " ".join(_COLOR_SYNONYMS.get(w, w) for w in value.lower().split())
    words = f" {' '.join(_words(text))} "
    for color in COLOR_SET:
        if f" {color} " in words:
            return color
    return text.strip()


def occurs(phrase: str, text: str) -> bool:
    """Whether ``phrase`` occurs in ``text`` as whole words (case-insensitive)."""
    phrase = phrase.strip().lower()
    text = text.lower()
    if not phrase or phrase not in text:
        return False
    return re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", text) is not None


def _product_text(product: Mapping[str, Any]) -> str:
    bullets = product.get("BulletPoints") or []
    if isinstance(bullets, str):
        bullets = [bullets]
    return " \n ".join(
        [
            str(product.get("Title", "")),
            " ".join(map(str, bullets)),
            str(product.get("Description", "")),
        ]
    )


@functools.lru_cache(maxsize=1)
def _spacy_nlp() -> Any:
    """spaCy's English pipeline when installed (large model first), else None."""
    try:
        import spacy  # type: ignore[import-not-found]
    except ImportError:
        return None
    for model in ("en_core_web_lg", "en_core_web_md", "en_core_web_sm"):
        try:
            return spacy.load(model)
        except OSError:
            continue
    return None


def name_nouns(name: str, nouns: str = "auto") -> tuple[list[str], str]:
    """The nouns of a product name and the method used (``"spacy"`` or ``"heuristic"``).

    ``nouns``: ``"auto"`` (spaCy when installed, else the heuristic), ``"spacy"`` (required) or
    ``"heuristic"``.
    """
    if nouns not in ("auto", "spacy", "heuristic"):
        raise ValueError(f"nouns must be 'auto', 'spacy' or 'heuristic', not {nouns!r}")
    if nouns != "heuristic":
        nlp = _spacy_nlp()
        if nlp is not None:
            return [t.text.lower() for t in nlp(name) if t.pos_ in ("NOUN", "PROPN")], "spacy"
        if nouns == "spacy":
            raise RuntimeError("nouns='spacy' needs spaCy and an English model (en_core_web_lg)")
    out = [
        w
        for w in re.findall(r"[a-z]{2,}", name.lower())
        if w not in _STOPWORDS and w not in _ADJECTIVES
    ]
    return out, "heuristic"


def _category_parts(path: str) -> set[str]:
    return {p.strip().lower() for p in re.split(r"›|>", path or "") if p.strip()}


def type_reward(
    purchased: Mapping[str, Any], goal: Mapping[str, Any], nouns: str = "auto"
) -> dict[str, Any]:
    """``r_type`` with its signals: ``query_match``, ``category_match``, ``title_score``."""
    query_match = (
        str(purchased.get("query", "")).strip().lower()
        == str(goal.get("query", "")).strip().lower()
    )
    category_match = (
        len(
            _category_parts(purchased.get("product_category", ""))
            & _category_parts(goal.get("product_category", ""))
        )
        >= 2
    )
    bought, method = name_nouns(str(purchased.get("name") or purchased.get("Title", "")), nouns)
    wanted, _ = name_nouns(str(goal.get("name", "")), nouns)
    if not wanted:
        title_score = 0.2
    else:
        title_score = len(set(bought) & set(wanted)) / len(wanted)
    r_type = 1.0
    if not (query_match or category_match or title_score > 0.2):
        r_type = 0.5
    if title_score < 0.1:
        r_type = 0.1
    if title_score == 0.0:
        r_type = 0.0
    return {
        "r_type": r_type,
        "query_match": query_match,
        "category_match": category_match,
        "title_score": title_score,
        "nouns": method,
    }


def attribute_matches(purchased: Mapping[str, Any], goal_attributes: Sequence[str]) -> int:
    """How many goal attributes the purchased product has (fuzzy, or in its text)."""
    attrs = [str(a) for a in purchased.get("Attributes") or []]
    text = _product_text(purchased)
    n = 0
    for goal_attr in goal_attributes:
        if any(fuzz.token_set_ratio(a, goal_attr) > FUZZY_THRESHOLD for a in attrs) or occurs(
            goal_attr, text
        ):
            n += 1
    return n


def option_matches(
    purchased: Mapping[str, Any],
    goal_options: Iterable[str],
    chosen_options: Mapping[str, str],
) -> int:
    """How many goal options the chosen options meet (capped at the number of goal options)."""
    goals = [normalize_color(str(o)) for o in goal_options]
    text = _product_text(purchased)
    n = 0
    for kind, value in chosen_options.items():
        value_n = normalize_color(str(value))
        if kind.lower() in EXACT_MATCH_OPTIONS:
            matched = value_n in goals
        else:
            matched = any(fuzz.token_set_ratio(g, value_n) > FUZZY_THRESHOLD for g in goals)
        if matched or occurs(value_n, text):
            n += 1
    return min(n, len(goals))


def goal_option_values(goal: Mapping[str, Any]) -> list[str]:
    """The goal's option values (``goal_options`` may be a list or a {type: value} dict)."""
    opts = goal.get("goal_options") or []
    if isinstance(opts, Mapping):
        return [str(v) for v in opts.values()]
    return [str(v) for v in opts]


def get_reward(
    purchased: Mapping[str, Any],
    goal: Mapping[str, Any],
    price: float,
    options: Mapping[str, str],
    nouns: str = "auto",
) -> tuple[float, dict[str, Any]]:
    """The WebShop reward of buying ``purchased`` at ``price`` with ``options`` for ``goal``.

    Returns ``(reward, parts)``; ``parts`` holds ``r_type``, ``r_att``, ``r_option``, ``r_price``,
    their weights ``w_att``/``w_option``/``w_price``, the type signals and the match counts.
    """
    type_info = type_reward(purchased, goal, nouns)
    goal_attrs = [str(a) for a in goal.get("attributes") or []]
    goal_opts = goal_option_values(goal)
    price_upper = float(goal.get("price_upper", 0) or 0)
    r_price: bool | None = (price <= price_upper) if price_upper > 0 else None
    n_att = attribute_matches(purchased, goal_attrs)
    n_opt = option_matches(purchased, goal_opts, options)
    denom = len(goal_attrs) + len(goal_opts) + 1
    total = (n_att + n_opt + (1.0 if r_price else 0.0)) / denom
    total *= type_info["r_type"]
    parts: dict[str, Any] = {
        **type_info,
        "r_att": n_att / len(goal_attrs) if goal_attrs else None,
        "w_att": len(goal_attrs) / denom,
        "num_attr_matches": n_att,
        "r_option": n_opt / len(goal_opts) if goal_opts else None,
        "w_option": len(goal_opts) / denom,
        "num_option_matches": n_opt,
        "r_price": r_price,
        "w_price": 1 / denom,
    }
    return total, parts


__all__ = [
    "COLOR_SET",
    "EXACT_MATCH_OPTIONS",
    "FUZZY_THRESHOLD",
    "attribute_matches",
    "get_reward",
    "goal_option_values",
    "name_nouns",
    "normalize_color",
    "option_matches",
    "type_reward",
]
