"""Rollouts: a compiled LangGraph agent run over an environment's tasks, as agentq
trajectories (one :class:`~agentq.types.Step` per environment step, with the selection that
chose it), and their metrics."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from agentq.integrations.langgraph.env_tools import EnvTools
from agentq.integrations.langgraph.messages import candidate_text, message_text
from agentq.integrations.langgraph.sampling import message_tokens
from agentq.integrations.langgraph.selection import selection_of
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import Runnable, RunnableConfig
from langgraph.errors import GraphBubbleUp

from agentq.protocols import Env, seed_env
from agentq.render import observation_text, render_tool_call
from agentq.seeding import reseed_globals, task_seed
from agentq.types import Step, Trajectory


@dataclass
class RolloutResult:
    """Trajectories of one rollout and their metrics."""

    trajectories: list[Trajectory]
    wall_s: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def success_rate(self) -> float:
        """Fraction of tasks with full reward."""
        return self.metrics.get("success_rate", 0.0)

    @property
    def mean_reward(self) -> float:
        """Mean total reward per task."""
        return self.metrics.get("mean_reward", 0.0)

    @property
    def mean_steps(self) -> float:
        """Mean number of environment steps per task."""
        return self.metrics.get("mean_steps", 0.0)


def rollout_metrics(trajectories: Sequence[Trajectory]) -> dict[str, float]:
    """Success rate, mean reward, mean steps, invalid-action rate, errors and model calls."""
    k = len(trajectories)
    if not k:
        return {
            "tasks": 0,
            "success_rate": 0.0,
            "mean_reward": 0.0,
            "mean_steps": 0.0,
            "invalid_rate": 0.0,
            "errors": 0,
            "model_calls": 0,
        }
    steps = sum(len(t.steps) for t in trajectories)
    invalid = sum(1 for t in trajectories for s in t.steps if s.info.get("invalid"))
    return {
        "tasks": k,
        "success_rate": sum(t.success for t in trajectories) / k,
        "mean_reward": sum(t.reward for t in trajectories) / k,
        "mean_steps": steps / k,
        "invalid_rate": invalid / steps if steps else 0.0,
        "errors": sum(1 for t in trajectories if t.error),
        "model_calls": sum(t.model_calls for t in trajectories),
    }


def _reseed(env: Env, seed: int, task_id: str) -> None:
    s = task_seed(seed, task_id)
    seed_env(env, s)
    reseed_globals(s)


def _build_trajectory(et: EnvTools, task_id: str, messages: Sequence[BaseMessage]) -> Trajectory:
    by_call: dict[str, AIMessage] = {}
    by_id: dict[str, AIMessage] = {}
    calls = tokens = 0
    for m in messages:
        if isinstance(m, AIMessage):
            sel = selection_of(m)
            calls += int(sel["n"]) if sel else 1
            if sel and isinstance(sel.get("tokens"), int):
                tokens += int(sel["tokens"])  # every sample's tokens, not the winner's alone
            else:
                tokens += message_tokens(m) or 0
            if m.id:
                by_id[m.id] = m
            for c in m.tool_calls:
                if c.get("id"):
                    by_call[str(c["id"])] = m
    steps = []
    for r in et.records:
        ai = by_call.get(r.tool_call_id or "") or by_id.get(r.message_id or "")
        action = (
            candidate_text(ai)
            if ai is not None
            else render_tool_call(et.name, {"action": r.action})
        )
        sel = selection_of(ai) if ai is not None else None
        steps.append(
            Step(
                action=action,
                observation=r.result.observation,
                reward=float(r.result.reward),
                done=bool(r.result.done),
                info=dict(r.result.info or {}),
                selection=dict(sel) if sel else None,
            )
        )
    return Trajectory(
        task_id=task_id,
        context=list(et.context),
        steps=steps,
        reward=et.reward,
        done=et.done,
        model_calls=calls,
        tokens=tokens,
    )


def _text_turn(messages: Sequence[BaseMessage]) -> AIMessage | None:
    last = messages[-1] if messages else None
    if isinstance(last, AIMessage) and not last.tool_calls and message_text(last.content).strip():
        return last
    return None


def _config_for(config: RunnableConfig | None, task_id: str, max_steps: int) -> RunnableConfig:
    cfg: dict[str, Any] = dict(config or {})
    configurable = dict(cfg.get("configurable") or {})
    configurable.setdefault("thread_id", f"agentq-rollout-{task_id}-{uuid.uuid4().hex[:8]}")
    cfg["configurable"] = configurable
    cfg.setdefault("recursion_limit", 4 * max_steps + 10)
    return cfg  # type: ignore[return-value]


class _Episode:
    """One task of a rollout: the messages so far, when to stop, and its trajectory."""

    def __init__(
        self,
        et: EnvTools,
        task_id: str,
        *,
        seed: int,
        config: RunnableConfig | None,
        max_steps: int,
        text_actions: bool,
    ) -> None:
        self.t0 = time.perf_counter()
        self.et = et
        self.task_id = task_id
        self.max_steps = max_steps
        self.text_actions = text_actions
        self.error: str | None = None
        _reseed(et.env, seed, task_id)
        self.messages: list[BaseMessage] = et.reset(task_id)
        self.config = _config_for(config, task_id, max_steps)

    @property
    def input(self) -> dict[str, Any]:
        """The graph input that continues the episode."""
        return {"messages": self.messages}

    def _over(self) -> bool:
        return self.et.done or len(self.et.records) >= self.max_steps

    def absorb(self, chunk: Any) -> bool:
        """Take one ``stream_mode="values"`` chunk; True when the episode is over."""
        if isinstance(chunk, dict) and "messages" in chunk:
            self.messages = list(chunk["messages"])
        return self._over()

    def next_turn(self) -> bool:
        """After the graph stopped: run a final text turn as an env action (``text_actions``)
        and send its observation back; True when the graph should run again."""
        if self._over() or not self.text_actions:
            return False
        turn = _text_turn(self.messages)
        if turn is None:
            return False
        self.et.step(message_text(turn.content), message_id=turn.id)
        if self._over():
            return False
        obs = self.et.records[-1].result.observation
        self.messages = [*self.messages, HumanMessage(content=observation_text(obs))]
        return True

    def failed(self, e: Exception) -> None:
        """Record the exception that ended the episode (interrupts propagate)."""
        if isinstance(e, GraphBubbleUp):
            raise e
        self.error = f"{type(e).__name__}: {e}"

    def trajectory(self) -> Trajectory:
        traj = _build_trajectory(self.et, self.task_id, self.messages)
        traj.error = self.error
        traj.wall_s = time.perf_counter() - self.t0
        return traj


class _Rollout:
    """The task loop shared by :func:`rollout` and :func:`arollout`."""

    def __init__(
        self,
        agent: Any,
        env: EnvTools | Env,
        *,
        split: str,
        tasks: Sequence[str] | None,
        limit: int | None,
        max_steps: int | None,
        text_actions: bool,
        seed: int,
        config: RunnableConfig | None,
        progress: bool,
    ) -> None:
        self.t0 = time.perf_counter()
        self.et = env if isinstance(env, EnvTools) else EnvTools(env)
        self.agent = (
            agent(self.et.tools) if not isinstance(agent, Runnable) and callable(agent) else agent
        )
        self.max_steps = max_steps or int(getattr(self.et.env, "max_steps", 0) or 15)
        ids = list(tasks) if tasks is not None else list(self.et.env.tasks(split))
        self.ids = ids[:limit] if limit is not None else ids
        self.seed = seed
        self.config = config
        self.text_actions = text_actions
        self.trajectories: list[Trajectory] = []
        self.bar = _bar(len(self.ids), progress)

    def episode(self, task_id: str) -> _Episode:
        return _Episode(
            self.et,
            task_id,
            seed=self.seed,
            config=self.config,
            max_steps=self.max_steps,
            text_actions=self.text_actions,
        )

    def add(self, ep: _Episode) -> None:
        self.trajectories.append(ep.trajectory())
        if self.bar is not None:
            self.bar.update(1)

    def result(self) -> RolloutResult:
        if self.bar is not None:
            self.bar.close()
        trajs = self.trajectories
        return RolloutResult(trajs, time.perf_counter() - self.t0, rollout_metrics(trajs))


def rollout(
    agent: Any,
    env: EnvTools | Env,
    *,
    split: str = "test",
    tasks: Sequence[str] | None = None,
    limit: int | None = None,
    max_steps: int | None = None,
    text_actions: bool = True,
    seed: int = 0,
    config: RunnableConfig | None = None,
    progress: bool = False,
) -> RolloutResult:
    """Run a compiled LangGraph agent over an environment's tasks; trajectories and metrics.

    ``agent`` is a compiled graph built with ``env.tools`` (``env`` an :class:`EnvTools`) and
    taking ``{"messages": [...]}``, or a callable ``tools -> compiled graph`` (then ``env`` may
    be a plain agentq environment). Each task starts from the environment's context; the run
    stops as soon as the episode is done. With ``text_actions`` an assistant turn that ends the
    graph without a tool call is executed as a text action and its observation sent back as a
    user message (``Observation: ...``), so text-acting agents work too. At most ``max_steps``
    environment steps per task (default: the environment's ``max_steps``). An exception in one
    task is recorded in its trajectory's ``error`` and the rollout goes on.
    """
    run = _Rollout(
        agent, env, split=split, tasks=tasks, limit=limit, max_steps=max_steps,
        text_actions=text_actions, seed=seed, config=config, progress=progress,
    )  # fmt: skip
    for tid in run.ids:
        ep = run.episode(tid)
        try:
            while True:
                for chunk in run.agent.stream(ep.input, ep.config, stream_mode="values"):
                    if ep.absorb(chunk):
                        break
                if not ep.next_turn():
                    break
        except Exception as e:  # noqa: BLE001 - recorded, the rollout goes on
            ep.failed(e)
        run.add(ep)
    return run.result()


async def arollout(
    agent: Any,
    env: EnvTools | Env,
    *,
    split: str = "test",
    tasks: Sequence[str] | None = None,
    limit: int | None = None,
    max_steps: int | None = None,
    text_actions: bool = True,
    seed: int = 0,
    config: RunnableConfig | None = None,
    progress: bool = False,
) -> RolloutResult:
    """Async twin of :func:`rollout` (``agent.astream``; tasks run one after another, since an
    environment runs one episode at a time)."""
    run = _Rollout(
        agent, env, split=split, tasks=tasks, limit=limit, max_steps=max_steps,
        text_actions=text_actions, seed=seed, config=config, progress=progress,
    )  # fmt: skip
    for tid in run.ids:
        ep = run.episode(tid)
        try:
            while True:
                async for chunk in run.agent.astream(ep.input, ep.config, stream_mode="values"):
                    if ep.absorb(chunk):
                        break
                if not ep.next_turn():
                    break
        except Exception as e:  # noqa: BLE001 - recorded, the rollout goes on
            ep.failed(e)
        run.add(ep)
    return run.result()


def _bar(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="rollout", unit="task")


__all__ = ["RolloutResult", "arollout", "rollout", "rollout_metrics"]
