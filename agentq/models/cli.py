"""``agentq train`` (step-level DPO on pairs.jsonl) and ``agentq score`` (a quick scoring check).

Heavy imports (torch, transformers, trl, peft) happen inside the command bodies.
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


@dataclass
class ScoreConfig:
    """What ``agentq score`` runs: a Q-model's scores of candidate actions in one context.

    Each field's default, help and checks are declared here; the command's flags come from
    them (:func:`agentq.cli_common.config_command`).
    """

    qmodel: Path = option(help="Q-model directory (from agentq train).")
    context: Path = option(help="Context file: JSON messages or plain text.")
    actions: Path = option(help="Actions file: JSON list or one per line.")
    aggregation: str | None = option(None, help="sum or mean (default: the model's).")
    device: str | None = option(None, help="cuda or cpu (default: cuda when present).")
    as_json: bool = option(False, flags=("--json",), help="Print a JSON list instead of a table.")

    def __post_init__(self) -> None:
        self.qmodel, self.context, self.actions = (
            Path(self.qmodel),
            Path(self.context),
            Path(self.actions),
        )
        if self.aggregation is not None and self.aggregation not in ("sum", "mean"):
            raise UserInputError(f"aggregation must be sum or mean, not {self.aggregation!r}")


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

    @config_command(app, ScoreConfig)
    def score(config: ScoreConfig) -> None:
        """Score candidate actions in a context with a Q-model (higher is better)."""
        ctx_msgs = read_context_file(config.context)
        acts = read_actions_file(config.actions)
        from agentq.models.scorer import QValueScorer

        scorer = QValueScorer.from_pretrained(
            config.qmodel, device=config.device, aggregation=config.aggregation
        )
        scores = scorer.score(ctx_msgs, acts)
        if config.as_json:
            typer.echo(
                json.dumps([{"action": a, "q": s} for a, s in zip(acts, scores, strict=True)])
            )
            return
        order = sorted(range(len(acts)), key=lambda i: -scores[i])
        rank = {i: r + 1 for r, i in enumerate(order)}
        for i, (a, s) in enumerate(zip(acts, scores, strict=True)):
            shown = a.replace("\n", "\\n")
            typer.echo(f"{s:+.6f}\trank {rank[i]}\t{shown}")
