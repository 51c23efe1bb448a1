"""Generate the shipped offline world of the tool-use environment.

    python -m agentq.envs.tooluse.generate [--out DIR] [--seed 0]

Writes ``wiki.jsonl`` (encyclopedia articles about an invented world: countries, cities,
people, companies, mountains, rivers), ``weather.json`` (daily weather of the invented cities
for 2024), ``stocks.json`` (daily prices of the invented companies on 2024's trading days) and
``tasks.jsonl`` (questions with checked answers, single- and multi-tool, with fixed splits).
Everything is synthetic and seeded, so the same seed writes the same files; the world is
invented so that no model can answer from memory and every answer needs the tools.

Each task's answer is computed by running the tools themselves on the task's reference calls
(``calls``), so the shipped answers are exactly what the tools return.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import random
from pathlib import Path
from typing import Any

YEAR = 2024
N_TEST = 80
"""Tasks per template are split so that about this many are in ``test``; the rest ``train``."""

_ONSETS = [
    "b",
    "br",
    "c",
    "d",
    "dr",
    "f",
    "g",
    "gr",
    "h",
    "k",
    "l",
    "m",
    "n",
    "p",
    "r",
    "s",
    "st",
    "t",
    "tr",
    "v",
    "z",
    "th",
    "sh",
    "qu",
]
_VOWELS = ["a", "e", "i", "o", "u", "ae", "ia", "ou", "y"]
_CODAS = ["", "n", "r", "l", "s", "th", "nd", "rk", "m", "x", "v"]
_CITY_SUFFIX = [
    "ora",
    "heim",
    "ford",
    "grad",
    "polis",
    "mouth",
    "vale",
    "burg",
    "stad",
    "ton",
    "ia",
    "wick",
]


class _Names:
    """Unique invented names from syllables."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()

    def word(self, syllables: int = 2, suffix: list[str] | None = None) -> str:
        for _ in range(1000):
            w = "".join(
                self.rng.choice(_ONSETS) + self.rng.choice(_VOWELS) + self.rng.choice(_CODAS)
                for _ in range(syllables)
            )
            if suffix:
                w += self.rng.choice(suffix)
            w = w.capitalize()
            if w.lower() not in self.used and 4 <= len(w) <= 14:
                self.used.add(w.lower())
                return w
        raise RuntimeError("name space exhausted")


_CONDITIONS_DRY = ["sunny", "clear", "partly cloudy", "cloudy", "overcast"]
_PROFESSIONS = [
    "composer",
    "physicist",
    "novelist",
    "painter",
    "engineer",
    "mathematician",
    "architect",
    "botanist",
    "explorer",
    "chemist",
]
_INDUSTRIES = [
    "shipbuilding",
    "software",
    "pharmaceuticals",
    "mining",
    "textiles",
    "aerospace",
    "food processing",
    "renewable energy",
    "telecommunications",
    "logistics",
]


def _dates(year: int) -> list[dt.date]:
    d = dt.date(year, 1, 1)
    out = []
    while d.year == year:
        out.append(d)
        d += dt.timedelta(days=1)
    return out


def build_world(seed: int = 0) -> dict[str, Any]:
    """The invented world: entities, articles, weather and stock tables."""
    rng = random.Random(seed)
    names = _Names(rng)
    countries: list[dict[str, Any]] = [
        {"name": names.word(2, ["ia", "land", "stan", "or"])} for _ in range(10)
    ]
    for c in countries:
        c["capital"] = None
        c["currency"] = names.word(1, ["o", "a"]).lower()
        c["independence"] = rng.randint(1650, 1990)
    cities: list[dict[str, Any]] = []
    for _ in range(36):
        country = rng.choice(countries)
        city: dict[str, Any] = {
            "name": names.word(rng.choice([1, 2]), _CITY_SUFFIX),
            "country": country["name"],
            "founded": rng.randint(700, 1900),
            "population": rng.randint(20_000, 4_000_000),
            "area": round(rng.uniform(30, 900), 1),
            "elevation": rng.randint(2, 1800),
            "climate_base": rng.uniform(-2, 20),
            "wetness": rng.uniform(0.15, 0.6),
        }
        if country["capital"] is None:
            country["capital"] = city["name"]
        cities.append(city)
    for c in countries:
        if c["capital"] is None:
            c["capital"] = rng.choice(cities)["name"]
    first = [names.word(rng.choice([1, 2])) for _ in range(70)]
    last = [names.word(2) for _ in range(70)]
    people: list[dict[str, Any]] = []
    for i in range(60):
        born = dt.date(rng.randint(1850, 1985), rng.randint(1, 12), rng.randint(1, 28))
        people.append(
            {
                "name": f"{first[i]} {last[i]}",
                "born": born.isoformat(),
                "birthplace": rng.choice(cities)["name"],
                "profession": rng.choice(_PROFESSIONS),
                "works": rng.randint(3, 240),
            }
        )
    companies: list[dict[str, Any]] = []
    used_tickers: set[str] = set()
    for _ in range(20):
        name = (
            names.word(2, ["corp", "tek", "ex", "on", "a"])
            + " "
            + rng.choice(["Industries", "Group", "Systems", "Holdings", "Labs"])
        )
        ticker = "".join(ch for ch in name.upper() if ch.isalpha())[:3] + rng.choice("AEKLMNQRSTXZ")
        while ticker in used_tickers:
            ticker = ticker[:3] + rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
        used_tickers.add(ticker)
        companies.append(
            {
                "name": name,
                "ticker": ticker,
                "founder": rng.choice(people)["name"],
                "founded": rng.randint(1890, 2015),
                "hq": rng.choice(cities[:24])["name"],
                "industry": rng.choice(_INDUSTRIES),
                "employees": rng.randint(150, 90_000),
                "price0": rng.uniform(8, 400),
                "vol": rng.uniform(0.008, 0.03),
            }
        )
    mountains: list[dict[str, Any]] = [
        {
            "name": "Mount " + names.word(2),
            "height": rng.randint(900, 8200),
            "first_ascent": rng.randint(1780, 1999),
            "country": rng.choice(countries)["name"],
        }
        for _ in range(20)
    ]
    rivers: list[dict[str, Any]] = [
        {
            "name": names.word(2) + " River",
            "length": rng.randint(40, 4200),
            "mouth": rng.choice(cities)["name"],
            "country": rng.choice(countries)["name"],
        }
        for _ in range(20)
    ]

    docs: list[dict[str, str]] = []
    for c in countries:
        n_cities = sum(1 for x in cities if x["country"] == c["name"])
        docs.append(
            {
                "title": c["name"],
                "text": (
                    f"{c['name']} is a country whose capital is {c['capital']}. It became independent in "
                    f"{c['independence']}. Its currency is the {c['currency']}. The encyclopedia lists "
                    f"{n_cities} of its cities."
                ),
            }
        )
    for x in cities:
        docs.append(
            {
                "title": x["name"],
                "text": (
                    f"{x['name']} is a city in {x['country']}. It was founded in {x['founded']}. "
                    f"It has a population of {x['population']:,} and an area of {x['area']} square "
                    f"kilometres, at an elevation of {x['elevation']} metres above sea level."
                ),
            }
        )
    for p in people:
        born = dt.date.fromisoformat(p["born"])
        docs.append(
            {
                "title": p["name"],
                "text": (
                    f"{p['name']} (born {born.strftime('%B')} {born.day}, {born.year}) is a {p['profession']} "
                    f"born in {p['birthplace']}. Over a long career {p['name'].split()[0]} produced "
                    f"{p['works']} published works."
                ),
            }
        )
    for co in companies:
        docs.append(
            {
                "title": co["name"],
                "text": (
                    f"{co['name']} is a {co['industry']} company founded in {co['founded']} by "
                    f"{co['founder']}. It is headquartered in {co['hq']} and employs {co['employees']:,} "
                    f"people. Its shares trade under the ticker symbol {co['ticker']}."
                ),
            }
        )
    for m in mountains:
        docs.append(
            {
                "title": m["name"],
                "text": (
                    f"{m['name']} is a mountain in {m['country']} with a height of {m['height']} metres. "
                    f"It was first climbed in {m['first_ascent']}."
                ),
            }
        )
    for r in rivers:
        docs.append(
            {
                "title": r["name"],
                "text": (
                    f"The {r['name']} is a river in {r['country']}, {r['length']} kilometres long. It "
                    f"flows into the sea at {r['mouth']}."
                ),
            }
        )

    weather_cities = cities[:24]
    weather: dict[str, dict[str, list[Any]]] = {}
    for x in weather_cities:
        rows: dict[str, list[Any]] = {}
        for d in _dates(YEAR):
            season = -math.cos(2 * math.pi * (d.timetuple().tm_yday - 15) / 366)
            mean = x["climate_base"] + 11 * season - x["elevation"] / 300 + rng.gauss(0, 3)
            spread = rng.uniform(4, 12)
            high, low = round(mean + spread / 2, 1), round(mean - spread / 2, 1)
            wet = rng.random() < x["wetness"]
            precip = round(rng.expovariate(1 / 6), 1) if wet else 0.0
            if wet and precip > 0:
                cond = "snow" if high < 1 else ("heavy rain" if precip > 15 else "rain")
            else:
                precip = 0.0
                cond = rng.choice(_CONDITIONS_DRY)
            rows[d.isoformat()] = [high, low, precip, cond]
        weather[x["name"]] = rows

    prices: dict[str, dict[str, list[Any]]] = {}
    trading = [d for d in _dates(YEAR) if d.weekday() < 5]
    for co in companies:
        rows = {}
        price = co["price0"]
        for d in trading:
            open_ = price * math.exp(rng.gauss(0, co["vol"] / 3))
            close = open_ * math.exp(rng.gauss(0.0003, co["vol"]))
            high = max(open_, close) * (1 + abs(rng.gauss(0, co["vol"] / 2)))
            low = min(open_, close) * (1 - abs(rng.gauss(0, co["vol"] / 2)))
            vol = int(rng.lognormvariate(13, 0.6))
            rows[d.isoformat()] = [
                round(open_, 2),
                round(high, 2),
                round(low, 2),
                round(close, 2),
                vol,
            ]
            price = close
        prices[co["ticker"]] = rows

    return {
        "countries": countries,
        "cities": cities,
        "weather_cities": [x["name"] for x in weather_cities],
        "people": people,
        "companies": companies,
        "mountains": mountains,
        "rivers": rivers,
        "docs": docs,
        "weather": {"fields": ["high_c", "low_c", "precip_mm", "condition"], "cities": weather},
        "stocks": {
            "fields": ["open", "high", "low", "close", "volume"],
            "companies": {co["ticker"]: co["name"] for co in companies},
            "prices": prices,
        },
    }


def write_world(world: dict[str, Any], out: Path) -> None:
    """Write ``wiki.jsonl``, ``weather.json`` and ``stocks.json`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "wiki.jsonl", "w", encoding="utf-8") as f:
        for d in world["docs"]:
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
    with open(out / "weather.json", "w", encoding="utf-8") as f:
        json.dump(world["weather"], f, separators=(",", ":"))
    with open(out / "stocks.json", "w", encoding="utf-8") as f:
        json.dump(world["stocks"], f, separators=(",", ":"))
