"""Loaders for WebShop's data files and for the shipped offline data (same formats).

Official files (from the WebShop repository's ``data/`` folder):

* ``items_shuffle_1000.json`` / ``items_shuffle.json`` (full catalogue): a list of raw products
  with ``asin``, ``name``, ``full_description``, ``small_description``, ``pricing`` (``"$12.99"``
  or ``"$10.99 - $20.99"``), ``customization_options`` (``{name: [{"value", "image"}]}``),
  ``category``, ``query``, ``product_category`` and ``images``;
* ``items_ins_v2_1000.json`` / ``items_ins_v2.json``: ``{asin: {"attributes", "instruction",
  "instruction_attributes"}}`` (product attributes and synthetic instructions);
* ``items_human_ins.json``: ``{asin: [{"instruction", "instruction_attributes",
  "instruction_options", ...}]}`` (the human-written goals);
* ``reviews.json`` (optional): ``[{"asin", "reviews": [{"title", "score"|"stars", "body"|"review"}],
  "average_rating"}]``.

Each may also be gzip-compressed (``.json.gz``). Products are processed as WebShop's
``load_products`` does (``Title``, ``Description``, ``BulletPoints``, ``options`` with lower-cased
values and ``/`` turned into ``" | "``, ``Attributes``, ``pricing``), goals as its ``get_goals``
does, then shuffled with seed 233 as WebShop does. Prices are drawn from a ``random.Random(seed)``
(WebShop uses the unseeded global generator): a product with a price range gets a uniform price in
it, and a goal's price bound is the larger of two of the next four multiples of 10 above the
target's price. The baseline split is goals 0-499 test, 500-1499 validation, the rest train; a
``splits.json`` next to the files (``{"test": [0, 150], "train": [150, null]}``) overrides it.
"""

from __future__ import annotations

import gzip
import itertools
import json
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentq.errors import UserInputError

SHIPPED_DIR = Path(__file__).parent / "data"
"""Where the shipped offline data lives."""

PRICE_RANGE = [10.0 * i for i in range(1, 100)]
GOAL_SHUFFLE_SEED = 233
BASELINE_SPLITS: dict[str, tuple[int, int | None]] = {
    "test": (0, 500),
    "validation": (500, 1500),
    "train": (1500, None),
}
"""The split people report on: goals 0-499 test, 500-1499 validation, the rest train."""

_FILE_NAMES = {
    "products": ("items_shuffle_1000.json", "items_shuffle.json"),
    "attributes": ("items_ins_v2_1000.json", "items_ins_v2.json"),
    "human": ("items_human_ins.json",),
    "reviews": ("reviews.json",),
}


def read_json(path: str | Path) -> Any:
    """Read a ``.json`` or ``.json.gz`` file; a missing or malformed file is a UserInputError."""
    p = Path(path)
    try:
        if p.suffix == ".gz":
            with gzip.open(p, "rt", encoding="utf-8") as f:
                return json.load(f)
        with open(p, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError as e:
        raise UserInputError(f"WebShop data file not found: {p}") from e
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as e:
        raise UserInputError(f"WebShop data file {p} is not valid JSON: {e}") from e


def find_files(directory: str | Path) -> dict[str, Path | None]:
    """The WebShop files inside ``directory`` (plain or ``.gz``); ``None`` for absent optional ones."""
    d = Path(directory)
    if not d.is_dir():
        raise UserInputError(f"WebShop data directory not found: {d}")
    out: dict[str, Path | None] = {}
    for key, names in _FILE_NAMES.items():
        found = None
        for name in names:
            for cand in (d / name, d / f"{name}.gz"):
                if cand.exists():
                    found = cand
                    break
            if found:
                break
        out[key] = found
    if out["products"] is None:
        raise UserInputError(f"no items_shuffle_1000.json or items_shuffle.json in {d}")
    return out


def parse_pricing(pricing: Any) -> tuple[list[float], str]:
    """``"$10.99 - $20.99"`` -> ``([10.99, 20.99], "$10.99 to $20.99")``; none -> 100 dollars."""
    if isinstance(pricing, (list, tuple)) and pricing:
        values = [float(x) for x in pricing][:2]
    elif isinstance(pricing, (int, float)):
        values = [float(pricing)]
    elif isinstance(pricing, str) and "$" in pricing:
        values = []
        for part in pricing.split("$")[1:]:
            digits = re.sub(r"[^\d.]", "", part)
            try:
                values.append(float(digits))
            except ValueError:
                continue
        values = values[:2]
    else:
        values = []
    if not values:
        return [100.0], "$100.0"
    if len(values) == 1:
        return values, f"${values[0]}"
    return values, f"${values[0]} to ${values[1]}"


def process_product(
    raw: Mapping[str, Any],
    attributes: Mapping[str, Any] | None = None,
    reviews: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One raw product in WebShop's processed form (``Title``, ``options``, ``Attributes``, ...)."""
    asin = str(raw["asin"])
    p = dict(raw)
    p["category"] = raw.get("category", "")
    p["query"] = str(raw.get("query", "")).lower().strip()
    p["product_category"] = raw.get("product_category", "")
    p["name"] = raw.get("name", "")
    p["Title"] = raw.get("name", "")
    p["Description"] = raw.get("full_description") or ""
    small = raw.get("small_description")
    p["BulletPoints"] = list(small) if isinstance(small, list) else [small or ""]
    p["pricing"], p["Price"] = parse_pricing(raw.get("pricing"))
    options: dict[str, list[str]] = {}
    for name, contents in (raw.get("customization_options") or {}).items():
        if not contents:
            continue
        values = []
        for c in contents:
            value = c.get("value") if isinstance(c, Mapping) else c
            values.append(str(value).strip().replace("/", " | ").lower())
        options[str(name).lower()] = values
    p["options"] = options
    ins = (attributes or {}).get(asin) or {}
    p["Attributes"] = list(ins.get("attributes") or ["DUMMY_ATTR"])
    p["instruction_text"] = ins.get("instruction")
    p["instruction_attributes"] = ins.get("instruction_attributes")
    rev = (reviews or {}).get(asin) or {}
    out_reviews = []
    for r in rev.get("reviews") or []:
        out_reviews.append(
            {
                "title": r.get("title", ""),
                "score": r.get("score", r.get("stars", "")),
                "body": r.get("body", r.get("review", "")),
            }
        )
    p["Reviews"] = out_reviews
    p["Rating"] = rev.get("average_rating", raw.get("average_rating", "N.A."))
    return p


def generate_prices(products: Sequence[Mapping[str, Any]], rng: random.Random) -> dict[str, float]:
    """One price per product: its single price, or uniform in its price range (seeded)."""
    prices = {}
    for p in products:
        pricing = p["pricing"]
        if len(pricing) == 1:
            prices[p["asin"]] = float(pricing[0])
        else:
            prices[p["asin"]] = rng.uniform(pricing[0], pricing[1])
    return prices


def _price_bound(price: float, rng: random.Random) -> tuple[float, str]:
    candidates = [x for x in PRICE_RANGE if x > price][:4]
    if len(candidates) >= 2:
        _, upper = sorted(rng.sample(candidates, 2))
        return upper, f", and price lower than {upper:.2f} dollars"
    return 1000000.0, ""


def human_goals(
    products: Sequence[Mapping[str, Any]],
    human: Mapping[str, Any],
    prices: Mapping[str, float],
    rng: random.Random,
) -> list[dict[str, Any]]:
    """Goals from ``items_human_ins.json`` in catalogue order (as WebShop's ``get_human_goals``)."""
    goals = []
    for p in products:
        for ins in human.get(p["asin"]) or []:
            attrs = list(ins.get("instruction_attributes") or [])
            if not attrs:
                continue
            upper, price_text = _price_bound(prices[p["asin"]], rng)
            goals.append(
                {
                    "asin": p["asin"],
                    "category": p["category"],
                    "query": p["query"],
                    "name": p["name"],
                    "product_category": p["product_category"],
                    "instruction_text": str(ins.get("instruction", "")).strip().strip(".")
                    + price_text,
                    "attributes": attrs,
                    "price_upper": upper,
                    "goal_options": list(ins.get("instruction_options") or []),
                    "weight": 1,
                }
            )
    return goals


def synthetic_goals(
    products: Sequence[Mapping[str, Any]], prices: Mapping[str, float], rng: random.Random
) -> list[dict[str, Any]]:
    """Goals from ``items_ins_v2`` instructions, one per option combination (``get_synthetic_goals``)."""
    goals = []
    for p in products:
        text = p.get("instruction_text")
        attrs = p.get("instruction_attributes")
        if not text or not attrs:
            continue
        upper, price_text = _price_bound(prices[p["asin"]], rng)
        names = sorted(p["options"])
        for combo in itertools.product(*(p["options"][n] for n in names)):
            goal_options = dict(zip(names, combo, strict=True))
            opt_text = ", and ".join(f"{k}: {v}" for k, v in goal_options.items())
            opt_text = f" with {opt_text}" if opt_text else ""
            goals.append(
                {
                    "asin": p["asin"],
                    "category": p["category"],
                    "query": p["query"],
                    "name": p["name"],
                    "product_category": p["product_category"],
                    "instruction_text": f"{text}{opt_text}{price_text}",
                    "attributes": list(attrs),
                    "price_upper": upper,
                    "goal_options": goal_options,
                    "weight": 1,
                }
            )
    return goals


@dataclass
class WebShopData:
    """A loaded catalogue: processed products, seeded prices, shuffled goals and split ranges."""

    products: list[dict[str, Any]]
    prices: dict[str, float]
    goals: list[dict[str, Any]]
    splits: dict[str, tuple[int, int | None]] = field(default_factory=lambda: dict(BASELINE_SPLITS))
    source: str = ""

    def __post_init__(self) -> None:
        self.by_asin = {p["asin"]: p for p in self.products}

    def split_indices(self, split: str) -> list[int]:
        """Goal indices of ``split``; an unknown split is a UserInputError."""
        if split not in self.splits:
            raise UserInputError(
                f"unknown WebShop split {split!r}; this data has: {', '.join(self.splits)}"
            )
        lo, hi = self.splits[split]
        hi = len(self.goals) if hi is None else min(hi, len(self.goals))
        return list(range(min(lo, len(self.goals)), hi))


def load_webshop(
    products_path: str | Path,
    attributes_path: str | Path | None = None,
    human_path: str | Path | None = None,
    reviews_path: str | Path | None = None,
    *,
    goals: str = "human",
    num_products: int | None = None,
    seed: int = 0,
    splits: Mapping[str, Sequence[int | None]] | None = None,
) -> WebShopData:
    """Load WebShop files into a :class:`WebShopData` (see the module docstring).

    ``goals``: ``"human"`` (``items_human_ins.json``, the usual benchmark) or ``"synthetic"``
    (``items_ins_v2`` instructions). ``num_products`` keeps the first N products (the files are
    already shuffled), as WebShop does. ``seed`` seeds price generation.
    """
    if goals not in ("human", "synthetic"):
        raise UserInputError(f"goals must be 'human' or 'synthetic', not {goals!r}")
    raw_products = read_json(products_path)
    if not isinstance(raw_products, list):
        raise UserInputError(f"{products_path}: expected a list of products")
    attributes = read_json(attributes_path) if attributes_path else {}
    reviews_raw = read_json(reviews_path) if reviews_path else []
    reviews = {str(r.get("asin")): r for r in reviews_raw} if isinstance(reviews_raw, list) else {}
    if num_products is not None:
        raw_products = raw_products[:num_products]
    products = []
    seen: set[str] = set()
    for raw in raw_products:
        try:
            asin = str(raw["asin"])
        except (KeyError, TypeError) as e:
            raise UserInputError(f"{products_path}: a product without 'asin': {raw!r:.80}") from e
        if asin == "nan" or len(asin) > 10 or asin in seen:
            continue
        seen.add(asin)
        products.append(process_product(raw, attributes, reviews))
    rng = random.Random(seed)
    prices = generate_prices(products, rng)
    if goals == "human":
        if human_path is None:
            raise UserInputError("human goals need items_human_ins.json")
        goal_list = human_goals(products, read_json(human_path), prices, rng)
    else:
        goal_list = synthetic_goals(products, prices, rng)
    random.Random(GOAL_SHUFFLE_SEED).shuffle(goal_list)
    split_map = dict(BASELINE_SPLITS)
    if splits is not None:
        split_map = {
            k: (int(v[0] or 0), None if v[1] is None else int(v[1])) for k, v in splits.items()
        }
    return WebShopData(products, prices, goal_list, split_map, source=str(products_path))


def load_directory(
    directory: str | Path, *, goals: str = "human", num_products: int | None = None, seed: int = 0
) -> WebShopData:
    """Load the WebShop files found in ``directory`` (and its ``splits.json`` when present)."""
    files = find_files(directory)
    splits_file = Path(directory) / "splits.json"
    splits = read_json(splits_file) if splits_file.exists() else None
    return load_webshop(
        files["products"],  # type: ignore[arg-type]
        files["attributes"],
        files["human"],
        files["reviews"],
        goals=goals,
        num_products=num_products,
        seed=seed,
        splits=splits,
    )


def load_shipped(seed: int = 0) -> WebShopData:
    """The shipped offline catalogue and goals (generated by ``agentq.envs.webshop.generate``)."""
    return load_directory(SHIPPED_DIR, seed=seed)


__all__ = [
    "BASELINE_SPLITS",
    "SHIPPED_DIR",
    "WebShopData",
    "find_files",
    "generate_prices",
    "human_goals",
    "load_directory",
    "load_shipped",
    "load_webshop",
    "parse_pricing",
    "process_product",
    "read_json",
    "synthetic_goals",
]
