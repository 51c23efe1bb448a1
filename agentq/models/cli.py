"""``agentq train`` (step-level DPO on pairs.jsonl) and ``agentq score`` (a quick scoring check).

Heavy imports (torch, transformers, trl, peft) happen inside the command bodies.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from agentq.cli_common import cli_command, config_command
from agentq.errors import UserInputError
from agentq.models.train import TrainCommandConfig


def read_context_file(path: Path) -> Any:
    """A context from a file: a JSON list of messages, a JSON object with ``prompt`` (a pair) or
    ``context``, or plain text (one user message)."""
    if not path.is_file():
        raise UserInputError(f"context file not found: {path}")
    text = path.read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        if not text.strip():
            raise UserInputError(f"context file {path} is empty") from None
        return [{"role": "user", "content": text.strip()}]
    if isinstance(data, dict):
        data = data.get("prompt", data.get("context"))
    if not isinstance(data, list) or not all(
        isinstance(m, dict) and "role" in m and "content" in m for m in data
    ):
        raise UserInputError(
            f"context file {path} must be a JSON list of {{role, content}} messages (or plain text)"
        )
    return data


def read_actions_file(path: Path) -> list[str]:
    """Actions from a file: a JSON list of strings, or one action per line."""
    if not path.is_file():
        raise UserInputError(f"actions file not found: {path}")
    text = path.read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return [line for line in text.splitlines() if line.strip()]
    if isinstance(data, str):
        return [data]
    if not isinstance(data, list) or not all(isinstance(a, str) for a in data):
        raise UserInputError(
            f"actions file {path} must be a JSON list of strings or one action per line"
        )
    return data


def register(app: typer.Typer) -> None:
    """Add ``agentq train`` and ``agentq score`` to the CLI."""

    @config_command(app, TrainCommandConfig)
    def train(cfg: TrainCommandConfig) -> None:
        """Train a step-level Q-value model with DPO (LoRA; the reference is the adapter-free base)."""
        from agentq.models.train import train_qmodel

        res = train_qmodel(
            cfg.pairs, cfg.base, cfg.out, cfg.train, overwrite=cfg.overwrite, progress=cfg.progress
        )
        m = res.metrics
        va = m.get("validation_pairwise_accuracy")
        typer.echo(
            f"pairs train {res.data['train_pairs']} / validation {res.data['validation_pairs']} | "
            f"steps {m['steps']} | loss {m['first_loss']:.4f} -> {m['final_loss']:.4f} | "
            f"validation pairwise accuracy {'n/a' if va is None else f'{va:.3f}'} -> {res.out}"
        )

    @app.command()
    @cli_command
    def score(
        qmodel: Path = typer.Option(..., help="Q-model directory (from agentq train)."),
        context: Path = typer.Option(..., help="Context file: JSON messages or plain text."),
        actions: Path = typer.Option(..., help="Actions file: JSON list or one per line."),
        aggregation: str | None = typer.Option(None, help="sum or mean (default: the model's)."),
        device: str | None = typer.Option(None, help="cuda or cpu (default: cuda when present)."),
        as_json: bool = typer.Option(False, "--json", help="Print a JSON list instead of a table."),
    ) -> None:
        """Score candidate actions in a context with a Q-model (higher is better)."""
        ctx_msgs = read_context_file(context)
        acts = read_actions_file(actions)
        if aggregation is not None and aggregation not in ("sum", "mean"):
            raise UserInputError(f"aggregation must be sum or mean, not {aggregation!r}")
        from agentq.models.scorer import QValueScorer

        scorer = QValueScorer.from_pretrained(qmodel, device=device, aggregation=aggregation)
        scores = scorer.score(ctx_msgs, acts)
        if as_json:
            typer.echo(
                json.dumps([{"action": a, "q": s} for a, s in zip(acts, scores, strict=True)])
            )
            return
        order = sorted(range(len(acts)), key=lambda i: -scores[i])
        rank = {i: r + 1 for r, i in enumerate(order)}
        for i, (a, s) in enumerate(zip(acts, scores, strict=True)):
            shown = a.replace("\n", "\\n")
            typer.echo(f"{s:+.6f}\trank {rank[i]}\t{shown}")
