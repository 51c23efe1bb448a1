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

import argparse
import datetime as dt
import json
import math
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentq.envs.tooluse.tools import (
    DATA_DIR,
    WEEKDAYS,
    CalendarTool,
    PythonInterpreter,
    StockTool,
    WeatherTool,
    WikiSearch,
    safe_eval,
)

YEAR = 2024

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
            high, low = (
                round(mean + spread / 2, 1) + 0.0,
                round(mean - spread / 2, 1) + 0.0,
            )  # no -0.0
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


# --------------------------------------------------------------------------------------------
# tasks
# --------------------------------------------------------------------------------------------
def _fmt_date(d: dt.date) -> str:
    return f"{d.strftime('%B')} {d.day}, {d.year}"


def _num(x: float, digits: int = 2) -> float | int:
    r = round(x, digits)
    return int(r) if float(r).is_integer() else r


def _call(tool: str, thought: str, **args: Any) -> dict[str, Any]:
    return {"tool": tool, "args": args, "thought": thought}


class _TaskMaker:
    """Builds the tasks of each template; answers come from the tools' own outputs."""

    def __init__(self, world: dict[str, Any], data_dir: Path, seed: int) -> None:
        self.w = world
        self.rng = random.Random(seed + 1)
        self.weather = WeatherTool(data_dir / "weather.json")
        self.stock = StockTool(data_dir / "stocks.json")
        self.wiki = WikiSearch(data_dir / "wiki.jsonl")
        self.calendar = CalendarTool()
        self.days = _dates(YEAR)
        self.trading = sorted({d for t in self.stock.prices.values() for d in t})
        self.city_by_name = {c["name"]: c for c in world["cities"]}
        self.person_by_name = {p["name"]: p for p in world["people"]}

    # helpers ----------------------------------------------------------------------------
    def date(self) -> dt.date:
        return self.rng.choice(self.days)

    def tdate(self) -> dt.date:
        return dt.date.fromisoformat(self.rng.choice(self.trading))

    def wcity(self) -> str:
        return self.rng.choice(self.w["weather_cities"])

    def ticker(self) -> str:
        return self.rng.choice(sorted(self.stock.prices))

    def calc(self, expression: str, thought: str) -> tuple[dict[str, Any], float | int]:
        return _call("calculator", thought, expression=expression), _num(
            float(safe_eval(expression))
        )

    def found(self, query: str, title: str) -> bool:
        return any(d["title"] == title for d in self.wiki.search(query, 2))

    # templates --------------------------------------------------------------------------
    def weather_high(self) -> tuple[str, list[dict[str, Any]], Any]:
        c, d = self.wcity(), self.date()
        r = self.weather.lookup(c, d.isoformat())
        q = f"What was the daily high temperature in {c} on {_fmt_date(d)}, in degrees Celsius?"
        return (
            q,
            [_call("weather", f"I need the weather in {c} on {d}.", city=c, date=d.isoformat())],
            r["high_c"],
        )

    def weather_diff(self) -> tuple[str, list[dict[str, Any]], Any]:
        a, b = self.rng.sample(self.w["weather_cities"], 2)
        d = self.date()
        ha, hb = (self.weather.lookup(x, d.isoformat())["high_c"] for x in (a, b))
        if abs(ha - hb) < 1.0:
            raise _Retry
        calc, ans = self.calc(f"{ha} - ({hb})", "Subtract the second high from the first.")
        q = (
            f"On {_fmt_date(d)}, how many degrees Celsius warmer was the daily high in {a} than in "
            f"{b}? Give a negative number if it was colder."
        )
        calls = [
            _call("weather", f"First the weather in {a}.", city=a, date=d.isoformat()),
            _call("weather", f"Now the weather in {b}.", city=b, date=d.isoformat()),
            calc,
        ]
        return q, calls, ans

    def weather_avg(self) -> tuple[str, list[dict[str, Any]], Any]:
        c = self.wcity()
        ds = sorted(self.rng.sample(self.days, 3))
        lows = [self.weather.lookup(c, d.isoformat())["low_c"] for d in ds]
        calc, ans = self.calc(
            f"({lows[0]} + ({lows[1]}) + ({lows[2]})) / 3", "Average the three lows."
        )
        if abs(ans) < 1.0:
            raise _Retry
        q = (
            f"What was the average daily low temperature in {c} over {_fmt_date(ds[0])}, "
            f"{_fmt_date(ds[1])} and {_fmt_date(ds[2])}, in degrees Celsius?"
        )
        calls = [
            _call("weather", f"Weather in {c} on {d}.", city=c, date=d.isoformat()) for d in ds
        ]
        return q, [*calls, calc], ans

    def weather_wet_list(self) -> tuple[str, list[dict[str, Any]], Any]:
        cs = self.rng.sample(self.w["weather_cities"], 4)
        d = self.date()
        wet = [c for c in cs if self.weather.lookup(c, d.isoformat())["precip_mm"] > 0]
        if not wet or len(wet) == len(cs):
            raise _Retry
        q = (
            f"Which of these cities had any precipitation (rain or snow) on {_fmt_date(d)}: "
            f"{', '.join(cs)}? List all of them."
        )
        calls = [_call("weather", f"Check {c}.", city=c, date=d.isoformat()) for c in cs]
        return q, calls, wet

    def weather_weekday(self) -> tuple[str, list[dict[str, Any]], Any]:
        c = self.wcity()
        d = self.date()
        wd = self.rng.choice(WEEKDAYS)
        target = d + dt.timedelta(days=(WEEKDAYS.index(wd) - d.weekday()) % 7 or 7)
        if target.year != YEAR:
            raise _Retry
        r = self.weather.lookup(c, target.isoformat())
        q = f"What was the daily low temperature in {c} on the first {wd} after {_fmt_date(d)}, in degrees Celsius?"
        calls = [
            _call(
                "calendar",
                f"Find the first {wd} after {d}.",
                operation="next_weekday",
                date=d.isoformat(),
                weekday=wd,
            ),
            _call("weather", f"Weather in {c} on {target}.", city=c, date=target.isoformat()),
        ]
        return q, calls, r["low_c"]

    def stock_close(self) -> tuple[str, list[dict[str, Any]], Any]:
        t, d = self.ticker(), self.tdate()
        r = self.stock.lookup(t, d.isoformat())
        q = f"What was the closing price of {t} stock on {_fmt_date(d)}, in US dollars?"
        return q, [_call("stock", f"Look up {t} on {d}.", ticker=t, date=d.isoformat())], r["close"]

    def stock_change(self) -> tuple[str, list[dict[str, Any]], Any]:
        t = self.ticker()
        d1, d2 = sorted(self.rng.sample(self.trading, 2))
        c1, c2 = (self.stock.lookup(t, d)["close"] for d in (d1, d2))
        calc, ans = self.calc(f"{c2} - {c1}", "Change = later close minus earlier close.")
        if abs(ans) < 0.5:
            raise _Retry
        q = (
            f"By how many dollars did the closing price of {t} change from "
            f"{_fmt_date(dt.date.fromisoformat(d1))} to {_fmt_date(dt.date.fromisoformat(d2))}? "
            "Give a negative number for a fall."
        )
        calls = [
            _call("stock", f"Close of {t} on {d1}.", ticker=t, date=d1),
            _call("stock", f"Close of {t} on {d2}.", ticker=t, date=d2),
            calc,
        ]
        return q, calls, ans

    def stock_profit(self) -> tuple[str, list[dict[str, Any]], Any]:
        t = self.ticker()
        d1, d2 = sorted(self.rng.sample(self.trading, 2))
        n = self.rng.choice([10, 25, 40, 50, 100, 150, 200])
        o1 = self.stock.lookup(t, d1)["open"]
        c2 = self.stock.lookup(t, d2)["close"]
        calc, ans = self.calc(
            f"{n} * ({c2} - {o1})", "Profit = shares times (sell price - buy price)."
        )
        if abs(ans) < 5:
            raise _Retry
        q = (
            f"If you bought {n} shares of {t} at the opening price on "
            f"{_fmt_date(dt.date.fromisoformat(d1))} and sold them all at the closing price on "
            f"{_fmt_date(dt.date.fromisoformat(d2))}, what would your profit be in dollars "
            "(negative for a loss)?"
        )
        calls = [
            _call("stock", f"Opening price of {t} on {d1}.", ticker=t, date=d1),
            _call("stock", f"Closing price of {t} on {d2}.", ticker=t, date=d2),
            calc,
        ]
        return q, calls, ans

    def stock_pct(self) -> tuple[str, list[dict[str, Any]], Any]:
        t = self.ticker()
        d1, d2 = sorted(self.rng.sample(self.trading, 2))
        c1, c2 = (self.stock.lookup(t, d)["close"] for d in (d1, d2))
        calc, ans = self.calc(f"({c2} - {c1}) / {c1} * 100", "Percentage change of the close.")
        if abs(ans) < 1:
            raise _Retry
        q = (
            f"By what percentage did the closing price of {t} change between "
            f"{_fmt_date(dt.date.fromisoformat(d1))} and {_fmt_date(dt.date.fromisoformat(d2))}? "
            "Give a negative number for a fall."
        )
        calls = [
            _call("stock", f"Close of {t} on {d1}.", ticker=t, date=d1),
            _call("stock", f"Close of {t} on {d2}.", ticker=t, date=d2),
            calc,
        ]
        return q, calls, ans

    def calendar_weekday(self) -> tuple[str, list[dict[str, Any]], Any]:
        d = self.date()
        n = self.rng.randint(10, 900)
        r = d + dt.timedelta(days=n)
        q = f"What day of the week will it be {n} days after {_fmt_date(d)}?"
        calls = [
            _call(
                "calendar",
                f"Add {n} days to {d}.",
                operation="add_days",
                date=d.isoformat(),
                days=n,
            )
        ]
        return q, calls, WEEKDAYS[r.weekday()]

    def calendar_between(self) -> tuple[str, list[dict[str, Any]], Any]:
        d1 = dt.date(self.rng.randint(1950, 2023), self.rng.randint(1, 12), self.rng.randint(1, 28))
        d2 = d1 + dt.timedelta(days=self.rng.randint(40, 20000))
        q = f"How many days are there from {_fmt_date(d1)} to {_fmt_date(d2)}?"
        calls = [
            _call(
                "calendar",
                "Count the days.",
                operation="days_between",
                date=d1.isoformat(),
                end_date=d2.isoformat(),
            )
        ]
        return q, calls, (d2 - d1).days

    def calendar_stock(self) -> tuple[str, list[dict[str, Any]], Any]:
        t = self.ticker()
        d = self.date()
        wd = self.rng.choice(WEEKDAYS[:5])
        target = d + dt.timedelta(days=(WEEKDAYS.index(wd) - d.weekday()) % 7 or 7)
        if target.isoformat() not in self.stock.prices[t]:
            raise _Retry
        r = self.stock.lookup(t, target.isoformat())
        q = f"What was the closing price of {t} on the first {wd} after {_fmt_date(d)}, in US dollars?"
        calls = [
            _call(
                "calendar",
                f"Find the first {wd} after {d}.",
                operation="next_weekday",
                date=d.isoformat(),
                weekday=wd,
            ),
            _call("stock", f"Close of {t} on {target}.", ticker=t, date=target.isoformat()),
        ]
        return q, calls, r["close"]

    def wiki_density(self) -> tuple[str, list[dict[str, Any]], Any]:
        c = self.rng.choice(self.w["cities"])
        calc, ans = self.calc(f"{c['population']} / {c['area']}", "Density = population / area.")
        q = f"What is the population density of {c['name']}, in people per square kilometre?"
        return q, [_call("wiki_search", f"Look up {c['name']}.", query=c["name"]), calc], ans

    def wiki_years(self) -> tuple[str, list[dict[str, Any]], Any]:
        c = self.rng.choice(self.w["cities"])
        p = self.rng.choice(self.w["people"])
        born = int(p["born"][:4])
        calc, ans = self.calc(f"{born} - {c['founded']}", "Birth year minus founding year.")
        if ans <= 20:
            raise _Retry
        q = f"How many years after the founding of {c['name']} was {p['name']} born?"
        calls = [
            _call("wiki_search", f"When was {c['name']} founded?", query=c["name"]),
            _call("wiki_search", f"When was {p['name']} born?", query=p["name"]),
            calc,
        ]
        return q, calls, ans

    def wiki_country(self) -> tuple[str, list[dict[str, Any]], Any]:
        p = self.rng.choice(self.w["people"])
        city = self.city_by_name[p["birthplace"]]
        q = f"In which country was {p['name']} born?"
        calls = [
            _call("wiki_search", f"Find where {p['name']} was born.", query=p["name"]),
            _call("wiki_search", f"Find the country of {city['name']}.", query=city["name"]),
        ]
        return q, calls, city["country"]

    def wiki_stock(self) -> tuple[str, list[dict[str, Any]], Any]:
        co = self.rng.choice(self.w["companies"])
        if sum(1 for x in self.w["companies"] if x["founder"] == co["founder"]) != 1:
            raise _Retry
        query = f"company founded by {co['founder']}"
        if not self.found(query, co["name"]):
            raise _Retry
        d = self.tdate()
        r = self.stock.lookup(co["ticker"], d.isoformat())
        q = f"What was the closing price on {_fmt_date(d)} of the stock of the company founded by {co['founder']}?"
        calls = [
            _call("wiki_search", "Find the company and its ticker.", query=query),
            _call(
                "stock", f"Close of {co['ticker']} on {d}.", ticker=co["ticker"], date=d.isoformat()
            ),
        ]
        return q, calls, r["close"]

    def wiki_weather(self) -> tuple[str, list[dict[str, Any]], Any]:
        co = self.rng.choice(self.w["companies"])
        d = self.date()
        r = self.weather.lookup(co["hq"], d.isoformat())
        q = f"What was the daily high temperature on {_fmt_date(d)} in the city where {co['name']} is headquartered, in degrees Celsius?"
        calls = [
            _call("wiki_search", f"Where is {co['name']} headquartered?", query=co["name"]),
            _call("weather", f"Weather in {co['hq']} on {d}.", city=co["hq"], date=d.isoformat()),
        ]
        return q, calls, r["high_c"]

    def wiki_compare(self) -> tuple[str, list[dict[str, Any]], Any]:
        kind = self.rng.choice(["mountains", "rivers"])
        a, b = self.rng.sample(self.w[kind], 2)
        key = "height" if kind == "mountains" else "length"
        if abs(a[key] - b[key]) < 50:
            raise _Retry
        if kind == "mountains":
            q = f"How many metres higher is {a['name']} than {b['name']}? Give a negative number if it is lower."
        else:
            q = f"How many kilometres longer is the {a['name']} than the {b['name']}? Give a negative number if it is shorter."
        calc, ans = self.calc(f"{a[key]} - {b[key]}", "Subtract.")
        calls = [
            _call("wiki_search", f"Look up {a['name']}.", query=a["name"]),
            _call("wiki_search", f"Look up {b['name']}.", query=b["name"]),
            calc,
        ]
        return q, calls, ans

    def wiki_which(self) -> tuple[str, list[dict[str, Any]], Any]:
        a, b = self.rng.sample(self.w["cities"], 2)
        if abs(a["population"] - b["population"]) < 0.05 * max(a["population"], b["population"]):
            raise _Retry
        q = f"Which city has the larger population, {a['name']} or {b['name']}?"
        calls = [
            _call("wiki_search", f"Population of {a['name']}.", query=a["name"]),
            _call("wiki_search", f"Population of {b['name']}.", query=b["name"]),
        ]
        return q, calls, a["name"] if a["population"] > b["population"] else b["name"]

    def python_math(self) -> tuple[str, list[dict[str, Any]], Any]:
        kind = self.rng.choice(["primes", "divisible", "fib", "digits"])
        if kind == "primes":
            n = self.rng.randint(1000, 60000)
            q = f"What is the sum of all prime numbers below {n}?"
            code = (
                f"n = {n}\nsieve = [True] * n\nsieve[0:2] = [False, False]\n"
                "for i in range(2, int(n ** 0.5) + 1):\n    if sieve[i]:\n"
                "        sieve[i*i::i] = [False] * len(sieve[i*i::i])\n"
                "print(sum(i for i, p in enumerate(sieve) if p))"
            )
            ans: Any = sum(
                i for i in range(2, n) if all(i % k for k in range(2, math.isqrt(i) + 1))
            )
        elif kind == "divisible":
            n = self.rng.randint(1000, 10**6)
            a, b = self.rng.sample([3, 4, 5, 6, 7, 9, 11, 13], 2)
            q = f"How many integers from 1 to {n} (inclusive) are divisible by {a} or by {b}?"
            code = f"print(sum(1 for i in range(1, {n} + 1) if i % {a} == 0 or i % {b} == 0))"
            ans = n // a + n // b - n // math.lcm(a, b)
        elif kind == "fib":
            k = self.rng.randint(30, 90)
            q = f"What is the {k}th Fibonacci number, counting F(1) = F(2) = 1?"
            code = f"a, b = 1, 1\nfor _ in range({k} - 2):\n    a, b = b, a + b\nprint(b)"
            x, y = 1, 1
            for _ in range(k - 2):
                x, y = y, x + y
            ans = y
        else:
            n = self.rng.randint(50, 400)
            q = f"What is the sum of the decimal digits of 2 to the power {n}?"
            code = f"print(sum(int(c) for c in str(2 ** {n})))"
            ans = sum(int(c) for c in str(2**n))
        return q, [_call("python_interpreter", "Compute it with a short program.", code=code)], ans


class _Retry(Exception):
    pass


TEMPLATES: dict[str, int] = {
    "weather_high": 12,
    "weather_diff": 16,
    "weather_avg": 14,
    "weather_wet_list": 12,
    "weather_weekday": 12,
    "stock_close": 12,
    "stock_change": 16,
    "stock_profit": 14,
    "stock_pct": 14,
    "calendar_weekday": 14,
    "calendar_between": 10,
    "calendar_stock": 14,
    "wiki_density": 14,
    "wiki_years": 14,
    "wiki_country": 12,
    "wiki_stock": 12,
    "wiki_weather": 14,
    "wiki_compare": 14,
    "wiki_which": 12,
    "python_math": 16,
}
"""Template -> number of shipped tasks (a quarter of each, rounded, goes to ``test``)."""


def build_tasks(
    world: dict[str, Any], data_dir: Path, seed: int = 0, check_python: bool = True
) -> list[dict[str, Any]]:
    """The shipped tasks, with answers computed from the tool tables in ``data_dir``."""
    maker = _TaskMaker(world, data_dir, seed)
    py = PythonInterpreter(timeout_s=30) if check_python else None
    tasks: list[dict[str, Any]] = []
    seen: set[str] = set()
    for template, count in TEMPLATES.items():
        fn: Callable[[], tuple[str, list[dict[str, Any]], Any]] = getattr(maker, template)
        made = 0
        tries = 0
        while made < count:
            tries += 1
            if tries > count * 200:
                raise RuntimeError(f"template {template} cannot make {count} tasks")
            try:
                question, calls, answer = fn()
            except _Retry:
                continue
            if question in seen:
                continue
            if py is not None and calls[-1]["tool"] == "python_interpreter":
                out = py.run(calls[-1]["args"]).strip()
                if out != str(answer):
                    raise RuntimeError(f"python reference disagrees: {out!r} != {answer!r}")
            seen.add(question)
            n_test = max(1, round(count / 4))
            tasks.append(
                {
                    "id": f"tooluse-{template}-{made:03d}",
                    "split": "test" if made < n_test else "train",
                    "template": template,
                    "question": question,
                    "answer": answer,
                    "tools": sorted({c["tool"] for c in calls}),
                    "calls": calls,
                }
            )
            made += 1
    return tasks


def write_tasks(tasks: list[dict[str, Any]], out: Path) -> None:
    """Write ``tasks.jsonl`` into ``out``."""
    with open(out / "tasks.jsonl", "w", encoding="utf-8") as f:
        for t in tasks:
            f.write(json.dumps(t, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: write the world and the tasks."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--out", type=Path, default=DATA_DIR, help="output folder (default: the shipped data)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--no-check-python", action="store_true", help="skip running the python references"
    )
    args = ap.parse_args(argv)
    world = build_world(args.seed)
    write_world(world, args.out)
    tasks = build_tasks(world, args.out, args.seed, check_python=not args.no_check_python)
    write_tasks(tasks, args.out)
    n_test = sum(t["split"] == "test" for t in tasks)
    multi = sum(len(t["tools"]) > 1 or len(t["calls"]) > 1 for t in tasks)
    print(
        f"wrote {len(world['docs'])} articles, {len(world['weather']['cities'])} weather cities, "
        f"{len(world['stocks']['prices'])} tickers, {len(tasks)} tasks ({n_test} test, "
        f"{len(tasks) - n_test} train; {multi} need several calls) to {args.out}"
    )


if __name__ == "__main__":
    main()
