"""A scripted expert for WebShop and a random valid-action baseline.

The expert knows the goal (``env.goal``): it searches the instruction without its price part,
pages through the results to the target product, clicks each goal option the product offers and
buys. On the shipped data this takes 5 steps and earns reward 1 on every task.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Any

from agentq.envs.webshop.engine import BACK_TO_SEARCH, BUY_NOW, NEXT_PAGE, PREV_PAGE
from agentq.envs.webshop.reward import goal_option_values

from agentq.protocols import FREE_TEXT

_PRICE_RE = re.compile(r",?\s*and price lower than [\d.]+ dollars\s*$")


def expert_query(instruction: str) -> str:
    """The instruction without its trailing price clause."""
    return _PRICE_RE.sub("", instruction).strip()


def expert_action(env: Any) -> str:
    """The expert's next action in ``env``'s current state (a WebShopEnv after ``reset``)."""
    goal = env.goal
    state = env.state
    target = str(goal["asin"])
    if state.page == "search":
        return f"search[{expert_query(goal['instruction_text'])}]"
    if state.page == "results":
        if target in state.page_asins():
            return f"click[{target.lower()}]"
        if target in state.results and state.results.index(target) < (state.page_no - 1) * 10:
            return f"click[{PREV_PAGE}]"
        if target in state.results:
            return f"click[{NEXT_PAGE}]"
        return f"click[{BACK_TO_SEARCH}]"
    if state.page == "sub":
        return f"click[{PREV_PAGE}]"
    if state.page == "item":
        if state.asin != target:
            return f"click[{PREV_PAGE}]"
        product = env.data.by_asin[target]
        chosen = set(state.chosen().values())
        offered = {v for vs in product["options"].values() for v in vs}
        for value in goal_option_values(goal):
            v = str(value).lower()
            if v in offered and v not in chosen:
                return f"click[{v}]"
        return f"click[{BUY_NOW}]"
    return f"click[{BUY_NOW}]"


def random_action(valid: Sequence[str], rng: random.Random, words: Sequence[str]) -> str:
    """A uniform pick among ``valid``; ``search[...]`` gets a random word from ``words``."""
    action = rng.choice(list(valid))
    if FREE_TEXT in action:
        action = action.replace(FREE_TEXT, rng.choice(list(words)))
    return action


def run_episode(
    env: Any, task_id: str, policy: str = "expert", seed: int = 0
) -> tuple[float, int, dict[str, Any]]:
    """Play ``task_id`` with ``"expert"`` or ``"random"``; returns (reward, steps, last info).

    The random policy's search words are the words of the instruction.
    """
    context = env.reset(task_id)
    rng = random.Random(f"{seed}|{task_id}")
    words = re.findall(
        r"[a-z0-9]+", context[-1]["content"].split("\n")[0].lower().removeprefix("instruction:")
    )
    reward, steps, info, done = 0.0, 0, {}, False
    while not done:
        if policy == "expert":
            action = expert_action(env)
        else:
            action = random_action(env.valid_actions() or [], rng, words)
        _, reward, done, info = env.step(action)
        steps += 1
    return reward, steps, info


__all__ = ["expert_action", "expert_query", "random_action", "run_episode"]
