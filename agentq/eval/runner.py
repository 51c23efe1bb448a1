"""Evaluation runs: one policy over an environment split, several action-selection methods.

Every method runs on the same tasks with the same per-task seeds, so their success rates can be
compared side by side (and paired). The methods:

``greedy``
    N = 1 at temperature 0 (the policy's own best guess).
``sample``
    N = 1 sampled at the sampling temperature.
``best-of-n``
    N samples, each distinct one scored by a Scorer (a Q-value model, a reward model, an LLM
    judge, ...), the highest score executed.
``random``
    N samples, one of them picked uniformly (the sampling baseline best-of-N must beat).
``majority``
    N samples, the most frequent action executed (self-consistency).

Trajectories are appended per finished (method, task) to ``trajectories.jsonl`` in the report
directory; a restarted run skips what is already there.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentq.data.jsonl import JsonlAppender, iter_jsonl
from agentq.errors import UserInputError
from agentq.eval import usage
from agentq.eval.config import EvalConfig
from agentq.protocols import (
    Env,
    Proposer,
    Scorer,
    as_proposer,
    as_scorer,
    env_max_steps,
    seed_env,
)
from agentq.render import advance_context
from agentq.search.selection import Rule, aselect
from agentq.seeding import reseed_globals, task_scope, task_seed
from agentq.types import Context, Step, Trajectory

if TYPE_CHECKING:
    from agentq.backends.ray import RayBackend, RayOptions

METHOD_KINDS = ("greedy", "sample", "best-of-n", "random", "majority")
TRAJECTORIES_FILE = "trajectories.jsonl"


@dataclass
class Method:
    """One way of choosing the executed action at each step."""

    name: str
    """Unique label used in tables and files (``greedy``, ``bon-qmodel@5``, ``random@5``, ...)."""
    kind: str
    """One of :data:`METHOD_KINDS`."""
    n: int = 1
    """Candidates sampled per step."""
    scorer: str | None = None
    """SCORER spec (``best-of-n`` only)."""

    def __post_init__(self) -> None:
        if self.kind not in METHOD_KINDS:
            raise UserInputError(
                f"unknown method {self.kind!r}; use one of {', '.join(METHOD_KINDS)}"
            )
        if self.n < 1:
            raise UserInputError(f"method {self.name!r}: N must be >= 1")
        if self.kind == "best-of-n" and not self.scorer:
            raise UserInputError(f"method {self.name!r}: best-of-n needs a scorer")

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return asdict(self)


def scorer_label(spec: str) -> str:
    """Short label of a SCORER spec for method names (``qmodel:runs/q`` -> ``qmodel``)."""
    prefix = spec.split(":", 1)[0]
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", prefix) or "scorer"


def build_methods(
    kinds: Sequence[str],
    ns: Sequence[int] = (5,),
    scorers: Sequence[str] = (),
) -> list[Method]:
    """Expand method kinds over the N values and scorers.

    ``best-of-n`` gives one method per (scorer, N); ``random`` and ``majority`` one per N;
    ``greedy`` and ``sample`` one each. Names are unique: two scorers with the same prefix get
    their full spec in the label.
    """
    if not kinds:
        raise UserInputError("no methods to evaluate")
    ns = sorted(set(int(n) for n in ns)) or [5]
    labels = [scorer_label(s) for s in scorers]
    if len(set(labels)) < len(labels):
        labels = [re.sub(r"[^A-Za-z0-9_.:-]+", "-", s) for s in scorers]
    out: list[Method] = []
    for kind in kinds:
        kind = kind.strip().lower().replace("_", "-")
        if kind in ("bon", "best-of"):
            kind = "best-of-n"
        if kind not in METHOD_KINDS:
            raise UserInputError(f"unknown method {kind!r}; use one of {', '.join(METHOD_KINDS)}")
        if kind in ("greedy", "sample"):
            out.append(Method(kind, kind, 1))
        elif kind == "best-of-n":
            if not scorers:
                raise UserInputError(
                    "method best-of-n needs a scorer (--qmodel DIR or --scorer SPEC)"
                )
            for spec, label in zip(scorers, labels, strict=True):
                for n in ns:
                    out.append(Method(f"bon-{label}@{n}", kind, n, spec))
        else:
            for n in ns:
                out.append(Method(f"{kind}@{n}", kind, n))
    names = [m.name for m in out]
    dup = {x for x in names if names.count(x) > 1}
    if dup:
        raise UserInputError(f"methods given twice: {', '.join(sorted(dup))}")
    return out


@dataclass
class EpisodeCounters:
    """Model usage of one episode."""

    proposer_calls: int = 0
    scorer_calls: int = 0
    tokens: int = 0


_RULES: dict[str, Rule] = {
    "best-of-n": "score",
    "random": "random",
    "majority": "majority",
    "greedy": "first",
    "sample": "first",
}
"""The selection rule of each method kind."""


async def arun_episode(
    env: Env,
    task_id: str,
    method: Method,
    proposer: Proposer,
    *,
    greedy_proposer: Proposer | None = None,
    scorer: Scorer | None = None,
    max_steps: int = 15,
    seed: int = 0,
    on_step: Callable[[int], None] | None = None,
) -> Trajectory:
    """Run one episode of ``task_id`` with ``method``; the result is a :class:`Trajectory`.

    ``proposer`` samples (``sample`` and the N-candidate methods); ``greedy_proposer`` is the
    temperature-0 twin used by ``greedy`` (``proposer`` itself when None). A proposer or scorer
    failure ends the episode with ``error`` set (reward so far kept); the run goes on.

    The episode runs inside the task's own random scope (:func:`agentq.seeding.task_scope`
    with the seed of (``seed``, task id)), and the environment, the proposer and the scorer are
    reseeded with it (``seed(int)`` / :meth:`~agentq.protocols.Proposer.reseed`), so a
    method's draws on a task do not depend on which methods or tasks ran before it, or on what
    a resume skipped.
    """
    s = task_seed(seed, task_id)
    with task_scope(s, str(task_id)):
        return await _arun_episode(
            env,
            task_id,
            method,
            as_proposer(proposer),
            greedy_proposer=None if greedy_proposer is None else as_proposer(greedy_proposer),
            scorer=None if scorer is None else as_scorer(scorer),
            max_steps=max_steps,
            task_seed_=s,
            on_step=on_step,
        )


async def _arun_episode(
    env: Env,
    task_id: str,
    method: Method,
    proposer: Proposer,
    *,
    greedy_proposer: Proposer | None,
    scorer: Scorer | None,
    max_steps: int,
    task_seed_: int,
    on_step: Callable[[int], None] | None,
) -> Trajectory:
    s = task_seed_
    seed_env(env, s)
    prop = (
        greedy_proposer if (method.kind == "greedy" and greedy_proposer is not None) else proposer
    )
    prop.reseed(s)
    if scorer is not None:
        scorer.reseed(s)
    reseed_globals(s)
    rng = random.Random(s)
    counters = EpisodeCounters()
    t0 = time.perf_counter()
    context: Context = list(await asyncio.to_thread(env.reset, task_id))
    traj = Trajectory(task_id=task_id, context=list(context))
    try:
        for i in range(max_steps):
            valid = await asyncio.to_thread(env.valid_actions)
            n = method.n if method.kind in ("best-of-n", "random", "majority") else 1
            raw = await prop.apropose(context, n, valid_actions=valid)
            counters.proposer_calls += 1
            counters.tokens += sum(c.tokens or 0 for c in raw)
            rule = _RULES[method.kind]
            sel = await aselect(raw, context, scorer, rule=rule, rng=rng)
            if sel.scores is not None:
                counters.scorer_calls += 1
            action = sel.action
            obs, reward, done, info = await asyncio.to_thread(env.step, action)
            info = {k: v for k, v in dict(info).items() if _jsonable(v)}
            info["chosen"] = sel.index
            traj.steps.append(
                Step(
                    action=action,
                    observation=str(obs),
                    reward=float(reward),
                    done=bool(done),
                    info=info,
                    selection=sel.to_dict() if n > 1 else None,
                )
            )
            traj.reward += float(reward)
            if on_step is not None:
                on_step(i + 1)
            if done:
                traj.done = True
                break
            context = advance_context(context, action, str(obs))
    except (UserInputError, KeyboardInterrupt):
        raise
    except Exception as e:  # a model fault fails this episode, not the run
        traj.error = f"{type(e).__name__}: {e}"
    traj.model_calls = counters.proposer_calls + counters.scorer_calls
    traj.tokens = counters.tokens
    traj.wall_s = round(time.perf_counter() - t0, 4)
    return traj


def run_episode(*args: Any, **kwargs: Any) -> Trajectory:
    """Sync twin of :func:`arun_episode`."""
    return asyncio.run(arun_episode(*args, **kwargs))


def _jsonable(v: Any) -> bool:
    return isinstance(v, (str, int, float, bool, type(None), list, dict))


@dataclass
class EvalResult:
    """Everything an evaluation run produced: trajectories per method, in task order."""

    methods: list[Method]
    task_ids: list[str]
    trajectories: dict[str, list[Trajectory]] = field(default_factory=dict)
    skipped: int = 0
    """(method, task) episodes found in the output and not rerun (resume)."""
    wall_s: float = 0.0
    cache: dict[str, Any] | None = None
    """Prefix-cache use of the whole run (:func:`agentq.eval.usage.difference`), or None when
    no model of this process reports any (``random``, rule-based scorers, Ray workers)."""
    cache_by_method: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    """The same per method (methods run one after the other)."""


def load_trajectories(path: str | Path) -> dict[tuple[str, str], Trajectory]:
    """Read an eval ``trajectories.jsonl``: (method, task id) -> trajectory (last one wins)."""
    out: dict[tuple[str, str], Trajectory] = {}
    for d in iter_jsonl(path, strict=False):
        if "method" not in d or "task_id" not in d:
            continue
        d = dict(d)
        method = d.pop("method")
        d.pop("n", None)
        d.pop("scorer", None)
        try:
            out[(method, d["task_id"])] = Trajectory.from_dict(d)
        except TypeError:
            continue
    return out


async def arun_eval(
    env_factory: Callable[[], Env],
    task_ids: Sequence[str],
    methods: Sequence[Method],
    proposer: Proposer | None,
    *,
    greedy_proposer: Proposer | None = None,
    scorers: dict[str, Scorer | None] | None = None,
    out_dir: str | Path | None = None,
    resume: bool = False,
    max_steps: int = 15,
    seed: int = 0,
    concurrency: int = 1,
    progress: bool = True,
    backend: RayBackend | None = None,
) -> EvalResult:
    """Run every method on every task; append each trajectory to ``out_dir/trajectories.jsonl``.

    ``scorers`` maps each best-of-n method's SCORER spec to a built Scorer. With ``resume`` the
    (method, task) pairs already in the file are kept and skipped. Methods run one after the
    other (one progress bar each); within a method up to ``concurrency`` tasks run at once,
    each on its own environment instance. ``backend`` (an ``agentq.backends.ray.RayBackend``
    over an ``EpisodeWork``) runs the episodes on its workers instead (``proposer`` and the
    scorers are then None: the workers build their own); this process writes. The result's
    ``cache`` / ``cache_by_method`` hold the prefix-cache use of the models' ``stats()``
    (:mod:`agentq.eval.usage`).
    """
    built: dict[str, Scorer | None] = {
        k: None if v is None else as_scorer(v) for k, v in (scorers or {}).items()
    }
    for m in methods:
        if m.kind == "best-of-n" and m.scorer not in built:
            raise UserInputError(f"method {m.name!r}: no scorer built for {m.scorer!r}")
    if backend is None and proposer is None:
        raise ValueError("arun_eval needs a proposer unless a backend runs the episodes")
    sampler = None if proposer is None else as_proposer(proposer)
    greedy = None if greedy_proposer is None else as_proposer(greedy_proposer)
    done: dict[tuple[str, str], Trajectory] = {}
    writer: JsonlAppender | None = None
    if out_dir is not None:
        path = Path(out_dir) / TRAJECTORIES_FILE
        if path.exists() and resume:
            done = load_trajectories(path)
        # locked before it is emptied: a second run on the same --out fails, it does not clobber
        writer = JsonlAppender(path, truncate=not resume)
    result = EvalResult(list(methods), list(task_ids))
    models = [proposer, greedy_proposer, *(scorers or {}).values()]
    start = await asyncio.to_thread(usage.snapshot, models)
    t0 = time.perf_counter()
    envs: list[Env] = []
    try:
        for m in methods:
            before = await asyncio.to_thread(usage.snapshot, models)
            trajs: dict[str, Trajectory] = {}
            todo = []
            for t in task_ids:
                if (m.name, t) in done:
                    trajs[t] = done[(m.name, t)]
                    result.skipped += 1
                else:
                    todo.append(t)
            await _run_method(
                m,
                todo,
                trajs,
                env_factory,
                envs,
                sampler,
                greedy,
                built.get(m.scorer or ""),
                writer,
                max_steps=max_steps,
                seed=seed,
                concurrency=concurrency,
                bar=_bar(m.name, len(task_ids), len(task_ids) - len(todo), progress),
                backend=backend,
            )
            result.trajectories[m.name] = [trajs[t] for t in task_ids]
            after = await asyncio.to_thread(usage.snapshot, models)
            result.cache_by_method[m.name] = usage.difference(before, after) or None
    finally:
        if writer is not None:
            writer.close()
    result.wall_s = time.perf_counter() - t0
    end = await asyncio.to_thread(usage.snapshot, models)
    result.cache = usage.difference(start, end) or None
    return result


async def _run_method(
    m: Method,
    todo: Sequence[str],
    trajs: dict[str, Trajectory],
    env_factory: Callable[[], Env],
    envs: list[Env],
    proposer: Proposer | None,
    greedy_proposer: Proposer | None,
    scorer: Scorer | None,
    writer: JsonlAppender | None,
    *,
    max_steps: int,
    seed: int,
    concurrency: int,
    bar: Any,
    backend: RayBackend | None = None,
) -> None:
    sem = asyncio.Semaphore(max(1, concurrency))
    successes = [sum(tr.success for tr in trajs.values())]

    def record(tid: str, tr: Trajectory) -> None:
        trajs[tid] = tr
        if writer is not None:
            writer.write({"method": m.name, "n": m.n, "scorer": m.scorer, **tr.to_dict()})
        successes[0] += tr.success
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(f"success {successes[0]}/{len(trajs)}", refresh=True)

    async def one(tid: str) -> None:
        assert proposer is not None
        async with sem:
            env = envs.pop() if envs else await asyncio.to_thread(env_factory)
            try:
                if bar is not None:
                    bar.set_postfix_str(
                        f"success {successes[0]}/{len(trajs)} | task {tid}", refresh=False
                    )
                tr = await arun_episode(
                    env,
                    tid,
                    m,
                    proposer,
                    greedy_proposer=greedy_proposer,
                    scorer=scorer,
                    max_steps=max_steps,
                    seed=seed,
                )
            finally:
                envs.append(env)
            record(tid, tr)

    try:
        if backend is not None:  # episodes on remote workers, results written here
            items = [{"method": m.to_dict(), "task_id": t} for t in todo]
            await backend.map(items, lambda it, d: record(it["task_id"], Trajectory.from_dict(d)))
        else:
            await asyncio.gather(*(one(t) for t in todo))
    finally:
        if bar is not None:
            bar.close()


def run_eval(*args: Any, **kwargs: Any) -> EvalResult:
    """Sync twin of :func:`arun_eval`."""
    return asyncio.run(arun_eval(*args, **kwargs))


def _bar(desc: str, total: int, initial: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(
        total=total, initial=initial, desc=desc, unit="task", dynamic_ncols=True, file=sys.stderr
    )


def max_steps_of(env: Env, default: int = 15) -> int:
    """The environment's own step limit (``max_steps``) or ``default``."""
    return env_max_steps(env, default)


def run_evaluation(
    config: EvalConfig | None = None,
    *,
    proposers: tuple[Proposer, Proposer] | None = None,
    ray: RayOptions | None = None,
    command: str | None = None,
    extra_config: dict[str, Any] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """What ``agentq eval`` does: build everything from specs, run, write the report directory.

    ``config`` holds every setting (:class:`~agentq.eval.config.EvalConfig`); keywords named
    like the command's options (``env="toy", n=[3], env_option=["rooms=3"]``, ...) are a
    shorthand for the config :func:`agentq.config.from_options` builds from them. The others:
    ``proposers`` (sampling, greedy) skips building the policy from ``config.policy``; ``ray``
    (an ``agentq.backends.ray.RayOptions``) runs the episodes on Ray workers, each building the
    policy and scorers once (default: ``config.execution``'s, for ``backend="ray"``);
    ``command`` is the command line the report records and ``extra_config`` more keys for its
    config. Returns the report dict with the markdown table under ``"table"``.
    ``config.cache_bytes`` sets the budget of the prefix cache the local models of this process
    share (:func:`agentq.models.prefix_cache.shared_prefix_cache`).
    """
    if config is None:
        from agentq.config import from_options

        config = from_options(EvalConfig, options, source="run_evaluation")
    elif options:
        raise TypeError(f"pass a config or options, not both ({', '.join(sorted(options))})")
    return _run_evaluation(
        config, proposers=proposers, ray=ray, command=command, extra_config=extra_config
    )


def _run_evaluation(
    cfg: EvalConfig,
    *,
    proposers: tuple[Proposer, Proposer] | None,
    ray: RayOptions | None,
    command: str | None,
    extra_config: dict[str, Any] | None,
) -> dict[str, Any]:
    from agentq.data.jsonl import check_parent_dirs
    from agentq.environments import EnvSource
    from agentq.eval.report import markdown_table, write_report

    if cfg.cache_bytes is not None:
        from agentq.models.prefix_cache import shared_prefix_cache

        shared_prefix_cache(cfg.cache_bytes)

    out = Path(cfg.out)
    traj_path = out / TRAJECTORIES_FILE
    run_path = out / "run.json"
    if out.exists() and not out.is_dir():
        raise UserInputError(f"output {out} is not a directory")
    if traj_path.exists() and not (cfg.resume or cfg.overwrite):
        raise UserInputError(
            f"{traj_path} exists; pass --resume to continue it or --overwrite to replace it"
        )
    check_parent_dirs(out)
    if ray is None:
        ray = cfg.execution.ray_options()
    env_opts = dict(cfg.env_options)
    scorer_specs = cfg.scorer_specs
    method_list = build_methods(cfg.method_kinds, list(cfg.n), scorer_specs)
    source = EnvSource(cfg.env, env_opts)
    if isinstance(cfg.tasks, int):
        task_ids = source.task_ids(cfg.split, cfg.tasks)
    else:
        task_ids = list(cfg.tasks)
        source.check(task_ids)
    steps = cfg.max_steps or max_steps_of(source.probe)
    config = {
        "env": cfg.env,
        "env_options": env_opts,
        "split": cfg.split,
        "policy": cfg.policy,
        "scorers": scorer_specs,
        "methods": [m.to_dict() for m in method_list],
        "n": sorted(set(cfg.n)),
        "tasks": len(task_ids),
        "max_steps": steps,
        "temperature": cfg.temperature,
        "seed": cfg.seed,
        **(extra_config or {}),
    }
    key = {
        k: config[k]
        for k in ("env", "env_options", "split", "policy", "max_steps", "temperature", "seed")
    }
    if cfg.resume and run_path.exists():
        old = json.loads(run_path.read_text())
        diff = [k for k in key if old.get(k) != key[k]]
        if diff:
            raise UserInputError(
                f"cannot resume {out}: it was run with different {', '.join(diff)}"
            )
    remote = None
    sampler: Proposer | None = None
    greedy: Proposer | None = None
    scorer_objs: dict[str, Scorer | None]
    if ray is not None:  # started before anything is written: a bad address writes nothing
        from agentq.eval.remote_work import start_ray_eval

        remote = start_ray_eval(
            ray,
            env=cfg.env,
            env_options=env_opts,
            policy=cfg.policy,
            seed=cfg.seed,
            temperature=cfg.temperature,
            policy_options=dict(cfg.policy_options),
            scorer_specs=scorer_specs,
            scorer_options=dict(cfg.scorer_options),
            max_steps=steps,
            concurrency=cfg.concurrency,
        )
        scorer_objs = dict.fromkeys(scorer_specs)
    else:
        if proposers is None:
            proposers = build_policies(
                cfg.policy,
                seed=cfg.seed,
                temperature=cfg.temperature,
                options=dict(cfg.policy_options),
            )
        sampler, greedy = proposers
        scorer_objs = dict(
            build_scorers(
                scorer_specs,
                env=cfg.env,
                env_options=env_opts,
                options=dict(cfg.scorer_options),
            )
        )
    # written only once every model is built: a bad --qmodel or --scorer leaves nothing behind
    out.mkdir(parents=True, exist_ok=True)
    run_path.write_text(json.dumps(key, indent=2) + "\n")
    try:
        result = run_eval(
            source,
            task_ids,
            method_list,
            sampler,
            greedy_proposer=greedy,
            scorers=scorer_objs,
            out_dir=out,
            resume=cfg.resume,
            max_steps=steps,
            seed=cfg.seed,
            concurrency=cfg.concurrency,
            progress=cfg.progress,
            backend=remote,
        )
    finally:
        if remote is not None:
            remote.close()
    rep = write_report(out, result, config, command=command)
    # run.json keeps its resume key first; the run's prefix-cache use is added for the record
    run_path.write_text(json.dumps({**key, "cache": rep.get("cache")}, indent=2) + "\n")
    if cfg.view:
        from agentq.eval.view import write_html

        write_html(traj_path, out / "trajectories.html")
    rep["table"] = markdown_table(rep)
    return rep


def build_policies(
    policy: str, *, seed: int, temperature: float, options: dict[str, Any] | None = None
) -> tuple[Proposer, Proposer]:
    """(sampling proposer, greedy proposer) for a MODEL spec.

    The greedy twin is built at temperature 0. A policy that samples at no temperature
    (``random``: see :func:`agentq.specs.takes_temperature`) gives the same proposer for both,
    and takes no options.
    """
    from agentq.specs import resolve_policy, takes_temperature

    options = dict(options or {})
    if not takes_temperature(policy):
        p = resolve_policy(policy, seed=seed)
        return p, p
    sampler = resolve_policy(policy, seed=seed, temperature=temperature, **options)
    greedy = resolve_policy(policy, seed=seed, temperature=0.0, **options)
    return sampler, greedy


def build_scorers(
    specs: list[str], *, env: str, env_options: dict[str, Any], options: dict[str, Any]
) -> dict[str, Scorer]:
    """Build each SCORER spec once (``toy-oracle`` gets the toy environment's options)."""
    from agentq.specs import resolve_scorer

    out = {}
    for s in specs:
        opts = dict(options)
        if s.strip() == "toy-oracle" and env == "toy" and not opts:
            opts = dict(env_options)
        out[s] = resolve_scorer(s, **opts)
    return out
