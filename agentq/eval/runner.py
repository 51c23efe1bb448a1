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
from typing import Any

from agentq.data.jsonl import JsonlAppender, iter_jsonl
from agentq.errors import UserInputError
from agentq.render import advance_context
from agentq.search.mcts import task_seed
from agentq.search.selection import Rule, aselect
from agentq.types import Context, Step, Trajectory

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


def reseed(obj: Any, seed: int) -> None:
    """Reseed a proposer's or scorer's randomness for one task (``seed(int)`` or ``_rng``).

    Local torch models draw from torch's global generator, which is reseeded too, so a method's
    samples on a task do not depend on the tasks that ran before it.
    """
    fn = getattr(obj, "seed", None)
    if callable(fn):
        fn(seed)
        return
    if isinstance(fn, int) and not isinstance(
        fn, bool
    ):  # LocalProposer: seed attribute + call count
        obj.seed = seed % (2**31)
        if isinstance(getattr(obj, "_calls", None), int):
            obj._calls = 0
        return
    rng = getattr(obj, "_rng", None)
    if isinstance(rng, random.Random):
        rng.seed(seed)


def _reseed_globals(seed: int) -> None:
    random.seed(seed)
    if "numpy" in sys.modules:
        import numpy as np

        np.random.seed(seed % (2**32))
    if "torch" in sys.modules:
        import torch

        torch.manual_seed(seed)


_RULES: dict[str, Rule] = {
    "best-of-n": "score",
    "random": "random",
    "majority": "majority",
    "greedy": "first",
    "sample": "first",
}
"""The selection rule of each method kind."""


async def arun_episode(
    env: Any,
    task_id: str,
    method: Method,
    proposer: Any,
    **kwargs: Any,
) -> Trajectory:
    """Run one episode of ``task_id`` with ``method``; the result is a :class:`Trajectory`.

    The episode runs inside the task's own random scope (:func:`agentq.seeding.task_scope`), so
    a method's draws do not depend on which methods or tasks ran before it. Keyword arguments:
    see :func:`_arun_episode`.
    """
    from agentq.seeding import task_scope

    with task_scope(task_seed(int(kwargs.get("seed", 0)), task_id), str(task_id)):
        return await _arun_episode(env, task_id, method, proposer, **kwargs)


async def _arun_episode(
    env: Any,
    task_id: str,
    method: Method,
    proposer: Any,
    *,
    greedy_proposer: Any = None,
    scorer: Any = None,
    max_steps: int = 15,
    seed: int = 0,
    on_step: Callable[[int], None] | None = None,
) -> Trajectory:
    """Run one episode of ``task_id`` with ``method``; the result is a :class:`Trajectory`.

    ``proposer`` samples (``sample`` and the N-candidate methods); ``greedy_proposer`` is the
    temperature-0 twin used by ``greedy`` (``proposer`` itself when None). A proposer or scorer
    failure ends the episode with ``error`` set (reward so far kept); the run goes on.
    """
    s = task_seed(seed, task_id)
    if callable(getattr(env, "seed", None)):
        env.seed(s)
    prop = (
        greedy_proposer if (method.kind == "greedy" and greedy_proposer is not None) else proposer
    )
    reseed(prop, s)
    if scorer is not None:
        reseed(scorer, s)
    _reseed_globals(s)
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
    env_factory: Callable[[], Any],
    task_ids: Sequence[str],
    methods: Sequence[Method],
    proposer: Any,
    *,
    greedy_proposer: Any = None,
    scorers: dict[str, Any] | None = None,
    out_dir: str | Path | None = None,
    resume: bool = False,
    max_steps: int = 15,
    seed: int = 0,
    concurrency: int = 1,
    progress: bool = True,
    backend: Any = None,
) -> EvalResult:
    """Run every method on every task; append each trajectory to ``out_dir/trajectories.jsonl``.

    ``scorers`` maps each best-of-n method's SCORER spec to a built Scorer. With ``resume`` the
    (method, task) pairs already in the file are kept and skipped. Methods run one after the
    other (one progress bar each); within a method up to ``concurrency`` tasks run at once,
    each on its own environment instance. ``backend`` (an ``agentq.backends.ray.RayBackend``
    over an ``EpisodeWork``) runs the episodes on its workers instead; this process writes.
    """
    scorers = scorers or {}
    for m in methods:
        if m.kind == "best-of-n" and m.scorer not in scorers:
            raise UserInputError(f"method {m.name!r}: no scorer built for {m.scorer!r}")
    done: dict[tuple[str, str], Trajectory] = {}
    writer: JsonlAppender | None = None
    if out_dir is not None:
        path = Path(out_dir) / TRAJECTORIES_FILE
        if path.exists() and resume:
            done = load_trajectories(path)
        # locked before it is emptied: a second run on the same --out fails, it does not clobber
        writer = JsonlAppender(path, truncate=not resume)
    result = EvalResult(list(methods), list(task_ids))
    t0 = time.perf_counter()
    envs: list[Any] = []
    try:
        for m in methods:
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
                proposer,
                greedy_proposer,
                scorers.get(m.scorer or ""),
                writer,
                max_steps=max_steps,
                seed=seed,
                concurrency=concurrency,
                bar=_bar(m.name, len(task_ids), len(task_ids) - len(todo), progress),
                backend=backend,
            )
            result.trajectories[m.name] = [trajs[t] for t in task_ids]
    finally:
        if writer is not None:
            writer.close()
    result.wall_s = time.perf_counter() - t0
    return result


async def _run_method(
    m: Method,
    todo: Sequence[str],
    trajs: dict[str, Trajectory],
    env_factory: Callable[[], Any],
    envs: list[Any],
    proposer: Any,
    greedy_proposer: Any,
    scorer: Any,
    writer: JsonlAppender | None,
    *,
    max_steps: int,
    seed: int,
    concurrency: int,
    bar: Any,
    backend: Any = None,
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


def max_steps_of(env: Any, default: int = 15) -> int:
    """The environment's own step limit (``max_steps``) or ``default``."""
    v = getattr(env, "max_steps", None)
    return int(v) if isinstance(v, int) and v > 0 else default


def run_evaluation(
    *,
    env: str = "toy",
    split: str = "test",
    policy: str = "random",
    qmodel: str | Path | None = None,
    scorer: Sequence[str] = (),
    methods: Sequence[str] = ("greedy,sample,best-of-n,random,majority",),
    n: Sequence[int] = (5,),
    tasks: int | Sequence[str] = 0,
    max_steps: int = 0,
    temperature: float = 1.0,
    seed: int = 0,
    out: str | Path = "report",
    resume: bool = False,
    overwrite: bool = False,
    concurrency: int = 1,
    env_option: Sequence[str] = (),
    scorer_option: Sequence[str] = (),
    policy_option: Sequence[str] = (),
    cache_bytes: str | int | None = None,
    view: bool = True,
    progress: bool = True,
    command: str | None = None,
    extra_config: dict[str, Any] | None = None,
    proposers: tuple[Any, Any] | None = None,
    ray: Any = None,
) -> dict[str, Any]:
    """What ``agentq eval`` does: build everything from specs, run, write the report directory.

    ``tasks`` is a count (first K of the split, 0 = all) or an explicit list of task ids.
    ``proposers`` (sampling, greedy) skips building the policy from ``policy``. ``ray`` (an
    ``agentq.backends.ray.RayOptions``) runs the episodes on Ray workers, each building the
    policy and scorers once. Returns the report dict with the markdown table under ``"table"``.
    ``cache_bytes`` sets the budget of the prefix cache the local models of this process share
    (:func:`agentq.models.prefix_cache.shared_prefix_cache`).
    """
    import agentq.envs as envs
    from agentq.data.jsonl import check_parent_dirs
    from agentq.eval.report import markdown_table, write_report
    from agentq.options import check_number, parse_env_options
    from agentq.search.mcts import MAX_N

    if cache_bytes is not None:  # bad input before anything loads or is written
        from agentq.models.prefix_cache import shared_prefix_cache

        shared_prefix_cache(cache_bytes)

    out = Path(out)
    traj_path = out / TRAJECTORIES_FILE
    run_path = out / "run.json"
    if out.exists() and not out.is_dir():
        raise UserInputError(f"output {out} is not a directory")
    if traj_path.exists() and not (resume or overwrite):
        raise UserInputError(
            f"{traj_path} exists; pass --resume to continue it or --overwrite to replace it"
        )
    if resume and overwrite:
        raise UserInputError("pass either --resume or --overwrite, not both")
    check_parent_dirs(out)
    if isinstance(tasks, int):
        check_number("tasks", tasks, lo=0)
    for k in n:
        check_number("n", k, lo=1, hi=MAX_N)
    check_number("concurrency", concurrency, lo=1)
    check_number("max_steps", max_steps, lo=0)
    check_number("temperature", temperature, lo=0)
    env_opts = parse_env_options(list(env_option))
    scorer_specs = list(scorer)
    if qmodel:
        scorer_specs.insert(0, f"qmodel:{qmodel}")
    kinds = [k.strip() for v in methods for k in v.split(",") if k.strip()]
    if not scorer_specs:
        kinds = [k for k in kinds if k.replace("_", "-") not in ("best-of-n", "bon", "best-of")]
    method_list = build_methods(kinds, list(n), scorer_specs)
    factory = envs.resolve(env)
    probe = envs.make(env, **env_opts)
    if isinstance(tasks, int):
        task_ids = list(probe.tasks(split))
        if not task_ids:
            raise UserInputError(f"environment {env!r} has no tasks in split {split!r}")
        if tasks:
            task_ids = task_ids[:tasks]
    else:
        task_ids = list(tasks)
    if task_ids:
        envs.check_first_task(probe, task_ids[0], env)
    steps = max_steps or max_steps_of(probe)
    config = {
        "env": env,
        "env_options": env_opts,
        "split": split,
        "policy": policy,
        "scorers": scorer_specs,
        "methods": [m.to_dict() for m in method_list],
        "n": sorted(set(n)),
        "tasks": len(task_ids),
        "max_steps": steps,
        "temperature": temperature,
        "seed": seed,
        **(extra_config or {}),
    }
    key = {
        k: config[k]
        for k in ("env", "env_options", "split", "policy", "max_steps", "temperature", "seed")
    }
    if resume and run_path.exists():
        old = json.loads(run_path.read_text())
        diff = [k for k in key if old.get(k) != key[k]]
        if diff:
            raise UserInputError(
                f"cannot resume {out}: it was run with different {', '.join(diff)}"
            )
    remote = None
    if ray is not None:  # started before anything is written: a bad address writes nothing
        from agentq.eval.remote_work import start_ray_eval

        remote = start_ray_eval(
            ray,
            env=env,
            env_options=env_opts,
            policy=policy,
            seed=seed,
            temperature=temperature,
            policy_options=parse_env_options(list(policy_option)),
            scorer_specs=scorer_specs,
            scorer_options=parse_env_options(list(scorer_option)),
            max_steps=steps,
            concurrency=concurrency,
        )
        proposers = (None, None)
    if proposers is None:
        proposers = build_policies(
            policy,
            seed=seed,
            temperature=temperature,
            options=parse_env_options(list(policy_option)),
        )
    sampler, greedy = proposers
    scorer_objs = (
        build_scorers(
            scorer_specs,
            env=env,
            env_options=env_opts,
            options=parse_env_options(list(scorer_option)),
        )
        if remote is None
        else dict.fromkeys(scorer_specs)
    )
    # written only once every model is built: a bad --qmodel or --scorer leaves nothing behind
    out.mkdir(parents=True, exist_ok=True)
    run_path.write_text(json.dumps(key, indent=2) + "\n")
    pool = [probe]

    def make_env() -> Any:
        return pool.pop() if pool else factory(**env_opts)

    try:
        result = run_eval(
            make_env,
            task_ids,
            method_list,
            sampler,
            greedy_proposer=greedy,
            scorers=scorer_objs,
            out_dir=out,
            resume=resume,
            max_steps=steps,
            seed=seed,
            concurrency=concurrency,
            progress=progress,
            backend=remote,
        )
    finally:
        if remote is not None:
            remote.close()
    rep = write_report(out, result, config, command=command)
    if view:
        from agentq.eval.view import write_html

        write_html(traj_path, out / "trajectories.html")
    rep["table"] = markdown_table(rep)
    return rep


def build_policies(
    policy: str, *, seed: int, temperature: float, options: dict[str, Any] | None = None
) -> tuple[Any, Any]:
    """(sampling proposer, greedy proposer) for a MODEL spec.

    The greedy twin is built at temperature 0; policies whose builder takes no temperature
    (``random``) give the same proposer for both.
    """
    from agentq.specs import resolve_policy

    options = dict(options or {})
    if policy.strip() == "random":
        p = resolve_policy(policy, seed=seed)
        return p, p
    try:
        sampler = resolve_policy(policy, seed=seed, temperature=temperature, **options)
        greedy = resolve_policy(policy, seed=seed, temperature=0.0, **options)
    except TypeError:
        sampler = resolve_policy(policy, seed=seed, **options)
        greedy = sampler
    return sampler, greedy


def build_scorers(
    specs: list[str], *, env: str, env_options: dict[str, Any], options: dict[str, Any]
) -> dict[str, Any]:
    """Build each SCORER spec once (``toy-oracle`` gets the toy environment's options)."""
    from agentq.specs import resolve_scorer

    out = {}
    for s in specs:
        opts = dict(options)
        if s.strip() == "toy-oracle" and env == "toy" and not opts:
            opts = dict(env_options)
        out[s] = resolve_scorer(s, **opts)
    return out
