"""``toy``: a tiny corridor of rooms with doors, whose optimal Q values are known exactly.

Each task is a corridor of ``rooms`` rooms with ``doors`` doors each (``open[A]``, ``open[B]``,
...). Each door of each room has a success probability (from the task id); after the last room
the episode ends with reward 1 with probability equal to the product of the chosen doors'
probabilities (``variant="stochastic"``), or exactly that product (``variant="deterministic"``,
where one door per room has probability 1 and the others 0). So

    Q*(room k, door i) = p[k][i] * prod_{j > k} max_i' p[j][i'].

Observations are deterministic, so ``snapshot``/``restore`` are exact; only the final reward is
drawn, from the environment's own seeded generator.
"""

from __future__ import annotations

import hashlib
import random
import re
from typing import Any

from agentq.types import Context, StepResult

_ACTION_RE = re.compile(r"open\[\s*([A-Za-z])\s*\]")
_STOCHASTIC_PROBS = (0.9, 0.6, 0.3, 0.15, 0.05)

SYSTEM_PROMPT = (
    "You are in a corridor of rooms. In each room, open one door with the action open[X], "
    "where X is the door's letter. Reply with one action."
)


def _task_rng(task_id: str) -> random.Random:
    return random.Random(int(hashlib.sha256(task_id.encode()).hexdigest()[:16], 16))


class ToyEnv:
    """The corridor environment (see the module docstring)."""

    name = "toy"

    def __init__(
        self,
        variant: str = "stochastic",
        rooms: int = 3,
        doors: int = 3,
        seed: int = 0,
        n_train: int = 50,
        n_test: int = 20,
        max_steps: int | None = None,
    ) -> None:
        if variant not in ("stochastic", "deterministic"):
            raise ValueError(f"variant must be 'stochastic' or 'deterministic', not {variant!r}")
        if not 1 <= doors <= len(_STOCHASTIC_PROBS):
            raise ValueError(f"doors must be between 1 and {len(_STOCHASTIC_PROBS)}")
        if rooms < 1:
            raise ValueError(f"rooms must be at least 1, not {rooms}")
        if n_train < 0 or n_test < 0:
            raise ValueError("n_train and n_test must be >= 0")
        if max_steps is not None and max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, not {max_steps}")
        self.variant = variant
        self.rooms = rooms
        self.doors = doors
        self.letters = [chr(ord("A") + i) for i in range(doors)]
        self.n_train = n_train
        self.n_test = n_test
        self.max_steps = max_steps if max_steps is not None else rooms + 2
        # Transitions and observations are deterministic in both variants (only the final
        # reward is drawn), so snapshots are exact and MCTS may use them.
        self.deterministic = True
        self._rng = random.Random(seed)
        self._task: str | None = None
        self._probs: list[list[float]] = []
        self._path: list[int] = []
        self._steps = 0
        self._done = False

    # -- tasks ---------------------------------------------------------------------------
    def tasks(self, split: str) -> list[str]:
        """``toy-{split}-{i}`` ids; any split name works (train and test have their sizes)."""
        n = {"train": self.n_train, "test": self.n_test}.get(split, self.n_test)
        return [f"toy-{split}-{i}" for i in range(n)]

    def door_probs(self, task_id: str) -> list[list[float]]:
        """Success probability of each door of each room for ``task_id``."""
        rng = _task_rng(f"{task_id}|{self.rooms}|{self.doors}|{self.variant}")
        out = []
        for _ in range(self.rooms):
            if self.variant == "deterministic":
                probs = [1.0] + [0.0] * (self.doors - 1)
            else:
                probs = list(_STOCHASTIC_PROBS[: self.doors])
            rng.shuffle(probs)
            out.append(probs)
        return out

    def optimal_q(self, task_id: str, room: int) -> dict[str, float]:
        """Exact Q* of every door action in room ``room`` (0-based) of ``task_id``."""
        probs = self.door_probs(task_id)
        tail = 1.0
        for j in range(room + 1, self.rooms):
            tail *= max(probs[j])
        return {f"open[{self.letters[i]}]": p * tail for i, p in enumerate(probs[room])}

    # -- episode -------------------------------------------------------------------------
    def _room_text(self) -> str:
        doors = ", ".join(self.letters)
        return f"You are in room {len(self._path) + 1} of {self.rooms}. Doors: {doors}."

    def reset(self, task_id: str) -> Context:
        """Start ``task_id`` in room 1."""
        self._task = task_id
        self._probs = self.door_probs(task_id)
        self._path = []
        self._steps = 0
        self._done = False
        return [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": f"Task {task_id}. {self._room_text()}"},
        ]

    def step(self, action: str) -> StepResult:
        """Open the door named in ``action`` (the last ``open[X]`` in the text)."""
        if self._task is None:
            raise RuntimeError("call reset() before step()")
        if self._done:
            return StepResult("The episode is over.", 0.0, True, {"invalid": True})
        self._steps += 1
        found = _ACTION_RE.findall(action or "")
        letter = found[-1].upper() if found else None
        if letter not in self.letters:
            obs = f"Invalid action {action!r}. Valid actions: {', '.join(self.valid_actions() or [])}."
            done = self._steps >= self.max_steps
            self._done = done
            return StepResult(obs, 0.0, done, {"invalid": True, "step_limit": done})
        self._path.append(self.letters.index(letter))
        if len(self._path) < self.rooms:
            done = self._steps >= self.max_steps
            self._done = done
            return StepResult(self._room_text(), 0.0, done, {"invalid": False, "step_limit": done})
        p = 1.0
        for room, door in enumerate(self._path):
            p *= self._probs[room][door]
        if self.variant == "deterministic":
            reward = p
        else:
            reward = 1.0 if self._rng.random() < p else 0.0
        self._done = True
        obs = "You reached the end of the corridor." + (
            " You win!" if reward >= 1 else " You lose."
        )
        return StepResult(obs, reward, True, {"invalid": False, "success_prob": p})

    def valid_actions(self) -> list[str] | None:
        """``open[X]`` for every door."""
        return [f"open[{x}]" for x in self.letters]

    def seed(self, seed: int) -> None:
        """Reseed the generator that draws the stochastic final reward."""
        self._rng = random.Random(seed)

    def snapshot(self) -> Any:
        """The episode state (the generator is not part of it: it is the environment's own)."""
        return (self._task, list(self._path), self._steps, self._done)

    def restore(self, state: Any) -> None:
        """Return to a state taken by :meth:`snapshot`."""
        task, path, steps, done = state
        if task != self._task:
            self._task = task
            self._probs = self.door_probs(task)
        self._path, self._steps, self._done = list(path), steps, done


_TASK_RE = re.compile(r"Task (\S+)\.")
_ROOM_RE = re.compile(r"room (\d+) of (\d+)")


class ToyOracleScorer:
    """A Scorer that knows Q* of the toy corridor (the ``toy-oracle`` SCORER spec).

    It reads the task id and the current room from the context; an action that opens no door
    scores -1. Used in tests and examples as the perfect Q-value model.
    """

    spec = "toy-oracle"

    def __init__(self, **env_options: Any) -> None:
        env_options.pop("seed", None)
        self.env = ToyEnv(**env_options)

    def score(self, context: Context, actions: list[str]) -> list[float]:
        """Q*(state, action) for each action."""
        task = next((m for t in context if (m := _TASK_RE.search(str(t.get("content", ""))))), None)
        if task is None:
            raise ValueError("context holds no 'Task <id>.' line of the toy environment")
        room = 1
        for msg in context:
            for m in _ROOM_RE.finditer(str(msg.get("content", ""))):
                room = int(m.group(1))
        q = self.env.optimal_q(task.group(1), room - 1)
        out = []
        for a in actions:
            found = _ACTION_RE.findall(a or "")
            key = f"open[{found[-1].upper()}]" if found else None
            out.append(q.get(key, -1.0) if key else -1.0)
        return out

    async def ascore(self, context: Context, actions: list[str]) -> list[float]:
        """Same as :meth:`score`."""
        return self.score(context, actions)

    def score_batch(self, items: list[tuple[Context, list[str]]]) -> list[list[float]]:
        """Score several (context, actions) items."""
        return [self.score(c, a) for c, a in items]
