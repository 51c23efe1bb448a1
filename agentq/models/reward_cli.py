"""``agentq train-rm``: train a tool-augmented reward model (Themis objective) on TARA files.

Registered by :func:`register` (called from :mod:`agentq.cli`). Heavy imports happen inside the
command body.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from agentq.cli_common import config_command
from agentq.config import option
from agentq.errors import UserInputError


def _paths(value: Any) -> list[Path]:
    """One path or a list of them (a config file's strings) as paths."""
    return [Path(v) for v in ([value] if isinstance(value, str | Path) else value)]


@dataclass
class TrainRMConfig:
    """What ``agentq train-rm`` runs: reward-model training on TARA files, then held-out accuracy.

    Each field's default, help and checks are declared here; the command's flags come from
    them (:func:`agentq.cli_common.config_command`). The training settings are
    :meth:`rm_train_config`'s (:class:`agentq.models.reward_train.RMTrainConfig`, checked there).
    """

    data: list[Path] = option(
        help="TARA files (JSON Lines) or a directory of them.", argument=True, parse=_paths
    )
    out: Path = option(help="Output directory of the reward model.")
    base: str = option("smollm2", help="MODEL spec of the base LM.")
    files: str = option(
        "", help="Comma-separated short names to use from a directory (default all)."
    )
    limit: int = option(0, help="Rows per file (0 = all).")
    holdout: float = option(0.2, help="Share of each file's rows held out (never trained on).")
    epochs: int = option(1, help="Epochs over the training pairs.")
    max_steps: int = option(0, help="Stop after this many optimiser steps (0 = no limit).")
    batch_size: int = option(4, help="Pairs per step.")
    lr: float = option(2e-4, help="LoRA learning rate.")
    head_lr: float = option(1e-3, help="Value-head learning rate.")
    lora_r: int = option(8, help="LoRA rank (alpha is twice the rank).")
    lora_layers: int = option(
        0, help="LoRA on the top N decoder layers only (0 = all; fewer train faster on a CPU)."
    )
    max_length: int = option(768, help="Max tokens per sequence.")
    rank_weight: float = option(1.0, help="Weight of the pairwise ranking loss.")
    trace_weight: float = option(1.0, help="LM loss weight on tool-call tokens.")
    obs_weight: float = option(0.0, help="LM loss weight on observation tokens.")
    rationale_weight: float = option(1.0, help="LM loss weight on rationale tokens.")
    pooling: str = option("last", help="last | mean")
    tools: str = option(
        "tara", help="tara (the tools TARA's traces use) | all (plus the tool-use environment's)."
    )
    eval_generate: int = option(
        0, help="Held-out pairs per file scored with generated traces after training (0 = skip)."
    )
    max_new_tokens: int = option(160, help="Generation budget per candidate (evaluation).")
    max_tool_calls: int = option(2, help="Tool-call budget per candidate (evaluation).")
    seed: int = option(0, help="Seed.")
    device: str = option("", help="cpu / cuda (default: automatic).")
    overwrite: bool = option(False, help="Replace an existing output directory.")

    def __post_init__(self) -> None:
        self.data = _paths(self.data)
        self.out = Path(self.out)
        if not 0.0 <= self.holdout < 1.0:
            raise UserInputError("--holdout must be in [0, 1)")
        self.rm_train_config()
        if self.tools not in ("tara", "all"):
            raise UserInputError("--tools must be 'tara' or 'all'")

    def rm_train_config(self) -> Any:
        """The training settings (:class:`agentq.models.reward_train.RMTrainConfig`)."""
        from agentq.models.reward_train import RMTrainConfig

        return RMTrainConfig(
            base=self.base,
            lora_r=self.lora_r,
            lora_alpha=2 * self.lora_r,
            lora_layers=self.lora_layers or None,
            lr=self.lr,
            head_lr=self.head_lr,
            epochs=self.epochs,
            max_steps=self.max_steps or None,
            batch_size=self.batch_size,
            max_length=self.max_length,
            rank_weight=self.rank_weight,
            trace_weight=self.trace_weight,
            obs_weight=self.obs_weight,
            rationale_weight=self.rationale_weight,
            pooling=self.pooling,
            seed=self.seed,
            device=self.device or None,
        )


def register(app: typer.Typer) -> None:
    """Add the ``train-rm`` command to ``app``."""

    @config_command(app, TrainRMConfig, name="train-rm")
    def train_rm(config: TrainRMConfig) -> None:
        """Train a tool-augmented reward model on TARA pairs and report held-out pairwise accuracy."""
        from agentq.data.tara import TARA_FILES, load_tara, load_tara_dir, pairwise_accuracy
        from agentq.models.reward import RMBudget, ToolAugmentedScorer, load_toolset
        from agentq.models.reward_train import (
            examples_from_tara,
            split_rows,
            teacher_forced_accuracy,
            train_reward_model,
        )

        c = config
        data, out, files, limit, holdout, seed = (
            c.data,
            c.out,
            c.files,
            c.limit,
            c.holdout,
            c.seed,
        )
        eval_generate, max_new_tokens, max_tool_calls = (
            c.eval_generate,
            c.max_new_tokens,
            c.max_tool_calls,
        )
        if out.exists() and any(out.iterdir()) and not c.overwrite:
            raise UserInputError(
                f"output directory {out} exists and is not empty (use --overwrite)"
            )
        names = [n.strip() for n in files.split(",") if n.strip()] or None
        by_file: dict[str, list] = {}
        for p in data:
            if p.is_dir():
                by_file.update(load_tara_dir(p, names))
            elif p.is_file():
                pairs = load_tara(p)
                by_file[pairs[0].source if pairs else p.stem] = pairs
            else:
                raise UserInputError(f"not found: {p}")
        if names:
            unknown = [n for n in names if n not in TARA_FILES]
            if unknown:
                raise UserInputError(f"unknown TARA file names: {unknown}")
        train, held = [], {}
        for name, pairs in by_file.items():
            if limit:
                pairs = pairs[:limit]
            tr, ho = split_rows(pairs, holdout, seed)
            train.extend(tr)
            held[name] = ho
        cfg = c.rm_train_config()
        toolset = load_toolset().tools(include_env_tools=c.tools == "all")
        train_ex = examples_from_tara(train)
        held_ex = {k: examples_from_tara(v) for k, v in held.items()}
        summary = {
            "files": {k: len(v) for k, v in by_file.items()},
            "train_ids": [p.id for p in train],
            "heldout_ids": {k: [p.id for p in v] for k, v in held.items()},
            "note": "TARA ships test splits only: training uses some rows, evaluation the held-out rest",
        }
        rm, res = train_reward_model(train_ex, out, cfg, data_summary=summary, tools=toolset)
        typer.echo(
            f"trained {res.metrics['steps']} steps on {len(train_ex)} pairs in {res.metrics['wall_s']:.0f}s | "
            f"loss {res.metrics['first_loss']:.3f} -> {res.metrics['last_loss']:.3f}"
        )
        results: dict[str, dict] = {}
        for name, ex in held_ex.items():
            if not ex:
                continue
            row = {
                "heldout_pairs": len(ex),
                "teacher_forced_accuracy": teacher_forced_accuracy(rm, ex, cfg),
            }
            if eval_generate:
                budget = RMBudget(
                    max_tool_calls=max_tool_calls,
                    max_new_tokens=max_new_tokens,
                    max_segment_tokens=min(max_new_tokens, 96),
                )
                scorer = ToolAugmentedScorer(rm, budget=budget)
                sub = held[name][:eval_generate]
                r = pairwise_accuracy(scorer, sub, batch_size=4, progress=True)
                row.update(
                    {
                        "generated_pairs": r.n,
                        "generated_accuracy": r.accuracy,
                        "generated_strict_accuracy": r.strict_accuracy,
                        "ties": r.ties,
                    }
                )
            results[name] = row
            typer.echo(
                f"{name:12s} "
                + " ".join(
                    f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
                )
            )
        (out / "heldout_eval.json").write_text(json.dumps(results, indent=2) + "\n")
