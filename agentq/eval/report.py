"""Reports of an evaluation run: metrics with bootstrap intervals, report.json, report.md, a plot.

``report.json`` holds everything (the exact command, package versions, the config, per-method
metrics with 95% intervals, paired differences against the reference method); ``report.md``
the table; ``success.png`` success rate by method with its interval, and by N when a run has
several N values.
"""

from __future__ import annotations

import json
import platform
import shlex
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from agentq.eval.usage import summary_line
from agentq.types import Trajectory

METRICS = ("success", "reward", "steps", "model_calls", "tokens", "wall_s")
"""Per-episode quantities averaged per method (success = reward 1)."""

_PACKAGES = (
    "agentq",
    "torch",
    "transformers",
    "trl",
    "peft",
    "numpy",
    "langgraph",
    "langchain-core",
)


def bootstrap_ci(
    values: Sequence[float], *, samples: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (``(nan, nan)`` when empty)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return (float("nan"), float("nan"))
    if x.size == 1 or np.all(x == x[0]):
        return (float(x.mean()), float(x.mean()))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(samples, x.size))
    means = x[idx].mean(axis=1)
    a = (1 - level) / 2
    return (float(np.quantile(means, a)), float(np.quantile(means, 1 - a)))


def episode_values(t: Trajectory) -> dict[str, float]:
    """The per-episode quantities of :data:`METRICS` for one trajectory."""
    return {
        "success": 1.0 if t.success else 0.0,
        "reward": float(t.reward),
        "steps": float(len(t.steps)),
        "model_calls": float(t.model_calls),
        "tokens": float(t.tokens),
        "wall_s": float(t.wall_s),
    }


def method_metrics(
    trajs: Sequence[Trajectory], *, seed: int = 0, samples: int = 2000
) -> dict[str, Any]:
    """Mean and 95% bootstrap interval of every metric over one method's episodes."""
    out: dict[str, Any] = {
        "episodes": len(trajs),
        "errors": sum(t.error is not None for t in trajs),
    }
    invalid = [s.info.get("invalid", False) for t in trajs for s in t.steps]
    out["invalid_action_rate"] = float(np.mean(invalid)) if invalid else 0.0
    for k in METRICS:
        vals = [episode_values(t)[k] for t in trajs]
        lo, hi = bootstrap_ci(vals, seed=seed, samples=samples)
        out[k] = {"mean": float(np.mean(vals)) if vals else float("nan"), "ci95": [lo, hi]}
    return out


def paired_difference(
    a: Sequence[Trajectory],
    b: Sequence[Trajectory],
    key: str = "success",
    *,
    seed: int = 0,
    samples: int = 2000,
) -> dict[str, Any]:
    """Mean of ``a - b`` over the same tasks (paired), with its bootstrap 95% interval."""
    by_task = {t.task_id: episode_values(t)[key] for t in b}
    diffs = [episode_values(t)[key] - by_task[t.task_id] for t in a if t.task_id in by_task]
    lo, hi = bootstrap_ci(diffs, seed=seed, samples=samples)
    return {
        "mean": float(np.mean(diffs)) if diffs else float("nan"),
        "ci95": [lo, hi],
        "tasks": len(diffs),
    }


def versions() -> dict[str, str]:
    """Versions of Python, the platform and the packages a run depends on."""
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for p in _PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            continue
    return out


def command_line(argv: Sequence[str] | None = None) -> str:
    """The exact command as typed (``sys.argv`` by default), shell-quoted."""
    argv = list(sys.argv if argv is None else argv)
    if argv and argv[0].endswith(("agentq", "__main__.py")):
        argv[0] = "agentq"
    return shlex.join(argv)


def build_report(
    result: Any,
    config: dict[str, Any],
    *,
    command: str | None = None,
    reference: str | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """The report.json content of an :class:`~agentq.eval.runner.EvalResult`.

    ``reference`` is the method the paired differences are taken against (the first method,
    normally ``greedy``, when None). ``cache`` (per method and for the run) is the prefix-cache
    use the runner read from the models' ``stats()`` (:mod:`agentq.eval.usage`): hit rate,
    tokens reused and computed, cache bytes and peak bytes; None when no model reports any.
    """
    names = [m.name for m in result.methods]
    reference = reference if reference in names else (names[0] if names else None)
    per_method: dict[str, Any] = {}
    by_method = getattr(result, "cache_by_method", None) or {}
    for m in result.methods:
        trajs = result.trajectories.get(m.name, [])
        row = {"method": m.to_dict(), **method_metrics(trajs, seed=seed)}
        row["cache"] = by_method.get(m.name)
        if reference is not None and m.name != reference:
            row["vs_reference"] = {
                k: paired_difference(trajs, result.trajectories.get(reference, []), k, seed=seed)
                for k in ("success", "reward")
            }
        same_n = f"random@{m.n}"
        if m.kind in ("best-of-n", "majority") and same_n in names:
            # the control that separates a scorer from "any of the N samples": random@N
            row["vs_random"] = {
                k: paired_difference(trajs, result.trajectories.get(same_n, []), k, seed=seed)
                for k in ("success", "reward")
            }
            row["vs_random"]["method"] = same_n
        per_method[m.name] = row
    return {
        "command": command if command is not None else command_line(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": versions(),
        "config": config,
        "tasks": list(result.task_ids),
        "reference": reference,
        "methods": per_method,
        "resumed_episodes": result.skipped,
        "wall_s": round(result.wall_s, 2),
        "cache": getattr(result, "cache", None),
    }


def _fmt_ci(m: dict[str, Any], pct: bool = False, digits: int = 2) -> str:
    mean, (lo, hi) = m["mean"], m["ci95"]
    if pct:
        return f"{100 * mean:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"
    return f"{mean:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def markdown_table(report: dict[str, Any]) -> str:
    """The per-method table of a report (GitHub markdown)."""
    ref = report.get("reference")
    head = (
        "| method | N | success [95% CI] | mean reward [95% CI] | Δ success vs "
        f"{ref} | Δ success vs random@N | steps | model calls | tokens | wall s | errors |"
    )
    lines = [head, "|" + "---|" * 11]

    def delta(d: dict[str, Any] | None) -> str:
        if d is None:
            return "—"
        return f"{100 * d['mean']:+.1f} pts [{100 * d['ci95'][0]:+.1f}, {100 * d['ci95'][1]:+.1f}]"

    for name, r in report["methods"].items():
        d_ref = delta(r.get("vs_reference", {}).get("success"))
        d_rand = delta(r.get("vs_random", {}).get("success"))
        lines.append(
            f"| {name} | {r['method']['n']} | {_fmt_ci(r['success'], pct=True)} | "
            f"{_fmt_ci(r['reward'])} | {d_ref} | {d_rand} | {r['steps']['mean']:.1f} | "
            f"{r['model_calls']['mean']:.1f} | {r['tokens']['mean']:.0f} | "
            f"{r['wall_s']['mean']:.1f} | {r['errors']} |"
        )
    return "\n".join(lines)


def markdown_report(report: dict[str, Any]) -> str:
    """report.md: the command, the setup, the table and a line of prefix-cache use."""
    cfg = report.get("config", {})
    parts = [
        "# agentq eval report",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Environment `{cfg.get('env')}`, split `{cfg.get('split')}`, {len(report['tasks'])} tasks, "
        f"policy `{cfg.get('policy')}`, seed {cfg.get('seed')}, max steps {cfg.get('max_steps')}. "
        f"Success = reward 1. Intervals: 95% percentile bootstrap over tasks; "
        f"Δ is paired against `{report.get('reference')}` on the same tasks, and for best-of-N "
        "and majority against random choice among the same N samples (random@N).",
        "",
        markdown_table(report),
        "",
    ]
    cache = summary_line(
        report.get("cache"), {k: r.get("cache") for k, r in report["methods"].items()}
    )
    if cache:
        parts += [cache, ""]
    parts += [
        f"Created {report['created']}, wall {report['wall_s']} s; versions: "
        + ", ".join(f"{k} {v}" for k, v in report["versions"].items() if k != "platform"),
        "",
    ]
    return "\n".join(parts)


def plot_success(report: dict[str, Any], path: str | Path) -> Path:
    """success.png: success rate by method with 95% intervals; by N too when several N exist."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(report["methods"].items())
    ns = sorted(
        {r["method"]["n"] for _, r in rows if r["method"]["kind"] not in ("greedy", "sample")}
    )
    two = len(ns) > 1
    fig, axes = plt.subplots(1, 2 if two else 1, figsize=(12 if two else 7, 4.2), squeeze=False)
    ax = axes[0][0]
    names = [n for n, _ in rows]
    means = np.array([100 * r["success"]["mean"] for _, r in rows])
    lo = np.array([100 * r["success"]["ci95"][0] for _, r in rows])
    hi = np.array([100 * r["success"]["ci95"][1] for _, r in rows])
    colors = [
        "#9e9e9e"
        if r["method"]["kind"] in ("greedy", "sample")
        else "#1f77b4"
        if r["method"]["kind"] == "best-of-n"
        else "#ff7f0e"
        for _, r in rows
    ]
    x = np.arange(len(names))
    ax.bar(x, means, color=colors)
    ax.errorbar(
        x,
        means,
        yerr=[np.maximum(means - lo, 0), np.maximum(hi - means, 0)],
        fmt="none",
        ecolor="black",
        capsize=4,
    )
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylabel("success rate (%)")
    ax.set_ylim(0, 100)
    ax.set_title(
        f"{report['config'].get('env')} {report['config'].get('split')}: "
        f"{len(report['tasks'])} tasks, 95% CI"
    )
    if two:
        ax2 = axes[0][1]
        families: dict[str, list[tuple[int, float, float, float]]] = {}
        for name, r in rows:
            kind = r["method"]["kind"]
            if kind in ("greedy", "sample"):
                ax2.axhline(
                    100 * r["success"]["mean"],
                    ls="--",
                    color="#9e9e9e" if kind == "greedy" else "#bbbbbb",
                    label=name,
                )
                continue
            fam = name.rsplit("@", 1)[0]
            s = r["success"]
            families.setdefault(fam, []).append(
                (r["method"]["n"], 100 * s["mean"], 100 * s["ci95"][0], 100 * s["ci95"][1])
            )
        for fam, pts in families.items():
            pts.sort()
            xs = [p[0] for p in pts]
            ax2.plot(xs, [p[1] for p in pts], marker="o", label=fam)
            ax2.fill_between(xs, [p[2] for p in pts], [p[3] for p in pts], alpha=0.15)
        ax2.set_xscale("log", base=2)
        ax2.set_xticks(ns, [str(n) for n in ns])
        ax2.set_xlabel("N (candidates per step)")
        ax2.set_ylabel("success rate (%)")
        ax2.set_ylim(0, 100)
        ax2.legend(fontsize=8)
        ax2.set_title("success by N")
    fig.tight_layout()
    p = Path(path)
    fig.savefig(p, dpi=110)
    plt.close(fig)
    return p


def write_report(
    out_dir: str | Path,
    result: Any,
    config: dict[str, Any],
    *,
    command: str | None = None,
    reference: str | None = None,
    plot: bool = True,
) -> dict[str, Any]:
    """Write report.json, report.md and success.png into ``out_dir``; return the report."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rep = build_report(result, config, command=command, reference=reference)
    (out / "report.json").write_text(json.dumps(rep, indent=2, ensure_ascii=False) + "\n")
    (out / "report.md").write_text(markdown_report(rep))
    if plot:
        plot_success(rep, out / "success.png")
    return rep
