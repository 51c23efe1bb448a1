"""The data every part of agentq shares: messages, candidates, steps, trajectories, tree nodes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple, TypedDict


class Message(TypedDict, total=False):
    """One chat message in the OpenAI format (``role`` and ``content``; tool fields optional)."""

    role: str
    content: str
    name: str
    tool_calls: list[dict[str, Any]]
    tool_call_id: str


Context = list[Message]
"""The agent state: the chat messages the model sees before it acts."""


@dataclass
class Candidate:
    """One proposed action: the whole assistant turn, with what is known about how it was made."""

    text: str
    logprob: float | None = None
    """Sum of the policy's token log-probs for ``text``, when the proposer knows it."""
    count: int = 1
    """How many of the N samples produced this exact text (identical samples are merged)."""
    tokens: int | None = None
    """Number of generated tokens, when known. A local constrained proposer, which generates
    little, puts the prompt and scoring tokens it computed on a request's first candidate."""

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return asdict(self)


@dataclass
class Selection:
    """The outcome of one selection step (:mod:`agentq.search.selection`).

    ``candidates`` are the merged samples (``count`` = how many of the ``n`` samples had that
    text, first-occurrence order); ``scores`` is aligned with them, or None when nothing was
    scored (one distinct candidate, a rule that does not score, a scorer failure under
    ``on_error="fallback"``). :meth:`to_dict` is the selection metadata format everywhere
    (eval trajectories, LangGraph messages and state, the LangChain middleware).
    """

    candidates: list[Candidate]
    index: int
    """The winner among :attr:`candidates`."""
    scores: list[float] | None = None
    n: int = 0
    """How many samples were drawn (the sum of the candidates' counts)."""
    rule: str = "score"
    scorer: str | None = None
    warning: str | None = None
    """Why the selection is not a plain scored pick (a scorer that failed under
    ``on_error="fallback"``, samples that failed, a model that ignored ``n``); ``"; "``-joined."""
    sample_index: int | None = None
    """The winner among the raw samples (the first sample with the winning text)."""
    sampling: str | None = None
    """How the samples were drawn, when an adapter knows: ``"n"`` (one call with the provider's
    ``n``), ``"concurrent"`` (one call per sample) or ``"n+concurrent"``."""
    tokens: int | None = None
    """Tokens generated for all the samples, when the model reports them."""

    @property
    def winner(self) -> Candidate:
        """The chosen candidate."""
        return self.candidates[self.index]

    @property
    def action(self) -> str:
        """The chosen action text."""
        return self.candidates[self.index].text

    @property
    def texts(self) -> list[str]:
        """The distinct candidate texts, in order."""
        return [c.text for c in self.candidates]

    @property
    def counts(self) -> list[int]:
        """How many samples each distinct candidate stands for."""
        return [c.count for c in self.candidates]

    def add_warning(self, warning: str | None) -> None:
        """Append ``warning`` (when given) to :attr:`warning`, ``"; "``-joined."""
        self.warning = join_warnings(self.warning, warning)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON selection metadata: n, rule, candidates (text, count, logprob), scores,
        index, sample_index, scorer, warning, sampling, tokens (every key always present)."""
        return {
            "n": self.n,
            "rule": self.rule,
            "candidates": [
                {"text": c.text, "count": c.count, "logprob": c.logprob} for c in self.candidates
            ],
            "scores": None if self.scores is None else list(self.scores),
            "index": self.index,
            "sample_index": self.sample_index,
            "scorer": self.scorer,
            "warning": self.warning,
            "sampling": self.sampling,
            "tokens": self.tokens,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Selection:
        """Inverse of :meth:`to_dict` (unknown keys ignored, missing ones None)."""
        cands = [
            Candidate(str(c["text"]), logprob=c.get("logprob"), count=int(c.get("count", 1)))
            for c in d.get("candidates") or []
        ]
        scores = d.get("scores")
        sample_index = d.get("sample_index")
        tokens = d.get("tokens")
        return cls(
            candidates=cands,
            index=int(d.get("index", 0)),
            scores=None if scores is None else [float(s) for s in scores],
            n=int(d.get("n", sum(c.count for c in cands))),
            rule=str(d.get("rule", "score")),
            scorer=d.get("scorer"),
            warning=d.get("warning"),
            sample_index=None if sample_index is None else int(sample_index),
            sampling=d.get("sampling"),
            tokens=None if tokens is None else int(tokens),
        )


def join_warnings(*warnings: str | None) -> str | None:
    """The given warnings joined with ``"; "`` (None when there is none)."""
    parts = [w for w in warnings if w]
    return "; ".join(parts) if parts else None


class StepResult(NamedTuple):
    """What ``Env.step`` returns; unpacks as ``observation, reward, done, info``."""

    observation: str
    reward: float
    done: bool
    info: dict[str, Any]


@dataclass
class Step:
    """One executed step of a trajectory."""

    action: str
    observation: str
    reward: float
    done: bool
    info: dict[str, Any] = field(default_factory=dict)
    selection: dict[str, Any] | None = None
    """How the action was chosen when N > 1 candidates were drawn: the selection metadata of
    :meth:`Selection.to_dict` (merged candidates with their counts,
    scores or None when nothing was scored, the winner's index)."""

    @property
    def candidates(self) -> list[str] | None:
        """The distinct candidate texts the action was chosen from (None: no selection)."""
        if self.selection is None:
            return None
        return [str(c["text"]) for c in self.selection.get("candidates") or []]

    @property
    def counts(self) -> list[int] | None:
        """How many of the N samples each distinct candidate stands for."""
        if self.selection is None:
            return None
        return [int(c.get("count", 1)) for c in self.selection.get("candidates") or []]

    @property
    def scores(self) -> list[float] | None:
        """One score per candidate, aligned with :attr:`candidates` (None: not scored)."""
        if self.selection is None:
            return None
        return self.selection.get("scores")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Step:
        """A step from its plain-JSON form (also the older ``candidates``/``scores`` form)."""
        d = dict(d)
        texts = d.pop("candidates", None)
        scores = d.pop("scores", None)
        if texts is not None and d.get("selection") is None:
            chosen = d.get("info", {}).get("chosen")
            index = chosen if isinstance(chosen, int) else texts.index(d["action"])
            d["selection"] = {
                "n": len(texts),
                "candidates": [{"text": t, "count": 1, "logprob": None} for t in texts],
                "scores": scores,
                "index": index,
            }
        return cls(**d)


@dataclass
class Trajectory:
    """A finished (or cut-off) episode on one task."""

    task_id: str
    context: Context
    steps: list[Step] = field(default_factory=list)
    reward: float = 0.0
    done: bool = False
    model_calls: int = 0
    tokens: int = 0
    wall_s: float = 0.0
    error: str | None = None

    @property
    def success(self) -> bool:
        """Full reward reached (reward 1 in every agentq environment)."""
        return self.reward >= 1.0 - 1e-9

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (one line of a trajectories file)."""
        d = asdict(self)
        d["success"] = self.success
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Trajectory:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        d.pop("success", None)
        d["steps"] = [Step.from_dict(s) for s in d.get("steps", [])]
        return cls(**d)


@dataclass
class TreeNode:
    """One node of an MCTS tree: the state reached by taking ``action`` from the parent.

    ``q`` is the node's mean return (``value_sum / visits``), i.e. the Monte Carlo
    estimate of Q(parent state, action).
    """

    id: int
    parent: int | None
    action: str | None
    depth: int
    observation: str | None = None
    reward: float = 0.0
    """Immediate reward of the step that reached this node."""
    done: bool = False
    invalid: bool = False
    count: int = 1
    """How many of the N proposals were this action (merged duplicates)."""
    logprob: float | None = None
    visits: int = 0
    value_sum: float = 0.0
    children: list[int] = field(default_factory=list)
    stepped: bool = False
    """Whether the environment has executed ``action`` yet (children are stepped lazily)."""
    info: dict[str, Any] = field(default_factory=dict)
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    """Every draw of a terminal node stepped more than once (a stochastic outcome): distinct
    ``{"observation", "reward", "done", "count"}`` records, the first draw first. Empty for a
    node stepped once; then ``observation``/``reward``/``done`` are its only draw. Either way
    ``observation``, ``reward`` and ``done`` are the first draw's, together."""

    @property
    def q(self) -> float:
        """Mean return of the simulations through this node (0 when unvisited)."""
        return self.value_sum / self.visits if self.visits else 0.0

    @property
    def mean_reward(self) -> float:
        """Mean immediate reward over the node's draws (``reward`` when drawn once)."""
        if not self.outcomes:
            return self.reward
        total = sum(o["count"] for o in self.outcomes)
        return sum(o["reward"] * o["count"] for o in self.outcomes) / total

    @property
    def max_reward(self) -> float:
        """Highest immediate reward among the node's draws."""
        return max((o["reward"] for o in self.outcomes), default=self.reward)

    def add_outcome(self, observation: str | None, reward: float, done: bool) -> None:
        """Count one more draw of this node's step (the first draw is recorded on demand)."""
        if not self.outcomes:
            self.outcomes.append(
                {
                    "observation": self.observation,
                    "reward": self.reward,
                    "done": self.done,
                    "count": 1,
                }
            )
        for o in self.outcomes:
            if (o["observation"], o["reward"], o["done"]) == (observation, reward, done):
                o["count"] += 1
                return
        self.outcomes.append(
            {"observation": observation, "reward": reward, "done": done, "count": 1}
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form used in trees.jsonl."""
        return {
            "id": self.id,
            "parent": self.parent,
            "action": self.action,
            "depth": self.depth,
            "observation": self.observation,
            "reward": self.reward,
            "done": self.done,
            "invalid": self.invalid,
            "count": self.count,
            "logprob": self.logprob,
            "visits": self.visits,
            "q": self.q,
            "children": list(self.children),
            "info": self.info,
            **({"outcomes": [dict(o) for o in self.outcomes]} if self.outcomes else {}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TreeNode:
        """Inverse of :meth:`to_dict` (``value_sum`` is rebuilt from ``q * visits``)."""
        return cls(
            id=d["id"],
            parent=d["parent"],
            action=d["action"],
            depth=d["depth"],
            observation=d.get("observation"),
            reward=d.get("reward", 0.0),
            done=d.get("done", False),
            invalid=d.get("invalid", False),
            count=d.get("count", 1),
            logprob=d.get("logprob"),
            visits=d.get("visits", 0),
            value_sum=d.get("q", 0.0) * d.get("visits", 0),
            children=list(d.get("children", [])),
            stepped=d.get("observation") is not None,
            info=d.get("info", {}),
            outcomes=[dict(o) for o in d.get("outcomes", [])],
        )


@dataclass
class TaskTree:
    """The search tree of one task: what one line of trees.jsonl holds."""

    task_id: str
    context: Context
    nodes: list[TreeNode]
    env: str = ""
    status: str = "ok"
    """``"ok"`` or ``"failed"`` (then ``error`` says why)."""
    error: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    models: dict[str, Any] = field(default_factory=dict)
    iterations: int = 0
    wall_s: float = 0.0

    @property
    def root(self) -> TreeNode:
        """The root node (the initial state)."""
        return self.nodes[0]

    def children(self, node: TreeNode) -> list[TreeNode]:
        """The child nodes of ``node``."""
        return [self.nodes[i] for i in node.children]

    def path(self, node: TreeNode) -> list[TreeNode]:
        """Nodes from the root's first child down to ``node`` (the root excluded)."""
        out: list[TreeNode] = []
        while node.parent is not None:
            out.append(node)
            node = self.nodes[node.parent]
        return out[::-1]

    @property
    def best_reward(self) -> float:
        """Highest total return any simulation reached at a terminal node (0 when none);
        for a stochastic terminal node its best draw counts."""
        best = 0.0
        for n in self.nodes:
            if n.done or any(o["done"] for o in n.outcomes):
                path = self.path(n)
                best = max(best, sum(p.reward for p in path[:-1]) + n.max_reward)
        return best

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (one line of trees.jsonl)."""
        return {
            "task_id": self.task_id,
            "env": self.env,
            "status": self.status,
            "error": self.error,
            "context": self.context,
            "nodes": [n.to_dict() for n in self.nodes],
            "best_reward": self.best_reward if self.nodes else 0.0,
            "iterations": self.iterations,
            "wall_s": round(self.wall_s, 4),
            "config": self.config,
            "models": self.models,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TaskTree:
        """Inverse of :meth:`to_dict`."""
        return cls(
            task_id=d["task_id"],
            context=d.get("context", []),
            nodes=[TreeNode.from_dict(n) for n in d.get("nodes", [])],
            env=d.get("env", ""),
            status=d.get("status", "ok"),
            error=d.get("error"),
            config=d.get("config", {}),
            models=d.get("models", {}),
            iterations=d.get("iterations", 0),
            wall_s=d.get("wall_s", 0.0),
        )
