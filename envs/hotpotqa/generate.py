"""Generate the shipped offline HotPotQA world: invented entities, their pages, multi-hop questions.

Run ``python -m agentq.envs.hotpotqa.generate [--out DIR] [--seed 0]``. It writes two files in
the official HotpotQA formats, so the environment reads them with the same loaders as the real
data:

- ``world_corpus.json.gz``: the pages, a list of ``[title, [sentence, ...]]`` (the shape of a
  ``context`` entry of the distractor/fullwiki files);
- ``world_questions.json.gz``: the questions in the distractor format (``_id``, ``question``,
  ``answer``, ``type`` = ``bridge`` | ``comparison``, ``level``, ``supporting_facts`` =
  ``[[title, sentence index], ...]``, ``context`` = the two gold pages and eight distractors),
  plus a ``split`` field (``train`` / ``test``).

Every entity (country, sea, city, river, person, company, film, novel, building) is invented
from a seeded generator, so no answer can be recalled from a model's pretraining. Each question
needs two pages: a *bridge* question names page A, whose text names page B, which holds the
answer (and the generator checks that page A does not); a *comparison* question names two pages
and compares a fact of each. The same seed gives the same JSON text.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentq.envs.hotpotqa.metrics import normalize_answer

DATA_DIR = Path(__file__).resolve().parent / "data"
CORPUS_FILE = "world_corpus.json.gz"
QUESTIONS_FILE = "world_questions.json.gz"

N_BRIDGE = 330
N_COMPARISON = 220
N_TEST = 150
N_DISTRACTORS = 8

_ONSETS = "b br d dr f g gr h k kr l m n p r s st t tr v z th sh c j w".split()
_VOWELS = "a e i o u a e o ae ei ou".split()
_CODAS = ["", "", "", "n", "r", "l", "s", "th", "m", "x", "nd", "st", "rk"]

_FIRST_NAMES = (
    "Adra Bellan Caius Dorin Elsa Faro Gida Hesper Ilan Jorun Kasia Lenna Mirek Nadia Oren "
    "Petra Quill Rasmus Selka Tarin Ulla Vesna Wendel Yara Zoran Aldo Brisa Corin Delia Emric "
    "Fenna Galen Hanne Ivor Jessa Kelm Liora Maelis Niko Odile Pavel Runa Soren Tilde Varek "
    "Wilma Ysolde Zenia Anselm Britt"
).split()

_ADJECTIVES = (
    "Silent Hollow Crimson Distant Frozen Golden Hidden Iron Last Lonely Midnight Northern "
    "Pale Quiet Restless Scarlet Secret Shattered Silver Sleeping Southern Stolen Burning "
    "Broken Wandering Velvet Wild Winter Amber Bitter"
).split()
_FILM_NOUNS = (
    "Orchard Harbor Lantern Meridian Garden Tide Frontier Mirror Summit Compass Carnival "
    "Canyon Lighthouse Parade Orchestra Voyage Citadel Horizon Labyrinth Monsoon Ferry Signal "
    "Archive Empire Season Crossing Outpost Promise Theorem Kingdom"
).split()
_NOVEL_NOUNS = (
    "Salt Thunder Ash Honey Glass Smoke Ivory Rain Copper Feathers Embers Moss Bone Paper "
    "Silk Thorns Marble Ink Clover Frost Iron Linen Amber Sparrows Lanterns Cinders Pearls "
    "Wolves Bells Stone"
).split()

_GENRES = "drama comedy thriller western musical war crime romance mystery adventure".split()
_COMPANY_KINDS: list[tuple[str, str]] = [
    ("Pictures", "film production"),
    ("Studios", "film production"),
    ("Press", "publishing"),
    ("Books", "publishing"),
    ("Motors", "automotive"),
    ("Foods", "food processing"),
    ("Textiles", "textile"),
    ("Shipping", "shipping"),
    ("Electric", "electrical equipment"),
    ("Mining", "mining"),
    ("Instruments", "scientific instruments"),
]
_BUILDING_KINDS = "Tower Hall Bridge Library Stadium Cathedral Observatory Arcade".split()
_OCCUPATIONS = {
    "director": "film director",
    "actor": "actor",
    "novelist": "novelist",
    "architect": "architect",
    "entrepreneur": "entrepreneur",
    "composer": "composer",
    "painter": "painter",
}

_FILLER: dict[str, list[str]] = {
    "city": [
        "The old town is known for its narrow streets and covered markets.",
        "Its economy rests on trade, light industry and tourism.",
        "A tram network links the centre with the outer districts.",
        "The city holds a lantern festival every autumn.",
        "Several stone bridges cross the water in the historic centre.",
        "Its university was founded by a guild of merchants.",
        "The local cuisine is known for smoked fish and rye bread.",
        "Much of the centre was rebuilt after a great fire.",
    ],
    "river": [
        "Its basin is mostly farmland and mixed forest.",
        "Flat-bottomed barges still carry grain along its lower course.",
        "Several dams on its upper course produce electricity.",
        "The river freezes over in the coldest winters.",
        "Its valley is a protected area for migrating birds.",
        "Floods along its banks were common until levees were built.",
    ],
    "country": [
        "Its landscape ranges from coastal plains to high mountains.",
        "The country is a parliamentary republic.",
        "Agriculture and shipbuilding dominate its economy.",
        "Its national dish is a stew of lentils and lamb.",
    ],
    "sea": [
        "Its waters are shallow and rich in fish.",
        "Winter storms make its crossing dangerous.",
        "Its coast is lined with dunes and salt marshes.",
    ],
    "person": [
        "{P} studied at a small academy before moving abroad.",
        "{P} received several national awards during {Q} career.",
        "{P} was married twice and had three children.",
        "Critics have praised {Q} work for its restraint and precision.",
        "{P} spent {Q} later years teaching young artists.",
        "A biography of {Q} life appeared after {Q} retirement.",
        "{P} was a keen mountaineer and amateur astronomer.",
    ],
    "company": [
        "The firm grew quickly after its first decade.",
        "It went through a difficult restructuring after a market crash.",
        "Its logo, a stylised heron, became widely recognised.",
        "The company is still privately owned.",
        "It employs several thousand people in three countries.",
        "Its early success rested on a single popular product.",
    ],
    "film": [
        "The film received mixed reviews on its release.",
        "Its score was praised by critics.",
        "The production went far over budget.",
        "It later gained a cult following.",
        "The film was restored for a festival screening decades later.",
        "Its ending was rewritten shortly before shooting began.",
    ],
    "novel": [
        "The book was a modest success on its publication.",
        "It has been translated into several languages.",
        "Critics admired its spare, unhurried prose.",
        "The novel was later adapted for radio.",
        "It is often taught in secondary schools.",
    ],
    "building": [
        "Its facade is faced with pale limestone.",
        "The structure was restored after a storm damaged its roof.",
        "It is open to visitors on weekends.",
        "The design caused controversy when it was first unveiled.",
        "Its interior is decorated with glass mosaics.",
    ],
}


@dataclass
class Entity:
    """One invented entity: its kind, its page title and the facts its page states."""

    kind: str
    title: str
    facts: dict[str, Any] = field(default_factory=dict)
    sentences: list[str] = field(default_factory=list)


class World:
    """The invented world: entities by kind, their pages, and the generator's random source."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.used: set[str] = set()
        self.by_kind: dict[str, list[Entity]] = {}
        self.by_title: dict[str, Entity] = {}

    # -- names -------------------------------------------------------------------------------
    def word(self, min_syl: int = 2, max_syl: int = 3) -> str:
        """A fresh invented word (never returned twice)."""
        while True:
            n = self.rng.randint(min_syl, max_syl)
            w = "".join(
                self.rng.choice(_ONSETS) + self.rng.choice(_VOWELS) + self.rng.choice(_CODAS)
                for _ in range(n)
            ).capitalize()
            if 5 <= len(w) <= 11 and w.lower() not in self.used:
                self.used.add(w.lower())
                return w

    def fresh(self, make: Callable[[], str]) -> str:
        """A title from ``make`` that no other entity uses (case-insensitive)."""
        for _ in range(10_000):
            t = make()
            if normalize_answer(t) not in self.used:
                self.used.add(normalize_answer(t))
                return t
        raise RuntimeError("ran out of fresh names")

    def add(self, kind: str, title: str, **facts: Any) -> Entity:
        """Register a new entity."""
        e = Entity(kind, title, dict(facts))
        self.by_kind.setdefault(kind, []).append(e)
        self.by_title[title] = e
        return e

    def of(self, kind: str) -> list[Entity]:
        """All entities of one kind."""
        return self.by_kind.get(kind, [])


def _build_entities(w: World) -> None:
    rng = w.rng
    for _ in range(10):
        root = w.word(2, 2)
        w.add("country", root + "ia", adjective=root + "ian")
    for _ in range(6):
        w.add("sea", w.word(2, 2) + " Sea")
    countries = w.of("country")
    seas = w.of("sea")
    for _ in range(60):
        w.add(
            "river",
            w.word() + " River",
            length=rng.randint(40, 2900),
            country=rng.choice(countries).title,
            sea=rng.choice(seas).title,
        )
    rivers = w.of("river")
    for _ in range(150):
        river = rng.choice(rivers)
        w.add(
            "city",
            w.word(),
            country=river.facts["country"] if rng.random() < 0.8 else rng.choice(countries).title,
            river=river.title,
            founded=rng.randint(800, 1890),
            population=rng.randint(8, 3000) * 1000 + rng.randint(0, 999),
        )
    cities = w.of("city")
    for country in countries:
        own = [c for c in cities if c.facts["country"] == country.title] or cities
        country.facts["capital"] = rng.choice(own).title
    roles = (
        ["director"] * 70
        + ["actor"] * 80
        + ["novelist"] * 70
        + ["architect"] * 45
        + ["entrepreneur"] * 95
        + ["composer"] * 30
        + ["painter"] * 30
    )
    for role in roles:
        name = w.fresh(lambda: f"{rng.choice(_FIRST_NAMES)} {w.word()}")
        born = rng.randint(1850, 1990)
        died = rng.randint(born + 50, min(born + 95, 2023)) if born < 1935 else None
        city = rng.choice(cities)
        w.add(
            "person",
            name,
            role=role,
            born=born,
            died=died,
            city=city.title,
            nationality=w.by_title[city.facts["country"]].facts["adjective"],
            pronoun=rng.choice(["he", "she"]),
        )
    people = w.of("person")

    def with_role(role: str) -> list[Entity]:
        return [p for p in people if p.facts["role"] == role]

    entrepreneurs = with_role("entrepreneur")
    for i in range(150):
        suffix, industry = _COMPANY_KINDS[i % len(_COMPANY_KINDS)]
        founder = rng.choice(entrepreneurs)
        w.add(
            "company",
            f"{w.word()} {suffix}",
            industry=industry,
            founder=founder.title,
            founded=rng.randint(founder.facts["born"] + 22, founder.facts["born"] + 60),
            city=rng.choice(cities).title,
        )
    studios = [c for c in w.of("company") if c.facts["industry"] == "film production"]
    publishers = [c for c in w.of("company") if c.facts["industry"] == "publishing"]
    directors, actors = with_role("director"), with_role("actor")
    for _ in range(200):
        director = rng.choice(directors)
        studio = rng.choice(studios)
        year = rng.randint(
            max(director.facts["born"] + 24, studio.facts["founded"] + 1, 1925),
            max(director.facts["born"] + 24, studio.facts["founded"] + 1, 1925) + 30,
        )
        w.add(
            "film",
            w.fresh(lambda: f"The {rng.choice(_ADJECTIVES)} {rng.choice(_FILM_NOUNS)}"),
            year=min(year, 2023),
            genre=rng.choice(_GENRES),
            director=director.title,
            studio=studio.title,
            star=rng.choice(actors).title,
            location=rng.choice(cities).title,
        )
    novelists = with_role("novelist")
    for _ in range(150):
        author = rng.choice(novelists)
        publisher = rng.choice(publishers)

        def novel_title() -> str:
            a, b = rng.sample(_NOVEL_NOUNS, 2)
            return f"{a} and {b}"

        w.add(
            "novel",
            w.fresh(novel_title),
            year=min(
                max(author.facts["born"] + 20, publisher.facts["founded"] + 1) + rng.randint(0, 35),
                2023,
            ),
            author=author.title,
            publisher=publisher.title,
            setting=rng.choice(cities).title,
        )
    architects = with_role("architect")
    for i in range(90):
        architect = rng.choice(architects)
        kind = _BUILDING_KINDS[i % len(_BUILDING_KINDS)]
        w.add(
            "building",
            f"{w.word()} {kind}",
            architect=architect.title,
            city=rng.choice(cities).title,
            completed=min(architect.facts["born"] + rng.randint(28, 60), 2023),
            height=rng.randint(12, 420),
        )


def _arrange(
    rng: random.Random, lead: str, facts: list[str], filler: list[str], n_filler: int
) -> list[str]:
    """The lead sentence, then the fact sentences and some filler in a seeded order."""
    body = facts + rng.sample(filler, min(n_filler, len(filler)))
    rng.shuffle(body)
    return [lead, *body]


def _write_pages(w: World) -> None:
    rng = w.rng
    for e in w.of("country"):
        e.sentences = _arrange(
            rng,
            f"{e.title} is a country whose people are called {e.facts['adjective']}s.",
            [f"Its capital and largest city is {e.facts['capital']}."],
            _FILLER["country"],
            2,
        )
    for e in w.of("sea"):
        e.sentences = _arrange(rng, f"The {e.title} is an inland sea.", [], _FILLER["sea"], 2)
    for e in w.of("river"):
        f = e.facts
        e.sentences = _arrange(
            rng,
            f"The {e.title} is a river that rises in {f['country']}.",
            [f"It is {f['length']} kilometres long.", f"The river empties into the {f['sea']}."],
            _FILLER["river"],
            rng.randint(2, 4),
        )
    for e in w.of("city"):
        f = e.facts
        e.sentences = _arrange(
            rng,
            f"{e.title} is a city in {f['country']}.",
            [
                f"It lies on the banks of the {f['river']}.",
                f"The city was founded in {f['founded']}.",
                f"It has a population of {f['population']:,}.",
            ],
            _FILLER["city"],
            rng.randint(2, 5),
        )
    works: dict[str, list[str]] = {}
    for film in w.of("film"):
        works.setdefault(film.facts["director"], []).append(film.title)
    for novel in w.of("novel"):
        works.setdefault(novel.facts["author"], []).append(novel.title)
    for b in w.of("building"):
        works.setdefault(b.facts["architect"], []).append(b.title)
    for e in w.of("person"):
        f = e.facts
        p = f["pronoun"].capitalize()
        q = "his" if f["pronoun"] == "he" else "her"
        occupation = _OCCUPATIONS[f["role"]]
        if f["died"] is None:
            lead = f"{e.title} (born {f['born']}) is a {f['nationality']} {occupation}."
        else:
            lead = f"{e.title} ({f['born']}–{f['died']}) was a {f['nationality']} {occupation}."
        facts = [f"{p} was born in {f['city']}."]
        if e.title in works:
            facts.append(f"{p} is best known for {rng.choice(works[e.title])}.")
        filler = [s.format(P=p, Q=q) for s in _FILLER["person"]]
        e.sentences = _arrange(rng, lead, facts, filler, rng.randint(2, 5))
    for e in w.of("company"):
        f = e.facts
        e.sentences = _arrange(
            rng,
            f"{e.title} is a {f['industry']} company.",
            [
                f"It was founded in {f['founded']} by {f['founder']}.",
                f"Its headquarters are in {f['city']}.",
            ],
            _FILLER["company"],
            rng.randint(2, 5),
        )
    for e in w.of("film"):
        f = e.facts
        e.sentences = _arrange(
            rng,
            f"{e.title} is a {f['year']} {f['genre']} film.",
            [
                f"It was directed by {f['director']}.",
                f"The film stars {f['star']}.",
                f"It was produced by {f['studio']}.",
                f"Most of it was shot in {f['location']}.",
            ],
            _FILLER["film"],
            rng.randint(1, 4),
        )
    for e in w.of("novel"):
        f = e.facts
        e.sentences = _arrange(
            rng,
            f"{e.title} is a novel first published in {f['year']}.",
            [
                f"It was written by {f['author']}.",
                f"The book was published by {f['publisher']}.",
                f"The story is set in {f['setting']}.",
            ],
            _FILLER["novel"],
            rng.randint(1, 4),
        )
    for e in w.of("building"):
        f = e.facts
        e.sentences = _arrange(
            rng,
            f"The {e.title} is a landmark completed in {f['completed']}.",
            [
                f"It was designed by {f['architect']}.",
                f"It stands in {f['city']}.",
                f"It is {f['height']} metres tall.",
            ],
            _FILLER["building"],
            rng.randint(1, 3),
        )


def _index_of(e: Entity, needle: str) -> int:
    for i, s in enumerate(e.sentences):
        if needle in s:
            return i
    raise AssertionError(f"{needle!r} not on page {e.title!r}")


# A bridge template: (kind of page A, link fact on A, fact on B, question, answer from B).
_BRIDGES: list[tuple[str, str, str, str]] = [
    ("film", "director", "born", "In what year was the director of the film {A} born?"),
    ("film", "director", "city", "In which city was the director of the film {A} born?"),
    ("film", "studio", "founder", "Who founded the company that produced the film {A}?"),
    (
        "film",
        "studio",
        "founded",
        "In what year was the company that produced the film {A} founded?",
    ),
    ("film", "star", "born", "In what year was the star of the film {A} born?"),
    ("novel", "author", "city", "In which city was the author of the novel {A} born?"),
    (
        "novel",
        "publisher",
        "city",
        "In which city does the publisher of the novel {A} have its headquarters?",
    ),
    (
        "novel",
        "setting",
        "founded",
        "In what year was the city in which the novel {A} is set founded?",
    ),
    ("company", "founder", "born", "In what year was the founder of {A} born?"),
    ("company", "city", "river", "On which river lies the city where {A} has its headquarters?"),
    ("building", "architect", "city", "In which city was the architect of the {A} born?"),
    ("building", "city", "country", "In which country is the city where the {A} stands?"),
    ("city", "river", "sea", "Into which sea does the river that flows through {A} empty?"),
    ("city", "river", "length", "How many kilometres long is the river on which {A} lies?"),
]

# The sentence of page B that states each fact (a needle to find it), from the fact's value.
_NEEDLES: dict[str, Callable[[Any], str]] = {
    "born": lambda v: f"{v}",
    "city": lambda v: f"{v}",
    "founder": lambda v: f"by {v}",
    "founded": lambda v: f"founded in {v}",
    "river": lambda v: f"{v}",
    "country": lambda v: f"in {v}",
    "sea": lambda v: f"into the {v}",
    "length": lambda v: f"{v} kilometres",
    "year": lambda v: f"{v}",
    "population": lambda v: f"{v:,}",
    "height": lambda v: f"{v} metres",
    "director": lambda v: f"by {v}",
}


def _bridge(w: World, qid: str) -> dict[str, Any] | None:
    rng = w.rng
    kind, link, fact, template = rng.choice(_BRIDGES)
    a = rng.choice(w.of(kind))
    b = w.by_title[a.facts[link]]
    answer = str(b.facts[fact])
    text_a = " ".join(a.sentences)
    if normalize_answer(answer) in normalize_answer(text_a):
        return None  # page A alone would give the answer away
    ia = _index_of(a, b.title)
    ib = _index_of(b, _NEEDLES[fact](b.facts[fact]))
    return {
        "_id": qid,
        "question": template.format(A=a.title),
        "answer": answer,
        "type": "bridge",
        "supporting_facts": [[a.title, ia], [b.title, ib]],
        "bridge": b.title,
    }


def _comparison(w: World, qid: str) -> dict[str, Any] | None:
    rng = w.rng
    choice = rng.randrange(10)
    if choice < 6:
        kind, fact, template, larger = [
            ("film", "year", "Which film came out first, {A} or {B}?", False),
            ("person", "born", "Who was born first, {A} or {B}?", False),
            ("company", "founded", "Which company was founded earlier, {A} or {B}?", False),
            ("river", "length", "Which is longer, the {A} or the {B}?", True),
            ("city", "population", "Which city has more inhabitants, {A} or {B}?", True),
            ("building", "height", "Which is taller, the {A} or the {B}?", True),
        ][choice]
        a, b = rng.sample(w.of(kind), 2)
        va, vb = a.facts[fact], b.facts[fact]
        if va == vb:
            return None
        answer = (a if (va > vb) == larger else b).title
        needle = _NEEDLES[fact]
        sa, sb = _index_of(a, needle(va)), _index_of(b, needle(vb))
    else:
        kind, fact, template = [
            ("film", "director", "Were the films {A} and {B} directed by the same person?"),
            ("person", "nationality", "Are {A} and {B} of the same nationality?"),
            ("person", "city", "Were {A} and {B} born in the same city?"),
            ("city", "river", "Do {A} and {B} lie on the same river?"),
        ][choice - 6]
        a = rng.choice(w.of(kind))
        same = [x for x in w.of(kind) if x is not a and x.facts[fact] == a.facts[fact]]
        if rng.random() < 0.5 and same:
            b = rng.choice(same)
        else:
            b = rng.choice([x for x in w.of(kind) if x.facts[fact] != a.facts[fact]])
        answer = "yes" if a.facts[fact] == b.facts[fact] else "no"
        sa, sb = _index_of(a, str(a.facts[fact])), _index_of(b, str(b.facts[fact]))
        if rng.random() < 0.5:
            a, b, sa, sb = b, a, sb, sa
    return {
        "_id": qid,
        "question": template.format(A=a.title, B=b.title),
        "answer": answer,
        "type": "comparison",
        "supporting_facts": [[a.title, sa], [b.title, sb]],
    }


def generate(seed: int = 0) -> tuple[list[list[Any]], list[dict[str, Any]]]:
    """Build the world: (corpus as ``[[title, sentences], ...]``, questions in distractor format)."""
    w = World(seed)
    _build_entities(w)
    _write_pages(w)
    corpus = [[e.title, list(e.sentences)] for kind in w.by_kind for e in w.of(kind)]
    questions: list[dict[str, Any]] = []
    seen: set[str] = set()
    for qtype, n, make in (
        ("bridge", N_BRIDGE, _bridge),
        ("comparison", N_COMPARISON, _comparison),
    ):
        made = 0
        while made < n:
            q = make(w, f"hpw-{qtype[0]}{made:04d}")
            if q is None or q["question"] in seen:
                continue
            seen.add(q["question"])
            questions.append(q)
            made += 1
    rng = w.rng
    order = list(range(len(questions)))
    rng.shuffle(order)
    test = set(order[:N_TEST])
    for i, q in enumerate(questions):
        q["split"] = "test" if i in test else "train"
        q["level"] = "generated"  # HotpotQA's easy/medium/hard labels do not apply
        gold = [t for t, _ in q["supporting_facts"]]
        kinds = {w.by_title[t].kind for t in gold}
        pool = [e for k in sorted(kinds) for e in w.of(k) if e.title not in gold]
        distractors = rng.sample(pool, N_DISTRACTORS)
        context = [w.by_title[t] for t in gold] + distractors
        rng.shuffle(context)
        q["context"] = [[e.title, list(e.sentences)] for e in context]
        q.pop("bridge", None)
    return corpus, questions


def _write_gz(path: Path, obj: Any) -> None:
    raw = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
    with open(path, "wb") as fh, gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=0) as gz:
        gz.write(raw)


def write_world(out_dir: Path | str = DATA_DIR, seed: int = 0) -> tuple[Path, Path]:
    """Generate the world and write ``world_corpus.json.gz`` and ``world_questions.json.gz``."""
    return _write(Path(out_dir), *generate(seed))


def _write(
    out: Path, corpus: list[list[Any]], questions: list[dict[str, Any]]
) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    cpath, qpath = out / CORPUS_FILE, out / QUESTIONS_FILE
    _write_gz(cpath, corpus)
    _write_gz(qpath, questions)
    return cpath, qpath


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: write the world files and print what was written."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--out", default=str(DATA_DIR), help="output folder (default: the package data)"
    )
    ap.add_argument("--seed", type=int, default=0, help="generator seed (the shipped world uses 0)")
    args = ap.parse_args(argv)
    corpus, questions = generate(args.seed)
    cpath, qpath = _write(Path(args.out), corpus, questions)
    splits = {s: sum(q["split"] == s for q in questions) for s in ("train", "test")}
    types = {t: sum(q["type"] == t for q in questions) for t in ("bridge", "comparison")}
    yes_no = sum(q["answer"] in ("yes", "no") for q in questions)
    print(f"wrote {cpath} ({len(corpus)} pages, {cpath.stat().st_size:,} bytes)")
    print(
        f"wrote {qpath} ({len(questions)} questions {types}, {yes_no} yes/no, splits {splits},"
        f" {qpath.stat().st_size:,} bytes)"
    )


if __name__ == "__main__":
    main()
