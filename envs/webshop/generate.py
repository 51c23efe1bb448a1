"""Generate the shipped offline WebShop data (in the official file formats) with a fixed seed.

Run ``python -m agentq.envs.webshop.generate [--out DIR] [--products 600] [--goals 450]
[--test 150] [--seed 0]``. It writes ``items_shuffle.json.gz`` (products),
``items_ins_v2.json.gz`` (product attributes), ``items_human_ins.json.gz`` (goals),
``reviews.json.gz`` and ``splits.json`` (goals 0 to ``test``-1 are the test split, the rest
train). The catalogue has 24 kinds of product in 6 categories; each product has 3 attributes,
two option types with 3 or 4 values each, and a price. A goal names 2 of its target's attributes
and one value of each of its option types, so the agent must search, pick a product and choose
two options before ``buy now``. A goal is kept only when searching its instruction (without the
price) shows the target on the first results page, so the scripted expert needs 5 steps.

:func:`generate_catalogue` alone (no goals) also makes large catalogues for the benchmark.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agentq.envs.webshop.reward import FUZZY_THRESHOLD, normalize_color, occurs
from rapidfuzz import fuzz

COLORS = (
    "black",
    "white",
    "red",
    "royal blue",
    "green",
    "heather grey",
    "pink",
    "yellow",
    "purple",
    "brown",
    "beige",
    "orange",
    "navy",
    "teal",
)
SIZES = ("small", "medium", "large", "x-large", "xx-large")

# kind: (category, product_category, query, noun, Title noun, attributes, {option type: values}, price range)
KINDS: dict[
    str, tuple[str, str, str, str, tuple[str, ...], dict[str, Sequence[str]], tuple[float, float]]
] = {
    "t-shirt": (
        "fashion",
        "Clothing, Shoes & Jewelry › Men › Clothing › Shirts › T-Shirts",
        "t-shirt",
        "T-Shirt",
        (
            "cotton",
            "short sleeve",
            "long sleeve",
            "crew neck",
            "v-neck",
            "slim fit",
            "machine wash",
            "moisture wicking",
        ),
        {"color": COLORS, "size": SIZES},
        (8, 35),
    ),
    "hoodie": (
        "fashion",
        "Clothing, Shoes & Jewelry › Men › Clothing › Fashion Hoodies & Sweatshirts",
        "hoodie",
        "Hoodie",
        (
            "fleece lined",
            "pullover",
            "zip up",
            "cotton blend",
            "machine wash",
            "kangaroo pocket",
            "drawstring",
            "relaxed fit",
        ),
        {"color": COLORS, "size": SIZES},
        (20, 60),
    ),
    "socks": (
        "fashion",
        "Clothing, Shoes & Jewelry › Women › Clothing › Socks & Hosiery › Athletic Socks",
        "athletic socks",
        "Athletic Socks",
        (
            "cushioned",
            "ankle",
            "crew length",
            "moisture wicking",
            "breathable",
            "arch support",
            "merino wool",
            "no show",
        ),
        {"color": COLORS, "size": ("small", "medium", "large")},
        (6, 25),
    ),
    "running shoes": (
        "fashion",
        "Clothing, Shoes & Jewelry › Women › Shoes › Athletic › Running",
        "running shoes",
        "Running Shoes",
        (
            "lightweight",
            "breathable mesh",
            "non slip",
            "memory foam",
            "arch support",
            "slip on",
            "rubber sole",
            "wide toe box",
        ),
        {"color": COLORS, "size": ("6", "7", "8", "9", "10", "11", "12")},
        (30, 120),
    ),
    "leggings": (
        "fashion",
        "Clothing, Shoes & Jewelry › Women › Clothing › Active › Leggings",
        "leggings",
        "Leggings",
        (
            "high waist",
            "tummy control",
            "squat proof",
            "side pockets",
            "four way stretch",
            "quick dry",
            "full length",
            "capri length",
        ),
        {"color": COLORS, "size": SIZES},
        (12, 45),
    ),
    "shampoo": (
        "beauty",
        "Beauty & Personal Care › Hair Care › Shampoo & Conditioner › Shampoos",
        "shampoo",
        "Shampoo",
        (
            "sulfate free",
            "paraben free",
            "for dry hair",
            "argan oil",
            "natural ingredients",
            "color safe",
            "anti dandruff",
            "cruelty free",
        ),
        {
            "scent": (
                "lavender",
                "coconut",
                "peppermint",
                "citrus",
                "unscented",
                "vanilla",
                "eucalyptus",
            ),
            "size": ("8 fl oz", "16.9 fl oz", "33.8 fl oz"),
        },
        (6, 30),
    ),
    "moisturizer": (
        "beauty",
        "Beauty & Personal Care › Skin Care › Face › Creams & Moisturizers",
        "face moisturizer",
        "Face Moisturizer",
        (
            "hyaluronic acid",
            "fragrance free",
            "spf 30",
            "non greasy",
            "for sensitive skin",
            "vitamin c",
            "oil free",
            "anti aging",
        ),
        {
            "scent": ("unscented", "rose", "cucumber", "aloe", "green tea"),
            "size": ("1 oz", "1.7 oz", "2.5 oz"),
        },
        (9, 45),
    ),
    "lipstick": (
        "beauty",
        "Beauty & Personal Care › Makeup › Lips › Lipstick",
        "lipstick",
        "Lipstick",
        (
            "matte",
            "long lasting",
            "waterproof",
            "moisturizing",
            "vegan",
            "cruelty free",
            "non drying",
            "high pigment",
        ),
        {
            "color": ("red", "pink", "coral", "burgundy", "nude", "plum", "brown", "mauve"),
            "style": ("single", "twin pack", "gift set"),
        },
        (5, 28),
    ),
    "candle": (
        "beauty",
        "Home & Kitchen › Home Décor Products › Candles & Holders › Candles",
        "scented candle",
        "Scented Candle",
        (
            "soy wax",
            "long burning",
            "lead free wick",
            "glass jar",
            "aromatherapy",
            "two wick",
            "hand poured",
            "gift ready",
        ),
        {
            "scent": (
                "lavender",
                "vanilla",
                "eucalyptus",
                "sandalwood",
                "citrus",
                "rose",
                "cinnamon",
            ),
            "size": ("small", "medium", "large"),
        },
        (10, 40),
    ),
    "phone case": (
        "electronics",
        "Cell Phones & Accessories › Cases, Holsters & Sleeves › Basic Cases",
        "phone case",
        "Phone Case",
        (
            "shockproof",
            "slim",
            "wireless charging compatible",
            "kickstand",
            "card holder",
            "clear back",
            "raised edges",
            "drop protection",
        ),
        {"color": COLORS, "model": ("iphone 15", "galaxy s24", "pixel 8", "moto g", "oneplus 12")},
        (7, 30),
    ),
    "usb cable": (
        "electronics",
        "Electronics › Computers & Accessories › Cables › USB Cables",
        "usb c cable",
        "USB C Cable",
        (
            "fast charging",
            "braided nylon",
            "usb c to usb c",
            "100w",
            "data transfer",
            "tangle free",
            "right angle",
            "durable",
        ),
        {"color": COLORS, "length": ("3 ft", "6 ft", "10 ft")},
        (6, 25),
    ),
    "earbuds": (
        "electronics",
        "Electronics › Headphones, Earbuds & Accessories › Earbuds",
        "wireless earbuds",
        "Wireless Earbuds",
        (
            "noise cancelling",
            "bluetooth 5.3",
            "waterproof",
            "long battery life",
            "touch control",
            "charging case",
            "built in microphone",
            "deep bass",
        ),
        {"color": COLORS, "style": ("standard", "ear hooks", "sport fit")},
        (18, 90),
    ),
    "laptop sleeve": (
        "electronics",
        "Electronics › Computers & Accessories › Laptop Accessories › Bags, Cases & Sleeves › Sleeves",
        "laptop sleeve",
        "Laptop Sleeve",
        (
            "water resistant",
            "shockproof",
            "front pocket",
            "slim",
            "felt lining",
            "zipper",
            "with handle",
            "eco friendly",
        ),
        {"color": COLORS, "size": ("13 inch", "14 inch", "15.6 inch", "17 inch")},
        (12, 40),
    ),
    "keyboard": (
        "electronics",
        "Electronics › Computers & Accessories › Computer Accessories & Peripherals › Keyboards",
        "wireless keyboard",
        "Wireless Keyboard",
        (
            "bluetooth",
            "rechargeable",
            "quiet keys",
            "backlit",
            "ergonomic",
            "multi device",
            "compact",
            "numeric keypad",
        ),
        {"color": COLORS, "layout": ("full size", "tenkeyless", "sixty percent")},
        (20, 80),
    ),
    "bath towel": (
        "home",
        "Home & Kitchen › Bath › Towels › Bath Towels",
        "bath towel",
        "Bath Towel",
        (
            "100% cotton",
            "quick dry",
            "highly absorbent",
            "soft",
            "machine washable",
            "oversized",
            "lightweight",
            "plush",
        ),
        {"color": COLORS, "size": ("hand towel", "bath towel", "bath sheet")},
        (10, 45),
    ),
    "sheet set": (
        "home",
        "Home & Kitchen › Bedding › Sheets & Pillowcases › Sheet & Pillowcase Sets",
        "bed sheet set",
        "Bed Sheet Set",
        (
            "deep pocket",
            "microfiber",
            "wrinkle free",
            "breathable",
            "cooling",
            "400 thread count",
            "hypoallergenic",
            "machine washable",
        ),
        {"color": COLORS, "size": ("twin", "full", "queen", "king")},
        (20, 90),
    ),
    "mug": (
        "home",
        "Home & Kitchen › Kitchen & Dining › Dining & Entertaining › Cups, Mugs & Saucers › Mugs",
        "coffee mug",
        "Coffee Mug",
        (
            "ceramic",
            "dishwasher safe",
            "microwave safe",
            "insulated",
            "with lid",
            "stainless steel",
            "large handle",
            "double wall",
        ),
        {"color": COLORS, "capacity": ("12 oz", "16 oz", "20 oz")},
        (8, 30),
    ),
    "pillow cover": (
        "home",
        "Home & Kitchen › Home Décor Products › Decorative Pillows, Inserts & Covers › Throw Pillow Covers",
        "throw pillow cover",
        "Throw Pillow Cover",
        (
            "velvet",
            "linen",
            "set of 2",
            "hidden zipper",
            "machine washable",
            "farmhouse",
            "boho",
            "double sided",
        ),
        {"color": COLORS, "size": ("16x16 inch", "18x18 inch", "20x20 inch")},
        (9, 35),
    ),
    "green tea": (
        "grocery",
        "Grocery & Gourmet Food › Beverages › Coffee, Tea & Cocoa › Tea › Green",
        "green tea",
        "Green Tea Bags",
        (
            "organic",
            "decaf",
            "non gmo",
            "kosher",
            "individually wrapped",
            "loose leaf",
            "gluten free",
            "high antioxidant",
        ),
        {
            "flavor": ("jasmine", "mint", "lemon", "matcha", "peach", "ginger"),
            "size": ("20 count", "50 count", "100 count"),
        },
        (5, 25),
    ),
    "coffee": (
        "grocery",
        "Grocery & Gourmet Food › Beverages › Coffee, Tea & Cocoa › Coffee › Whole Coffee Beans",
        "whole bean coffee",
        "Whole Bean Coffee",
        (
            "organic",
            "fair trade",
            "single origin",
            "dark roast",
            "medium roast",
            "low acid",
            "arabica",
            "kosher",
        ),
        {
            "flavor": ("original", "hazelnut", "vanilla", "caramel", "mocha"),
            "size": ("12 ounce", "2 pound", "5 pound"),
        },
        (9, 60),
    ),
    "protein bar": (
        "grocery",
        "Grocery & Gourmet Food › Snack Foods › Bars › Protein Bars",
        "protein bars",
        "Protein Bars",
        (
            "gluten free",
            "low sugar",
            "high protein",
            "keto friendly",
            "non gmo",
            "vegan",
            "plant based",
            "no artificial sweeteners",
        ),
        {
            "flavor": ("chocolate", "peanut butter", "cookie dough", "mixed berry", "almond"),
            "size": ("12 count", "24 count"),
        },
        (12, 45),
    ),
    "mixed nuts": (
        "grocery",
        "Grocery & Gourmet Food › Snack Foods › Nuts & Seeds › Mixed Nuts",
        "mixed nuts",
        "Mixed Nuts",
        (
            "unsalted",
            "roasted",
            "resealable bag",
            "kosher",
            "gluten free",
            "non gmo",
            "raw",
            "lightly salted",
        ),
        {
            "flavor": ("honey roasted", "sea salt", "original", "smoked", "spicy"),
            "size": ("1 pound", "2 pound", "3 pound"),
        },
        (8, 35),
    ),
    "yoga mat": (
        "sports",
        "Sports & Outdoors › Exercise & Fitness › Yoga › Yoga Mats",
        "yoga mat",
        "Yoga Mat",
        (
            "non slip",
            "extra thick",
            "eco friendly",
            "carrying strap",
            "lightweight",
            "sweat resistant",
            "foldable",
            "alignment lines",
        ),
        {"color": COLORS, "thickness": ("4mm", "6mm", "10mm")},
        (15, 60),
    ),
    "water bottle": (
        "sports",
        "Sports & Outdoors › Outdoor Recreation › Accessories › Water Bottles",
        "water bottle",
        "Water Bottle",
        (
            "bpa free",
            "leak proof",
            "insulated",
            "stainless steel",
            "with straw",
            "wide mouth",
            "dishwasher safe",
            "keeps drinks cold",
        ),
        {"color": COLORS, "capacity": ("18 oz", "24 oz", "32 oz", "40 oz")},
        (10, 45),
    ),
    "backpack": (
        "sports",
        "Sports & Outdoors › Outdoor Recreation › Camping & Hiking › Backpacks & Bags › Hiking Daypacks",
        "hiking backpack",
        "Hiking Backpack",
        (
            "water resistant",
            "lightweight",
            "laptop compartment",
            "padded straps",
            "usb charging port",
            "anti theft",
            "large capacity",
            "packable",
        ),
        {"color": COLORS, "size": ("20l", "30l", "40l")},
        (20, 80),
    ),
}

BRAND_A = (
    "north",
    "blue",
    "bright",
    "stone",
    "silver",
    "oak",
    "river",
    "sun",
    "iron",
    "cloud",
    "maple",
    "pine",
    "swift",
    "lumen",
    "terra",
    "nova",
)
BRAND_B = (
    "peak",
    "line",
    "field",
    "craft",
    "works",
    "wave",
    "ridge",
    "nest",
    "lane",
    "point",
    "vale",
    "forge",
)
EXTRAS = (
    "Designed for everyday use.",
    "Backed by a one year warranty.",
    "A thoughtful gift for friends and family.",
    "Ships in recyclable packaging.",
    "Made to last through daily use.",
)
REVIEW_TITLES = (
    "Great buy",
    "Works as described",
    "Happy with it",
    "Good value",
    "Would buy again",
    "Decent",
)
REVIEW_BODIES = (
    "Exactly what I wanted.",
    "Quality is better than expected.",
    "Arrived quickly and well packed.",
    "Does the job, nothing fancy.",
    "My second one, still happy.",
)
TEMPLATES = (
    "i need {art}{noun} that is {a1} and {a2}, in {opts}",
    "i am looking for {art_a1}{a1} {noun} with {a2}, in {opts}",
    "find me {art}{noun}, {a1} and {a2}, in {opts}",
    "i want to buy {art_a1}{a1} and {a2} {noun} in {opts}",
)


_CONSONANTS = "bdfghklmnprstvz"
_VOWELS = "aeiou"


def _asin(rng: random.Random, used: set[str]) -> str:
    """A new 10-character ASIN ``B0`` + four consonant-vowel syllables (few tokens for an LM)."""
    while True:
        asin = (
            "B0" + "".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(4)).upper()
        )
        if asin not in used:
            used.add(asin)
            return asin


def _distinct_values(values: Sequence[str], k: int, rng: random.Random) -> list[str]:
    """Up to ``k`` values that do not fuzzy-match each other (after colour normalisation)."""
    pool = list(values)
    rng.shuffle(pool)
    out: list[str] = []
    for v in pool:
        vn = normalize_color(v)
        if all(
            normalize_color(o) != vn
            and fuzz.token_set_ratio(normalize_color(o), vn) <= FUZZY_THRESHOLD
            for o in out
        ):
            out.append(v)
        if len(out) == k:
            break
    return out


def _product(
    kind: str, rng: random.Random, used: set[str]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(raw product, items_ins_v2 entry, reviews entry) of one new product of ``kind``."""
    category, path, query, title_noun, attrs_pool, option_pool, (lo, hi) = KINDS[kind]
    asin = _asin(rng, used)
    brand = (rng.choice(BRAND_A) + rng.choice(BRAND_B)).capitalize()
    attrs = rng.sample(list(attrs_pool), 3)
    title_attr = " ".join(w.capitalize() for w in attrs[0].split())
    name = f"{brand} {title_attr} {title_noun}"
    description = (
        f"This {brand} {query} is {attrs[0]}, {attrs[1]} and {attrs[2]}. {rng.choice(EXTRAS)}"
    )
    bullets = [f"{attrs[1].capitalize()} and {attrs[2]}", rng.choice(EXTRAS)]
    options = {}
    text = " ".join([name, description, *bullets])
    for kind_name, values in option_pool.items():
        # A value that occurs in the product's own text would count as matched whatever is chosen.
        allowed = [
            v for v in values if not occurs(normalize_color(v), text) and not occurs(v, text)
        ]
        options[kind_name] = _distinct_values(allowed, rng.choice((3, 4)), rng)
    price = round(rng.uniform(lo, hi), 2)
    raw = {
        "asin": asin,
        "name": name,
        "full_description": description,
        "small_description": bullets,
        "pricing": f"${price:.2f}",
        "customization_options": {
            k: [{"value": v, "image": None} for v in vs] for k, vs in options.items()
        },
        "category": category,
        "query": query,
        "product_category": path,
        # upstream's loader reads images[0] (MainImage); generated products have no picture,
        # so the one entry is an empty URL
        "images": [""],
    }
    ins = {"attributes": attrs, "instruction": None, "instruction_attributes": None}
    rating = round(rng.uniform(3.5, 5.0), 1)
    reviews = {
        "asin": asin,
        "average_rating": rating,
        "reviews": [
            {
                "title": rng.choice(REVIEW_TITLES),
                "score": rng.randint(3, 5),
                "body": rng.choice(REVIEW_BODIES),
            }
            for _ in range(2)
        ],
    }
    return raw, ins, reviews


def generate_catalogue(
    n_products: int, seed: int = 0
) -> tuple[list[dict[str, Any]], dict[str, Any], list[dict[str, Any]]]:
    """``n_products`` raw products (kinds in turn), their attributes and reviews (seeded)."""
    rng = random.Random(seed)
    used: set[str] = set()
    kinds = list(KINDS)
    products, attributes, reviews = [], {}, []
    for i in range(n_products):
        raw, ins, rev = _product(kinds[i % len(kinds)], rng, used)
        products.append(raw)
        attributes[raw["asin"]] = ins
        reviews.append(rev)
    rng.shuffle(products)
    return products, attributes, reviews


def _option_phrase(kind: str, value: str) -> str:
    if kind == "size":
        return f"size {value}"
    return f"{value} {kind}"


def _article(word: str, plural: bool) -> str:
    """``"a "``, ``"an "`` or ``""`` (plural) before ``word``."""
    if plural:
        return ""
    w = word.lower()
    vowel = w[:1] in ("a", "e", "i", "o") or (w[:1] == "u" and not w.startswith("us"))
    return "an " if vowel else "a "


def make_instruction(
    noun: str, attrs: Sequence[str], options: Sequence[tuple[str, str]], rng: random.Random
) -> str:
    """One instruction sentence (without the price part)."""
    opts = " and ".join(_option_phrase(k, v) for k, v in options)
    plural = noun.endswith("s")
    return rng.choice(TEMPLATES).format(
        noun=noun,
        a1=attrs[0],
        a2=attrs[1],
        opts=opts,
        art=_article(noun, plural),
        art_a1=_article(attrs[0], plural),
    )


def generate(
    out: str | Path,
    n_products: int = 600,
    n_goals: int = 450,
    n_test: int = 150,
    seed: int = 0,
) -> dict[str, int]:
    """Write the shipped data files to ``out``; returns counts (products, goals, test, train)."""
    from agentq.envs.webshop.loaders import load_webshop, process_product
    from agentq.envs.webshop.search import ProductSearch

    products, attributes, reviews = generate_catalogue(n_products, seed)
    processed = [process_product(p, attributes) for p in products]
    index = ProductSearch(processed)
    rng = random.Random(seed + 1)
    order = list(range(len(products)))
    rng.shuffle(order)
    human: dict[str, list[dict[str, Any]]] = {}
    kept = 0
    for i in order:
        if kept >= n_goals:
            break
        p = processed[i]
        goal_attrs = rng.sample(p["Attributes"], 2)
        goal_opts = [(k, rng.choice(vs)) for k, vs in p["options"].items()]
        text = make_instruction(p["query"], goal_attrs, goal_opts, rng)
        if p["asin"] not in index.search(text)[:10]:
            continue
        human[p["asin"]] = [
            {
                "asin": p["asin"],
                "instruction": text,
                "instruction_attributes": goal_attrs,
                "instruction_options": [v for _, v in goal_opts],
                "attributes": goal_attrs,
                "options": [f"{k}: {v}" for k, v in goal_opts],
            }
        ]
        kept += 1
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    def dump(name: str, obj: Any) -> None:
        with gzip.GzipFile(out / name, "wb", mtime=0) as f:
            f.write(
                json.dumps(obj, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()
            )

    dump("items_shuffle.json.gz", products)
    dump("items_ins_v2.json.gz", attributes)
    dump("items_human_ins.json.gz", human)
    dump("reviews.json.gz", reviews)
    (out / "splits.json").write_text(
        json.dumps({"test": [0, n_test], "train": [n_test, None]}) + "\n"
    )
    data = load_webshop(
        out / "items_shuffle.json.gz", out / "items_ins_v2.json.gz", out / "items_human_ins.json.gz"
    )
    return {
        "products": len(products),
        "goals": len(data.goals),
        "test": n_test,
        "train": len(data.goals) - n_test,
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Command line entry: write the shipped data (defaults reproduce the shipped files)."""
    from agentq.envs.webshop.loaders import SHIPPED_DIR

    ap = argparse.ArgumentParser(
        prog="python -m agentq.envs.webshop.generate", description=__doc__.split("\n")[0]
    )
    ap.add_argument(
        "--out",
        default=str(SHIPPED_DIR),
        help="output directory (default: the shipped data folder)",
    )
    ap.add_argument("--products", type=int, default=600)
    ap.add_argument("--goals", type=int, default=450)
    ap.add_argument("--test", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.test >= args.goals:
        ap.error("--test must be smaller than --goals")
    counts = generate(args.out, args.products, args.goals, args.test, args.seed)
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
