"""The WebShop reward (Yao et al., 2022), the same numbers as upstream's ``get_reward``.

For a purchased product ``y`` with chosen options ``Y_opt`` and price ``p``, and a goal with
attributes ``U_att``, options ``U_opt`` and price bound ``u_price``::

    r = r_type * (|U_att ∩ Y_att| + |U_opt ∩ Y_opt| + 1[p <= u_price]) / (|U_att| + |U_opt| + 1)

The default rules (``rules="upstream"``) are those of princeton-nlp/WebShop's
``web_agent_site/engine/goal.py`` (its current main), reimplemented:

* Fuzzy matching is thefuzz's ``token_set_ratio``: both strings lower-cased, Latin-1 accents
  dropped, punctuation split into spaces, the score rounded to an integer; a match needs more
  than 85 (:func:`fuzzy_score`).
* Attribute match: a goal attribute counts when some product attribute fuzzy-matches it, or when
  it occurs as a substring of the lower-cased title, features (bullet points) or description.
* Option match, counted per goal option: a goal option counts when some chosen option value
  fuzzy-matches it, after both went through upstream's colour normalisation (the first name of
  its colour list that occurs as a substring; :func:`normalize_color`). Sizes are matched
  fuzzily like every other option.
* Price: 1 when the price is at most the goal's bound (ignored when the bound is not positive).
* Type: ``r_type`` is 1, 0.5, 0.1 or 0 from three signals: the purchased product's search query
  equals the goal's, at least two levels of the ``product_category`` path (split at ``›``)
  agree, and the share of the goal product name's nouns that occur in the purchased product's
  name (``title_score``).

``rules="strict"`` is agentq's earlier, stricter reading, kept as a named departure: sizes must
match exactly, occurrence checks match whole words (upstream's substring test lets ``"red"``
match ``"colored"``), colours are normalised to a shorter canonical list by whole words, fuzzy
scores are not rounded and get no punctuation processing, and the option count runs over the
chosen options, capped at the number of goal options.

**spaCy fallback.** The original finds the nouns of a product name with spaCy's
``en_core_web_lg`` tagger (tags ``NOUN``/``PROPN``). That model is not on PyPI, so by default
(``nouns="auto"``) this module uses spaCy only when it and an English model are installed, and
otherwise a heuristic: every alphabetic word of two or more letters that is not an English stop
word or a common product adjective counts as a noun. Product names are title-cased, so spaCy tags
most of their words ``PROPN`` and the two agree on most names; where they differ the heuristic
counts a few more words, which can lower ``title_score`` for a product of the same kind with
differently worded names. The purchase of the goal's own product always gets ``title_score`` 1.
``info["nouns"]`` says which was used.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rapidfuzz import fuzz, utils

FUZZY_THRESHOLD = 85.0
"""A fuzzy match needs ``token_set_ratio`` strictly above this (as in the original)."""

EXACT_MATCH_OPTIONS = ("size",)
"""Option types that must match exactly under ``rules="strict"`` (upstream matches them fuzzily)."""

REWARD_RULES = ("upstream", "strict")
"""The reward rules: upstream's (the default) and agentq's earlier stricter reading."""

UPSTREAM_COLOR_SET: tuple[str, ...] = tuple(
    """alabaster apricot aqua ash asphalt azure banana beige black blue blush bordeaux bronze brown
    burgundy camel camo caramel champagne charcoal cheetah chestnut chocolate christmas coffee
    cognac copper coral cranberry cream crystal dark denim eggplant elephant espresso fuchsia gold
    granite grape graphite grass gray green grey heather indigo ivory ivy khaki lavender lemon
    leopard light lilac lime magenta maroon mauve merlot midnight mint mocha multicolor mushroom
    mustard natural navy nude olive orange peach pewter pink plum purple rainbow red rose royal
    rust sand sapphire seashell silver skull slate steel stone stonewash sunflower tan taupe teal
    tiger turquoise violet walnut wheat white wine yellow""".split()
)
"""Upstream's colour list, in its order (``web_agent_site/engine/normalize.py``)."""

_LATIN1 = {i: None for i in range(128, 256)}


def fuzzy_score(a: str, b: str) -> int:
    """thefuzz's ``token_set_ratio`` (upstream's matcher): processed strings, rounded score.

    Both strings lose their Latin-1 characters (``force_ascii``), are lower-cased, have every
    character that is not a letter or digit replaced by a space and are trimmed; the rapidfuzz
    score is rounded to an integer as thefuzz does.
    """
    pa = utils.default_process(str(a).translate(_LATIN1))
    pb = utils.default_process(str(b).translate(_LATIN1))
    return int(round(fuzz.token_set_ratio(pa, pb)))


def upstream_normalize_color(value: str) -> str:
    """Upstream's ``normalize_color``: the first colour of its list occurring in ``value``.

    A substring test, case-sensitive as upstream's (option values are lower case already);
    a value that contains none comes back unchanged.
    """
    for color in UPSTREAM_COLOR_SET:
        if color in value:
            return color
    return value


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


def _category_parts(path: str, rules: str = "upstream") -> set[str]:
    if rules == "upstream":  # upstream: split at "›", strip, case kept
        return {p.strip() for p in str(path or "").split("›")}
    return {p.strip().lower() for p in re.split(r"›|>", path or "") if p.strip()}


def type_reward(
    purchased: Mapping[str, Any],
    goal: Mapping[str, Any],
    nouns: str = "auto",
    rules: str = "upstream",
) -> dict[str, Any]:
    """``r_type`` with its signals: ``query_match``, ``category_match``, ``title_score``."""
    if rules == "upstream":
        query_match = purchased.get("query", "") == goal.get("query", "")
    else:
        query_match = (
            str(purchased.get("query", "")).strip().lower()
            == str(goal.get("query", "")).strip().lower()
        )
    category_match = (
        len(
            _category_parts(purchased.get("product_category", ""), rules)
            & _category_parts(goal.get("product_category", ""), rules)
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


def strict_attribute_matches(purchased: Mapping[str, Any], goal_attributes: Sequence[str]) -> int:
    """``rules="strict"``: goal attributes the product has (unrounded fuzzy, or whole words)."""
    attrs = [str(a) for a in purchased.get("Attributes") or []]
    text = _product_text(purchased)
    n = 0
    for goal_attr in goal_attributes:
        if any(fuzz.token_set_ratio(a, goal_attr) > FUZZY_THRESHOLD for a in attrs) or occurs(
            goal_attr, text
        ):
            n += 1
    return n


def strict_option_matches(
    purchased: Mapping[str, Any],
    goal_options: Iterable[str],
    chosen_options: Mapping[str, str],
) -> int:
    """``rules="strict"``: chosen options meeting a goal option (exact sizes), capped."""
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


def _upstream_fields(product: Mapping[str, Any]) -> tuple[str, str, str]:
    bullets = product.get("BulletPoints") or []
    if isinstance(bullets, str):
        bullets = [bullets]
    return (
        str(product.get("Title", "")).lower(),
        " ".join(map(str, bullets)).lower(),
        str(product.get("Description", "")).lower(),
    )


def attribute_matches(purchased: Mapping[str, Any], goal_attributes: Sequence[str]) -> int:
    """How many goal attributes the purchased product has, as upstream counts them.

    A goal attribute counts when a product attribute fuzzy-matches it (:func:`fuzzy_score` above
    85) or when it is a substring of the lower-cased title, features or description.
    """
    attrs = [str(a) for a in purchased.get("Attributes") or []]
    fields = _upstream_fields(purchased)
    n = 0
    for goal_attr in goal_attributes:
        if any(fuzzy_score(a, goal_attr) > FUZZY_THRESHOLD for a in attrs):
            n += 1
        elif any(goal_attr in f for f in fields):
            n += 1
    return n


def option_matches(goal_options: Iterable[str], chosen_options: Mapping[str, str]) -> int:
    """How many goal options some chosen option value meets, as upstream counts them.

    Both sides are colour-normalised (:func:`upstream_normalize_color`); a goal option counts once
    when any chosen value fuzzy-matches it (:func:`fuzzy_score` above 85), sizes included.
    """
    chosen = [upstream_normalize_color(str(v)) for v in chosen_options.values()]
    n = 0
    for goal in goal_options:
        g = upstream_normalize_color(str(goal))
        if any(fuzzy_score(c, g) > FUZZY_THRESHOLD for c in chosen):
            n += 1
    return n


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
    rules: str = "upstream",
) -> tuple[float, dict[str, Any]]:
    """The WebShop reward of buying ``purchased`` at ``price`` with ``options`` for ``goal``.

    ``rules``: ``"upstream"`` (the default; upstream's numbers) or ``"strict"`` (see the module
    docstring). Returns ``(reward, parts)``; ``parts`` holds ``r_type``, ``r_att``,
    ``r_option``, ``r_price``, their weights ``w_att``/``w_option``/``w_price``, the type
    signals, the match counts and ``rules``.
    """
    if rules not in REWARD_RULES:
        raise ValueError(f"rules must be one of {', '.join(REWARD_RULES)}, not {rules!r}")
    type_info = type_reward(purchased, goal, nouns, rules)
    goal_attrs = [str(a) for a in goal.get("attributes") or []]
    goal_opts = goal_option_values(goal)
    price_upper = float(goal.get("price_upper", 0) or 0)
    r_price: bool | None = (price <= price_upper) if price_upper > 0 else None
    if rules == "upstream":
        n_att = attribute_matches(purchased, goal_attrs)
        n_opt = option_matches(goal_opts, options)
    else:
        n_att = strict_attribute_matches(purchased, goal_attrs)
        n_opt = strict_option_matches(purchased, goal_opts, options)
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
        "rules": rules,
    }
    return total, parts


__all__ = [
    "COLOR_SET",
    "EXACT_MATCH_OPTIONS",
    "FUZZY_THRESHOLD",
    "REWARD_RULES",
    "UPSTREAM_COLOR_SET",
    "attribute_matches",
    "fuzzy_score",
    "strict_attribute_matches",
    "strict_option_matches",
    "upstream_normalize_color",
    "get_reward",
    "goal_option_values",
    "name_nouns",
    "normalize_color",
    "option_matches",
    "type_reward",
]
