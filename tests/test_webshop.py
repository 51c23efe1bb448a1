"""WebShop environment: reward parts, pages and actions, expert/random policies, loaders."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pytest
from agentq.envs import make
from agentq.envs.webshop import WebShopEnv
from agentq.envs.webshop.engine import parse_action
from agentq.envs.webshop.expert import expert_action, run_episode
from agentq.envs.webshop.loaders import (
    PRICE_RANGE,
    load_directory,
    load_shipped,
    load_webshop,
    parse_pricing,
)
from agentq.envs.webshop.reward import (
    get_reward,
    normalize_color,
    type_reward,
)
from agentq.envs.webshop.reward import (
    strict_attribute_matches as attribute_matches,
)
from agentq.envs.webshop.reward import (
    strict_option_matches as option_matches,
)

from agentq.errors import UserInputError
from agentq.protocols import FREE_TEXT, Env, has_snapshots

# -- reward -------------------------------------------------------------------------------


def _product(**kw):
    p = {
        "asin": "B0TEST0001",
        "name": "Acme Cotton Crew T-Shirt",
        "Title": "Acme Cotton Crew T-Shirt",
        "query": "t-shirt",
        "product_category": "Clothing › Men › Shirts › T-Shirts",
        "Attributes": ["100% cotton", "machine wash"],
        "BulletPoints": ["Crew neck"],
        "Description": "A soft tee with short sleeve cut.",
        "options": {"color": ["heather grey", "red"], "size": ["large", "x-large"]},
    }
    p.update(kw)
    return p


def _goal(**kw):
    g = {
        "asin": "B0TEST0001",
        "name": "Acme Cotton Crew T-Shirt",
        "query": "t-shirt",
        "product_category": "Clothing › Men › Shirts › T-Shirts",
        "attributes": ["cotton", "short sleeve", "slim fit"],
        "goal_options": ["gray", "large"],
        "price_upper": 30.0,
    }
    g.update(kw)
    return g


def test_strict_attribute_matches_fuzzy_and_text():
    # "cotton" fuzzy-matches "100% cotton" (token_set_ratio 100); "short sleeve" is in the
    # description; "slim fit" is nowhere.
    assert attribute_matches(_product(), ["cotton", "short sleeve", "slim fit"]) == 2
    assert attribute_matches(_product(), ["machine washable"]) == 1  # ratio 93 > 85
    assert attribute_matches(_product(), ["crew neck"]) == 1  # bullet point
    assert attribute_matches(_product(), ["wool"]) == 0
    # whole words only: "eve" is inside "sleeve" but is not a word of the text
    assert attribute_matches(_product(), ["eve"]) == 0


def test_colour_normalisation():
    assert normalize_color("Heather Grey") == "gray"
    assert normalize_color("gray") == "gray"
    assert normalize_color("Royal Blue") == "blue"
    assert normalize_color("navy blue") == "navy"
    assert normalize_color("redwood") == "redwood"  # no colour word
    assert normalize_color(" Large ") == "large"


def test_strict_option_matches_colour_size_and_fuzzy():
    p = _product()
    # colour normalised: "heather grey" -> "gray" meets goal "gray"; size exact
    assert option_matches(p, ["gray", "large"], {"color": "heather grey", "size": "large"}) == 2
    # a size must match exactly: "x-large" is not "large"
    assert option_matches(p, ["gray", "large"], {"color": "heather grey", "size": "x-large"}) == 1
    # other option types match fuzzily (token_set_ratio("large", "large pack") = 100)
    assert option_matches(p, ["large"], {"style": "large pack"}) == 1
    assert option_matches(p, ["large"], {"size": "large pack"}) == 0
    # a wrong colour gets nothing; the count is capped at the number of goal options
    assert option_matches(p, ["gray"], {"color": "red"}) == 0
    assert option_matches(p, ["gray"], {"color": "gray", "style": "gray"}) == 1
    assert option_matches(p, ["gray", "large"], {}) == 0


def test_type_reward_levels():
    same = type_reward(_product(), _goal(), nouns="heuristic")
    assert same["r_type"] == 1.0 and same["query_match"] and same["title_score"] == 1.0
    other = {"query": "x", "product_category": "A › B"}
    # no shared noun: 0
    r = type_reward({**other, "name": "Blue Ceramic Mug"}, _goal(), nouns="heuristic")
    assert r["r_type"] == 0.0 and r["title_score"] == 0.0
    # goal nouns (heuristic): acme, cotton, crew, shirt -> 1/4 = 0.25 > 0.2: a match, 1.0
    r = type_reward({**other, "name": "Shirt Hanger"}, _goal(), nouns="heuristic")
    assert r["title_score"] == 0.25 and r["r_type"] == 1.0
    # 1/6 of the nouns, no query or category match: 0.5
    g6 = _goal(name="Acme Cotton Crew Shirt Jersey Top")
    r = type_reward({**other, "name": "Shirt Hanger"}, g6, nouns="heuristic")
    assert r["title_score"] == pytest.approx(1 / 6) and r["r_type"] == 0.5
    # under 0.1: 0.1
    g11 = _goal(name="Acme Cotton Crew Shirt Jersey Top Summer Beach Party Gym Travel")
    r = type_reward({**other, "name": "Shirt Hanger"}, g11, nouns="heuristic")
    assert r["title_score"] == pytest.approx(1 / 11) and r["r_type"] == 0.1
    # two shared category levels make a match even with few shared nouns
    r = type_reward(
        {"query": "x", "product_category": "Clothing › Men › Hats", "name": "Shirt Hanger"},
        g6,
        nouns="heuristic",
    )
    assert r["category_match"] and r["r_type"] == 1.0


def test_full_reward_hand_computed_strict_rules():
    p = _product()
    # attributes 2/3, options 2/2 (grey = gray, size large), price 25 <= 30: (2 + 2 + 1) / 6
    reward, parts = get_reward(
        p,
        _goal(),
        25.0,
        {"color": "heather grey", "size": "large"},
        nouns="heuristic",
        rules="strict",
    )
    assert reward == pytest.approx(5 / 6)
    assert parts["r_att"] == pytest.approx(2 / 3) and parts["r_option"] == 1.0
    assert parts["r_price"] is True and parts["w_price"] == pytest.approx(1 / 6)
    assert parts["w_att"] == pytest.approx(3 / 6) and parts["w_option"] == pytest.approx(2 / 6)
    # over the price bound: (2 + 2 + 0) / 6
    reward, parts = get_reward(
        p,
        _goal(),
        35.0,
        {"color": "heather grey", "size": "large"},
        nouns="heuristic",
        rules="strict",
    )
    assert reward == pytest.approx(4 / 6) and parts["r_price"] is False
    # wrong size, all attributes: (3 + 1 + 1) / 6
    g = _goal(attributes=["cotton", "short sleeve", "crew neck"])
    reward, _ = get_reward(
        p, g, 25.0, {"color": "heather grey", "size": "x-large"}, nouns="heuristic", rules="strict"
    )
    assert reward == pytest.approx(5 / 6)
    # everything right: 1; times r_type 0.5 for a weak type match
    reward, _ = get_reward(
        p, g, 25.0, {"color": "gray", "size": "large"}, nouns="heuristic", rules="strict"
    )
    assert reward == pytest.approx(1.0)
    weak = _goal(
        name="Acme Cotton Crew Shirt Jersey Top",
        query="other",
        product_category="X › Y",
        attributes=g["attributes"],
    )
    reward, parts = get_reward(
        _product(name="Shirt Hanger", Title="Shirt Hanger", Description="cotton, short sleeve"),
        weak,
        25.0,
        {"color": "gray", "size": "large"},
        nouns="heuristic",
        rules="strict",
    )
    assert parts["r_type"] == 0.5
    # attributes: cotton (fuzzy), short sleeve (description); crew neck (bullet) -> 3/3
    assert reward == pytest.approx(0.5)


# -- pages and actions --------------------------------------------------------------------


@pytest.fixture(scope="module")
def env() -> WebShopEnv:
    return make("webshop")


def test_env_contract_and_shipped_data(env):
    assert isinstance(env, Env) and env.name == "webshop" and has_snapshots(env)
    data = env.data
    assert len(data.products) >= 500 and len(data.goals) >= 300
    assert len({p["category"] for p in data.products}) >= 5
    train, test = env.tasks("train"), env.tasks("test")
    assert len(train) >= 200 and len(test) >= 100 and not set(train) & set(test)
    assert len(train) + len(test) == len(data.goals)
    for g in data.goals:
        assert (
            g["asin"] in data.by_asin and len(g["attributes"]) >= 1 and len(g["goal_options"]) == 2
        )
        assert data.prices[g["asin"]] <= g["price_upper"]
        assert "price lower than" in g["instruction_text"]
    with pytest.raises(UserInputError):
        env.tasks("validation")
    with pytest.raises(UserInputError):
        env.reset("99999")


def test_reset_and_compact_pages(env):
    ctx = env.reset(env.tasks("test")[0])
    assert [m["role"] for m in ctx] == ["system", "user"]
    assert "search[" in ctx[0]["content"] and "click[" in ctx[0]["content"]
    assert ctx[1]["content"].startswith("Instruction: ") and "price lower than" in ctx[1]["content"]
    assert env.valid_actions() == [f"search[{FREE_TEXT}]"]
    obs, reward, done, info = env.step("I will search.\nsearch[t-shirt cotton]")
    assert not done and reward == 0 and not info["invalid"]
    lines = obs.splitlines()
    # every page starts with the instruction, as upstream's text observation does
    instruction = ctx[1]["content"].splitlines()[0]
    assert lines[0] == instruction
    lines = lines[1:]
    assert len(lines) == 12  # header, 10 products, buttons
    assert all(line.startswith("[b0") and " | $" in line for line in lines[1:11])
    valid = env.valid_actions()
    assert valid[:2] == ["click[back to search]", "click[next >]"] and len(valid) == 12
    obs, _, _, info = env.step("click[next >]")
    assert "Page 2 of" in obs and "click[< prev]" in env.valid_actions()
    asin = env.state.page_asins()[0].lower()
    obs, _, _, info = env.step(f"Thought: try it. click[{asin.upper()}]")
    assert info["page"] == "item" and obs.startswith(f"{instruction}\n[{asin}]")
    assert any(line.startswith("color: [") for line in obs.splitlines())
    assert {"click[description]", "click[features]", "click[reviews]", "click[buy now]"} <= set(
        env.valid_actions()
    )
    assert len(obs) - len(instruction) < 400
    product = env.data.by_asin[env.state.asin]
    color = product["options"]["color"][0]
    obs, *_ = env.step(f"click[{color}]")
    assert f"chosen: color={color}" in obs
    obs, *_ = env.step("click[reviews]")
    assert obs.startswith(f"{instruction}\nReviews of") and env.valid_actions() == [
        "click[back to search]",
        "click[< prev]",
    ]
    obs, *_ = env.step("click[< prev]")
    assert f"chosen: color={color}" in obs  # options kept
    obs, *_ = env.step("click[< prev]")
    assert "Page 2 of" in obs
    obs, *_ = env.step("click[back to search]")
    assert obs.startswith("Instruction: ")


def test_every_valid_action_is_accepted(env):
    env.reset(env.tasks("train")[3])
    rng = random.Random(0)
    for _ in range(12):
        snap = env.snapshot()
        valid = env.valid_actions()
        if not valid:
            break
        for a in valid:
            env.restore(snap)
            _, _, _, info = env.step(a.replace(FREE_TEXT, "coffee"))
            assert not info["invalid"], a
        env.restore(snap)
        choice = rng.choice([a for a in valid if a != "click[buy now]"] or valid)
        env.step(choice.replace(FREE_TEXT, "coffee mug"))


def test_invalid_actions_are_observations(env):
    env.reset(env.tasks("test")[1])
    cases = [
        ("I am not sure what to do.", "no search"),
        ("click[buy now]", "not clickable"),
        ("search[]", "empty"),
        (f"search[{FREE_TEXT}]", "empty"),
    ]
    for action, words in cases:
        obs, reward, done, info = env.step(action)
        assert info["invalid"] and reward == 0 and not done and words in obs
        assert env.state.page == "search"
    env.step("search[water bottle]")
    obs, _, _, info = env.step("search[mug]")
    assert info["invalid"] and "back to search" in obs and env.state.page == "results"
    obs, _, _, info = env.step("click[b0nothere00]")
    assert info["invalid"] and env.state.page == "results"


def test_step_limit(env):
    env.reset(env.tasks("test")[2])
    for i in range(env.max_steps):
        _, reward, done, info = env.step("nonsense")
        assert done == (i == env.max_steps - 1)
    assert info["step_limit"] and reward == 0
    _, _, done, info = env.step("search[x]")
    assert done and info["invalid"]


def test_snapshot_restore_round_trip(env):
    tid = env.tasks("train")[0]
    env.reset(tid)
    env.step(expert_action(env))
    snap = env.snapshot()
    obs0, valid0 = env.observation(), env.valid_actions()
    path = []
    for _ in range(4):
        a = expert_action(env)
        path.append(a)
        last = env.step(a)
    assert last.done and last.reward == 1.0
    env.restore(snap)
    assert env.observation() == obs0 and env.valid_actions() == valid0
    for a in path:
        again = env.step(a)
    assert again.observation == last.observation and again.reward == last.reward
    # restoring into another task's episode
    env.reset(env.tasks("test")[0])
    env.restore(snap)
    assert env.observation() == obs0 and env.goal is env.data.goals[int(tid)]


def test_parse_action():
    assert parse_action("think... search[a] then Click[ Red ]") == ("click", "red")
    assert parse_action("Search[Red Shirt]") == ("search", "Red Shirt")
    assert parse_action("nothing") is None


def test_expert_solves_every_shipped_task(env):
    steps = []
    for split in ("train", "test"):
        for tid in env.tasks(split):
            reward, n, info = run_episode(env, tid, "expert")
            assert reward == pytest.approx(1.0), (tid, info)
            assert info["r_type"] == 1.0 and info["r_option"] == 1.0
            steps.append(n)
    assert 4 <= min(steps) and max(steps) <= 6


def test_random_policy_rarely_succeeds(env):
    tasks = env.tasks("train") + env.tasks("test")
    wins = sum(run_episode(env, tid, "random", seed=0)[0] >= 1 - 1e-9 for tid in tasks)
    rate = wins / len(tasks)
    print(f"random valid-action policy success: {wins}/{len(tasks)} = {rate:.4f}")
    assert rate < 0.15


def test_deterministic_given_seed():
    a, b = WebShopEnv(seed=0), WebShopEnv(seed=0)
    for e in (a, b):
        e.reset("5")
    assert a.goal == b.goal
    assert a.step("search[mug ceramic]").observation == b.step("search[mug ceramic]").observation


def test_shipped_data_matches_generator(tmp_path):
    from agentq.envs.webshop.generate import generate
    from agentq.envs.webshop.loaders import SHIPPED_DIR

    generate(tmp_path)
    for name in (
        "items_shuffle.json.gz",
        "items_ins_v2.json.gz",
        "items_human_ins.json.gz",
        "reviews.json.gz",
    ):
        with gzip.open(tmp_path / name) as f1, gzip.open(SHIPPED_DIR / name) as f2:
            assert json.load(f1) == json.load(f2), name


# -- loaders for the official formats ----------------------------------------------------


def _official_files(d: Path, n_extra_goals: int = 0) -> None:
    products = [
        {
            "asin": "B000000001",
            "name": "Acme Cotton T-Shirt",
            "full_description": "A soft shirt.",
            "small_description": ["Cotton", "Machine wash"],
            "pricing": "$10.00 - $20.00",
            "customization_options": {
                "Color": [
                    {"value": "Black/White", "image": "x.jpg"},
                    {"value": "Red", "image": None},
                ],
                "Size": [{"value": "Large", "image": None}],
            },
            "category": "fashion",
            "query": "T-Shirt ",
            "product_category": "Clothing › Men › Shirts",
            "images": ["x.jpg"],
        },
        {
            "asin": "B000000002",
            "name": "Bolt Steel Mug",
            "full_description": "Keeps coffee hot.",
            "small_description": "Insulated",
            "pricing": "$8.50",
            "customization_options": None,
            "category": "home",
            "query": "mug",
            "product_category": "Home › Kitchen › Mugs",
            "images": [],
        },
        {"asin": "B000000001", "name": "duplicate", "pricing": "", "customization_options": {}},
        {"asin": "nan", "name": "bad asin", "pricing": ""},
        {
            "asin": "B000000003",
            "name": "No Price Thing",
            "full_description": "",
            "small_description": [],
            "pricing": "",
            "customization_options": {},
            "category": "home",
            "query": "thing",
            "product_category": "Home",
            "images": [],
        },
    ]
    attrs = {
        "B000000001": {
            "attributes": ["cotton", "machine wash"],
            "instruction": "i want a cotton t-shirt",
            "instruction_attributes": ["cotton"],
        },
        "B000000002": {
            "attributes": ["insulated"],
            "instruction": "i want an insulated mug",
            "instruction_attributes": ["insulated"],
        },
    }
    human = {
        "B000000001": [
            {
                "asin": "B000000001",
                "instruction": "i need a red cotton t-shirt in large.",
                "instruction_attributes": ["cotton"],
                "instruction_options": ["red", "large"],
            },
            {
                "asin": "B000000001",
                "instruction": "skipped: no attributes",
                "instruction_attributes": [],
                "instruction_options": [],
            },
        ],
        "B000000002": [
            {
                "asin": "B000000002",
                "instruction": f"an insulated mug number {i}",
                "instruction_attributes": ["insulated"],
                "instruction_options": [],
            }
            for i in range(n_extra_goals)
        ],
    }
    reviews = [
        {
            "asin": "B000000002",
            "average_rating": 4.5,
            "reviews": [{"title": "ok", "stars": 4, "review": "fine mug"}],
        }
    ]
    (d / "items_shuffle_1000.json").write_text(json.dumps(products))
    (d / "items_ins_v2_1000.json").write_text(json.dumps(attrs))
    with gzip.open(d / "items_human_ins.json.gz", "wt") as f:
        json.dump(human, f)
    (d / "reviews.json").write_text(json.dumps(reviews))


def test_loader_processes_official_products(tmp_path):
    _official_files(tmp_path)
    data = load_directory(tmp_path, seed=3)
    assert [p["asin"] for p in data.products] == ["B000000001", "B000000002", "B000000003"]
    shirt, mug, thing = data.products
    assert shirt["Title"] == "Acme Cotton T-Shirt" and shirt["query"] == "t-shirt"
    assert shirt["options"] == {"color": ["black | white", "red"], "size": ["large"]}
    assert shirt["pricing"] == [10.0, 20.0] and shirt["Price"] == "$10.0 to $20.0"
    assert shirt["Attributes"] == ["cotton", "machine wash"]
    assert mug["BulletPoints"] == ["Insulated"] and mug["options"] == {}
    assert (
        mug["Reviews"] == [{"title": "ok", "score": 4, "body": "fine mug"}] and mug["Rating"] == 4.5
    )
    assert thing["pricing"] == [100.0] and thing["Attributes"] == ["DUMMY_ATTR"]
    # seeded prices: the range product gets a uniform draw, reproducible for the seed
    assert 10.0 <= data.prices["B000000001"] <= 20.0 and data.prices["B000000002"] == 8.5
    assert load_directory(tmp_path, seed=3).prices == data.prices
    assert load_directory(tmp_path, seed=4).prices["B000000001"] != data.prices["B000000001"]
    # one human goal (the one with no attributes is skipped)
    (goal,) = data.goals
    assert goal["asin"] == "B000000001" and goal["goal_options"] == ["red", "large"]
    assert goal["price_upper"] in PRICE_RANGE and goal["price_upper"] > data.prices["B000000001"]
    assert goal["instruction_text"] == (
        f"i need a red cotton t-shirt in large, and price lower than {goal['price_upper']:.2f} dollars"
    )
    # synthetic goals: one per option combination (2 colours x 1 size) + the mug's one
    syn = load_directory(tmp_path, goals="synthetic")
    assert len(syn.goals) == 3
    assert {
        json.dumps(g["goal_options"], sort_keys=True)
        for g in syn.goals
        if g["asin"] == "B000000001"
    } == {
        '{"color": "black | white", "size": "large"}',
        '{"color": "red", "size": "large"}',
    }


def test_loader_baseline_split_and_env_on_official_files(tmp_path):
    _official_files(tmp_path, n_extra_goals=1600)
    env = make("webshop", data=str(tmp_path), seed=1)
    assert len(env.tasks("test")) == 500 and env.tasks("test")[0] == "0"
    assert len(env.tasks("validation")) == 1000 and env.tasks("validation")[0] == "500"
    assert len(env.tasks("train")) == 101 and env.tasks("train")[-1] == "1600"
    # goals are shuffled with WebShop's seed 233: the same order every time
    again = load_directory(tmp_path, seed=1)
    assert [g["instruction_text"] for g in again.goals] == [
        g["instruction_text"] for g in env.data.goals
    ]
    shirt_goal = next(i for i, g in enumerate(env.data.goals) if g["asin"] == "B000000001")
    reward, steps, info = run_episode(env, str(shirt_goal), "expert")
    assert reward == pytest.approx(1.0) and steps == 5
    # num_products keeps the first products only
    small = load_directory(tmp_path, num_products=1)
    assert len(small.products) == 1 and len(small.goals) == 1


def test_loader_errors(tmp_path):
    with pytest.raises(UserInputError):
        make("webshop", data=str(tmp_path / "missing"))
    with pytest.raises(UserInputError):
        load_directory(tmp_path)  # no product file
    (tmp_path / "items_shuffle_1000.json").write_text("{not json")
    with pytest.raises(UserInputError):
        load_webshop(tmp_path / "items_shuffle_1000.json")
    with pytest.raises(UserInputError):
        make("webshop", goals="other")


def test_parse_pricing():
    assert parse_pricing("$12.99") == ([12.99], "$12.99")
    assert parse_pricing("$1,299.00 - $1,499.00") == ([1299.0, 1499.0], "$1299.0 to $1499.0")
    assert parse_pricing(None) == ([100.0], "$100.0")


def test_load_shipped_is_the_env_data(env):
    data = load_shipped()
    assert [g["instruction_text"] for g in data.goals] == [
        g["instruction_text"] for g in env.data.goals
    ]


def test_noun_finder_options():
    from agentq.envs.webshop.reward import _spacy_nlp, name_nouns

    nouns, method = name_nouns("Acme Soft Cotton T-Shirt for Men", "heuristic")
    assert method == "heuristic" and nouns == ["acme", "cotton", "shirt", "men"]
    if _spacy_nlp() is None:
        with pytest.raises(RuntimeError):
            name_nouns("Acme Shirt", "spacy")
        assert name_nouns("Acme Shirt", "auto")[1] == "heuristic"
    with pytest.raises(ValueError):
        name_nouns("Acme Shirt", "other")
    with pytest.raises(UserInputError):
        make("webshop", nouns="other")
    with pytest.raises(UserInputError):
        make("webshop", max_steps=0)


def test_instruction_search_offers_the_instruction_as_the_one_search():
    from agentq.envs.webshop.env import instruction_query

    env = WebShopEnv(instruction_search=True)
    task = env.tasks("test")[0]
    env.reset(task)
    (action,) = env.valid_actions()
    assert action.startswith("search[") and "price lower than" not in action
    assert (
        instruction_query("i want a red mug, and price lower than 20.00 dollars")
        == "i want a red mug"
    )
    obs, reward, done, info = env.step(action)
    assert not info["invalid"] and "results" in obs and not done
    assert any(a.startswith("click[b0") for a in env.valid_actions())
    # searching again gives the same page: back to search is not offered, but still works
    assert "click[back to search]" not in env.valid_actions()
    page = env.observation()
    item = next(a for a in env.valid_actions() if a.startswith("click[b0"))
    env.step(item)
    assert "click[back to search]" not in env.valid_actions()
    assert "click[< prev]" in env.valid_actions()
    env.step("click[back to search]")
    assert env.valid_actions() == [action]
    assert env.step(action).observation == page


# -- reward against upstream's own numbers ------------------------------------------------

UPSTREAM_CASES = Path(__file__).parent / "data" / "webshop_upstream_reward.json"


def test_reward_equals_upstream_reference_values():
    """Values computed by running upstream's get_reward on real-format records (see the file)."""
    cases = json.loads(UPSTREAM_CASES.read_text())["cases"]
    assert len(cases) >= 50
    differs_from_strict = 0
    for c in cases:
        reward, parts = get_reward(
            c["product"], c["goal"], c["price"], c["options"], nouns="heuristic"
        )
        ref = c["upstream"]
        assert parts["num_attr_matches"] == ref["num_attr"], c
        assert parts["num_option_matches"] == ref["num_opt"], c
        assert reward == pytest.approx(ref["reward"], abs=1e-12), c
        strict, _ = get_reward(
            c["product"], c["goal"], c["price"], c["options"], nouns="heuristic", rules="strict"
        )
        differs_from_strict += abs(strict - ref["reward"]) > 1e-9
    assert differs_from_strict > 0  # the cases separate the two rule sets


def test_upstream_matching_rules():
    from agentq.envs.webshop.reward import fuzzy_score, upstream_normalize_color

    # thefuzz processing: case and punctuation do not matter, the score is rounded
    assert fuzzy_score("Machine-Wash", "machine wash") == 100
    assert fuzzy_score("x-large", "large") == 100  # sizes match fuzzily upstream
    # upstream's colour list order and substring test: "heather grey" -> "grey", not "gray"
    assert upstream_normalize_color("heather grey") == "grey"
    assert upstream_normalize_color("redwood") == "red"
    p = _product(BulletPoints=["colored stitching"])
    # substring occurrence (upstream) against whole words (strict)
    r_up, parts_up = get_reward(p, _goal(attributes=["red"]), 25.0, {}, nouns="heuristic")
    r_st, parts_st = get_reward(
        p, _goal(attributes=["red"]), 25.0, {}, nouns="heuristic", rules="strict"
    )
    assert parts_up["num_attr_matches"] == 1 and parts_st["num_attr_matches"] == 0
    assert parts_up["rules"] == "upstream" and parts_st["rules"] == "strict"
    with pytest.raises(ValueError):
        get_reward(p, _goal(), 25.0, {}, rules="lenient")


def test_shipped_products_load_in_upstreams_loader_shape():
    from agentq.envs.webshop.loaders import SHIPPED_DIR

    products = json.loads(gzip.open(SHIPPED_DIR / "items_shuffle.json.gz").read())
    # upstream's load_products reads these keys of every raw product, images[0] included
    for p in products:
        assert p["images"] and isinstance(p["images"][0], str)
        for key in (
            "asin",
            "category",
            "query",
            "product_category",
            "name",
            "full_description",
            "small_description",
            "customization_options",
        ):
            assert key in p


def test_reward_rules_option_of_the_environment():
    with pytest.raises(UserInputError):
        WebShopEnv(reward_rules="lenient")
    assert WebShopEnv(reward_rules="strict").reward_rules == "strict"


def test_read_item_options_reads_what_render_item_wrote() -> None:
    from agentq.envs.webshop.engine import read_item_options

    env = WebShopEnv(instruction_search=True)
    task = next(t for t in env.tasks("train") if len(env.goal_of(t)["goal_options"]) >= 2)
    env.reset(task)
    env.step(env.valid_actions()[0])  # the search
    asin = str(env.goal_of(task)["asin"]).lower()
    obs = env.step(f"click[{asin}]")[0]
    kinds, chosen = read_item_options(obs)
    assert len(kinds) >= 2 and chosen == {}
    value = next(a for a in env.valid_actions() if a[6:-1] in obs.split("\n")[2])[6:-1]
    obs = env.step(f"click[{value}]")[0]
    assert read_item_options(obs) == (kinds, {kinds[0]: value})
    assert read_item_options("Instruction: a mug\nPage 1 of 5 (50 results):") == ([], {})
