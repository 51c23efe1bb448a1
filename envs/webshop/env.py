"""``WebShopEnv``: the text WebShop environment behind agentq's ``Env`` contract."""

from __future__ import annotations

import re
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from agentq.envs.webshop.engine import (
    BACK_TO_SEARCH,
    BUY_NOW,
    NEXT_PAGE,
    PREV_PAGE,
    SUB_PAGES,
    PageState,
    clickables,
    describe_valid,
    format_price,
    option_lookup,
    parse_action,
    render_item,
    render_results,
    render_search,
    render_sub,
)
from agentq.envs.webshop.loaders import SHIPPED_DIR, WebShopData, load_directory
from agentq.envs.webshop.reward import REWARD_RULES, get_reward
from agentq.envs.webshop.search import SEARCH_RETURN_N, ProductSearch

from agentq.errors import UserInputError
from agentq.protocols import FREE_TEXT
from agentq.types import Context, StepResult

SYSTEM_PROMPT = (
    "You shop in WebShop for the item in the instruction. Reply with one command: "
    "search[query] on the search page, or click[x] with x an element in brackets on the page "
    "(a product id, an option, next >, < prev, back to search, description, features, "
    "reviews, buy now). Pick every option the instruction asks for, then click[buy now]. "
    "The last command in your reply is run."
)

_CACHE: dict[tuple[Any, ...], tuple[WebShopData, ProductSearch]] = {}
_CACHE_LOCK = threading.Lock()


def load_cached(
    data: str | Path = "shipped",
    seed: int = 0,
    goals: str = "human",
    num_products: int | None = None,
) -> tuple[WebShopData, ProductSearch]:
    """The loaded data and its BM25 index, shared by environments with the same options."""
    directory = SHIPPED_DIR if str(data) == "shipped" else Path(data).expanduser().resolve()
    key = (str(directory), seed, goals, num_products)
    with _CACHE_LOCK:
        if key not in _CACHE:
            loaded = load_directory(directory, goals=goals, num_products=num_products, seed=seed)
            _CACHE[key] = (loaded, ProductSearch(loaded.products))
        return _CACHE[key]


class WebShopEnv:
    """The WebShop text environment (Yao et al., 2022) with compact observations.

    Options: ``data`` (``"shipped"`` or a directory with the official files), ``seed`` (price
    generation), ``max_steps`` (default 15), ``goals`` (``"human"`` or ``"synthetic"``),
    ``num_products`` (keep the first N products), ``nouns`` (the type reward's noun finder:
    ``"auto"``, ``"spacy"`` or ``"heuristic"``), ``title_chars`` (cut long titles; default 80)
    and ``text_chars`` (cut sub-page text; default 300), ``reward_rules`` (``"upstream"``, the
    default, gives upstream's ``get_reward`` numbers; ``"strict"`` is agentq's earlier stricter
    reading, see :mod:`agentq.envs.webshop.reward`) and ``instruction_every_page`` (default True:
    every page starts with ``Instruction: ...`` as upstream's text observation does; False shows
    it on the search page only, the departure of agentq before 0.2).

    Task ids are goal indices as strings (``"0"``, ``"1"``, ...) in the shuffled goal order.
    The reward comes at ``click[buy now]`` (``done``); ``info`` holds its parts.
    """

    name = "webshop"
    deterministic = True

    def __init__(
        self,
        data: str | Path = "shipped",
        seed: int = 0,
        max_steps: int = 15,
        goals: str = "human",
        num_products: int | None = None,
        nouns: str = "auto",
        title_chars: int | None = 80,
        text_chars: int | None = 300,
        search_return_n: int = SEARCH_RETURN_N,
        instruction_search: bool = False,
        reward_rules: str = "upstream",
        instruction_every_page: bool = True,
    ) -> None:
        if max_steps < 1:
            raise UserInputError("max_steps must be at least 1")
        if nouns not in ("auto", "spacy", "heuristic"):
            raise UserInputError(f"nouns must be 'auto', 'spacy' or 'heuristic', not {nouns!r}")
        if reward_rules not in REWARD_RULES:
            raise UserInputError(
                f"reward_rules must be one of {', '.join(REWARD_RULES)}, not {reward_rules!r}"
            )
        self.data, self.index = load_cached(data, seed=seed, goals=goals, num_products=num_products)
        self.data_seed = seed
        self.max_steps = max_steps
        self.nouns = nouns
        self.title_chars = title_chars
        self.text_chars = text_chars
        self.search_return_n = search_return_n
        self.instruction_search = instruction_search
        self.reward_rules = reward_rules
        self.instruction_every_page = instruction_every_page
        self._lower_asin = {a.lower(): a for a in self.data.by_asin}
        self._task: str | None = None
        self.goal: dict[str, Any] | None = None
        self._state = PageState()
        self._steps = 0
        self._done = False
        self._reward = 0.0

    # -- tasks ---------------------------------------------------------------------------
    def tasks(self, split: str) -> list[str]:
        """Goal indices of ``split`` as strings (shipped: train/test; official: also validation)."""
        return [str(i) for i in self.data.split_indices(split)]

    def goal_of(self, task_id: str) -> dict[str, Any]:
        """The goal record of ``task_id`` (instruction, target asin, attributes, options, price)."""
        try:
            i = int(str(task_id).rsplit("-", 1)[-1])
        except ValueError as e:
            raise UserInputError(f"bad WebShop task id {task_id!r}: expected a goal index") from e
        if not 0 <= i < len(self.data.goals):
            raise UserInputError(
                f"WebShop task {task_id!r} out of range (0..{len(self.data.goals) - 1})"
            )
        return self.data.goals[i]

    # -- episode -------------------------------------------------------------------------
    def reset(self, task_id: str) -> Context:
        """Start ``task_id`` on the search page."""
        self.goal = self.goal_of(task_id)
        self._task = str(task_id)
        self._state = PageState()
        self._steps = 0
        self._done = False
        self._reward = 0.0
        return [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": render_search(self.goal["instruction_text"])},
        ]

    @property
    def state(self) -> PageState:
        """The current page state."""
        return self._state

    def observation(self) -> str:
        """The current page as text (with the instruction on top, as upstream's text pages)."""
        s = self._state
        if s.page == "search":
            return render_search(self.goal["instruction_text"] if self.goal else "")
        page = self._page_body()
        if self.instruction_every_page and self.goal is not None and s.page != "done":
            return f"Instruction: {self.goal['instruction_text']}\n{page}"
        return page

    def _page_body(self) -> str:
        s = self._state
        if s.page == "results":
            return render_results(s, self.data.by_asin, self.data.prices, self.title_chars)
        product = self.data.by_asin[s.asin] if s.asin else None
        if s.page == "item" and product is not None:
            return render_item(s, product, self.data.prices[product["asin"]], self.title_chars)
        if s.page == "sub" and product is not None:
            return render_sub(s, product, self.text_chars)
        return "The episode is over."

    def valid_actions(self) -> list[str] | None:
        """``["search[...]"]`` on the search page, else the page's clickables as ``click[x]``.

        With ``instruction_search=True`` the search page offers one action instead: a search for
        the instruction itself (its price clause removed), the query WebShop's rule baseline
        uses. Small policies then spend their choices on items and options, not on writing
        a query (SmolLM2-135M copies the page's wording instead of the instruction's). Since
        that search always gives the same results, ``click[back to search]`` is then a pure
        detour back to the same page and is not offered (it still works when typed); agents
        that took it spent two steps per loop and re-drew the same choices until the step limit.
        """
        if self._done:
            return []
        if self._state.page == "search":
            if self.instruction_search and self.goal is not None:
                return [f"search[{instruction_query(self.goal['instruction_text'])}]"]
            return [f"search[{FREE_TEXT}]"]
        product = self.data.by_asin.get(self._state.asin) if self._state.asin else None
        found = clickables(self._state, product)
        if self.instruction_search and len(found) > 1:
            found = [c for c in found if c != BACK_TO_SEARCH]
        return [f"click[{c}]" for c in found]

    def _invalid(self, message: str) -> StepResult:
        done = self._steps >= self.max_steps
        self._done = done
        obs = f"Invalid action: {message} Valid: {describe_valid(self.valid_actions() or [])}"
        return StepResult(
            obs, 0.0, done, {"invalid": True, "step_limit": done, "page": self._state.page}
        )

    def _ok(self, state: PageState) -> StepResult:
        self._state = state
        done = self._steps >= self.max_steps
        self._done = done
        return StepResult(
            self.observation(),
            0.0,
            done,
            {"invalid": False, "step_limit": done, "page": state.page},
        )

    def step(self, action: str) -> StepResult:
        """Run the last ``search[...]``/``click[...]`` command in ``action``."""
        if self.goal is None:
            raise RuntimeError("call reset() before step()")
        if self._done:
            return StepResult("The episode is over.", 0.0, True, {"invalid": True, "page": "done"})
        self._steps += 1
        parsed = parse_action(action)
        if parsed is None:
            return self._invalid("no search[...] or click[...] command found.")
        verb, arg = parsed
        s = self._state
        if verb == "search":
            if s.page != "search":
                return self._invalid(
                    "there is no search box on this page; click[back to search] first."
                )
            if not arg or arg == FREE_TEXT:
                return self._invalid("empty search query.")
            results = tuple(self.index.search(arg.lower(), k=self.search_return_n))
            return self._ok(
                PageState(page="results", query=arg.lower(), results=results, visited=s.visited)
            )
        product = self.data.by_asin.get(s.asin) if s.asin else None
        if arg not in clickables(s, product):
            return self._invalid(f"{arg!r} is not clickable on this page.")
        if arg == BACK_TO_SEARCH:
            return self._ok(PageState(visited=s.visited))
        if s.page == "results":
            if arg == NEXT_PAGE:
                return self._ok(replace(s, page_no=s.page_no + 1))
            if arg == PREV_PAGE:
                return self._ok(replace(s, page_no=s.page_no - 1))
            asin = self._lower_asin[arg]
            return self._ok(
                replace(s, page="item", asin=asin, options=(), visited=(*s.visited, asin))
            )
        if s.page == "sub":
            return self._ok(replace(s, page="item", sub=None))
        assert product is not None
        if arg == PREV_PAGE:
            return self._ok(replace(s, page="results", asin=None, options=()))
        if arg in SUB_PAGES:
            return self._ok(replace(s, page="sub", sub=arg))
        if arg == BUY_NOW:
            return self._buy(product)
        kind = option_lookup(product, arg)
        assert kind is not None
        return self._ok(s.with_option(kind, arg))

    def _buy(self, product: dict[str, Any]) -> StepResult:
        assert self.goal is not None
        price = self.data.prices[product["asin"]]
        chosen = self._state.chosen()
        reward, parts = get_reward(
            product, self.goal, price, chosen, nouns=self.nouns, rules=self.reward_rules
        )
        self._state = replace(self._state, page="done")
        self._done = True
        self._reward = reward
        opts = ", ".join(f"{k}={v}" for k, v in chosen.items()) or "no options"
        obs = (
            f"You bought [{product['asin'].lower()}] ({opts}) for {format_price(price)}. "
            f"Reward: {reward:.3f}"
        )
        info = {
            "invalid": False,
            "page": "done",
            "reward_parts": parts,
            **{k: parts[k] for k in ("r_type", "r_att", "r_option", "r_price")},
            "asin": product["asin"],
            "target_asin": self.goal["asin"],
            "options": chosen,
            "price": price,
            "price_upper": self.goal["price_upper"],
        }
        return StepResult(obs, reward, True, info)

    # -- snapshots -----------------------------------------------------------------------
    def snapshot(self) -> Any:
        """The episode state (immutable parts only, so it is cheap)."""
        return (self._task, self._state, self._steps, self._done, self._reward)

    def restore(self, state: Any) -> None:
        """Return to a state taken by :meth:`snapshot`."""
        task, page_state, steps, done, reward = state
        if task != self._task:
            self.goal = self.goal_of(task)
            self._task = task
        self._state, self._steps, self._done, self._reward = page_state, steps, done, reward


__all__ = ["SYSTEM_PROMPT", "WebShopEnv", "load_cached"]


def instruction_query(instruction: str) -> str:
    """The instruction as a search query: lower case, without its price clause and brackets."""
    text = re.split(r",?\s*and price lower than", instruction, maxsplit=1)[0]
    return re.sub(r"[\[\]]", " ", text).strip().lower()
