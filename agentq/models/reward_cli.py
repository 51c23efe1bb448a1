"""``agentq train-rm``: train a tool-augmented reward model (Themis objective) on TARA files.

Registered by :func:`register` (called from :mod:`agentq.cli`). Heavy imports happen inside the
command body.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from agentq.cli_common import cli_command
from agentq.errors import UserInputError


def register(app: typer.Typer) -> None:
    """Add the ``train-rm`` command to ``app``."""

    @app.command("train-rm")
    @cli_command
    def train_rm(
        data: list[Path] = typer.Argument(
            ..., help="TARA files (JSON Lines) or a directory of them."
        ),
        out: Path = typer.Option(..., help="Output directory of the reward model."),
        base: str = typer.Option("smollm2", help="MODEL spec of the base LM."),
        files: str = typer.Option(
            "", help="Comma-separated short names to use from a directory (default all)."
        ),
        limit: int = typer.Option(0, help="Rows per file (0 = all)."),
        holdout: float = typer.Option(
            0.2, help="Share of each file's rows held out (never trained on)."
        ),
        epochs: int = typer.Option(1),
        max_steps: int = typer.Option(
            0, help="Stop after this many optimiser steps (0 = no limit)."
        ),
        batch_size: int = typer.Option(4, help="Pairs per step."),
        lr: float = typer.Option(2e-4, help="LoRA learning rate."),
        head_lr: float = typer.Option(1e-3, help="Value-head learning rate."),
        lora_r: int = typer.Option(8),
        max_length: int = typer.Option(768),
        rank_weight: float = typer.Option(1.0),
        trace_weight: float = typer.Option(1.0, help="LM loss weight on tool-call tokens."),
        obs_weight: float = typer.Option(0.0, help="LM loss weight on observation tokens."),
        rationale_weight: float = typer.Option(1.0, help="LM loss weight on rationale tokens."),
        pooling: str = typer.Option("last", help="last | mean"),
        tools: str = typer.Option(
            "tara",
            help="tara (the tools TARA's traces use) | all (plus the tool-use environment's).",
        ),
        eval_generate: int = typer.Option(
            0,
            help="Held-out pairs per file scored with generated traces after training (0 = skip).",
        ),
        max_new_tokens: int = typer.Option(
            160, help="Generation budget per candidate (evaluation)."
        ),
        max_tool_calls: int = typer.Option(2, help="Tool-call budget per candidate (evaluation)."),
        seed: int = typer.Option(0),
        device: str = typer.Option("", help="cpu / cuda (default: automatic)."),
        overwrite: bool = typer.Option(False, help="Replace an existing output directory."),
    ) -> None:
        """Train a tool-augmented reward model on TARA pairs and report held-out pairwise accuracy."""
        from agentq.data.tara import TARA_FILES, load_tara, load_tara_dir, pairwise_accuracy
        from agentq.models.reward import RMBudget, ToolAugmentedScorer, load_toolset
        from agentq.models.reward_train import (
            RMTrainConfig,
            examples_from_tara,
            split_rows,
            teacher_forced_accuracy,
            train_reward_model,
        )

        if out.exists() and any(out.iterdir()) and not overwrite:
            raise UserInputError(
                f"output directory {out} exists and is not empty (use --overwrite)"
            )
        if not 0.0 <= holdout < 1.0:
            raise UserInputError("--holdout must be in [0, 1)")
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
        cfg = RMTrainConfig(
            base=base,
            lora_r=lora_r,
            lora_alpha=2 * lora_r,
            lr=lr,
            head_lr=head_lr,
            epochs=epochs,
            max_steps=max_steps or None,
            batch_size=batch_size,
            max_length=max_length,
            rank_weight=rank_weight,
            trace_weight=trace_weight,
            obs_weight=obs_weight,
            rationale_weight=rationale_weight,
            pooling=pooling,
            seed=seed,
            device=device or None,
        )
        if tools not in ("tara", "all"):
            raise UserInputError("--tools must be 'tara' or 'all'")
        toolset = load_toolset().tools(include_env_tools=tools == "all")
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
