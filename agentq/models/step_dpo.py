"""Step-level DPO with one prompt pass per decision: agentq's own loss on transformers' Trainer.

TRL's ``DPOTrainer`` runs every pair as two whole sequences (prompt + chosen, prompt +
rejected), so a decision with k tried actions and its k(k-1)/2 sibling pairs costs k(k-1)
prompt passes, and the reference model runs again at every step unless its log-probs are
precomputed. TRL has no way to share one prompt between the two sides of a pair, let alone
between all the pairs of a node, so agentq owns the loss here (on ``transformers.Trainer``,
the class TRL's trainers build on; the arguments are TRL's ``DPOConfig``):

* Pairs are grouped by decision (same task, same context): one *group* holds the prompt, the
  distinct actions tried there and the (chosen, rejected) index pairs between them.
* The reference log-probs (base model, adapter off) of every action are computed once, before
  training, with the scorer's prefix-shared pass.
* Each step runs a group's prompt through the LoRA model once, expands its KV cache to the k
  actions and runs them in one batch; gradients flow through the shared prompt pass.
* The loss of a pair is DPO's ``-log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r)))`` on the
  summed action log-probs, averaged over the pairs of the batch (every pair of a node counted
  once, as in TRL).

The numbers are those of DPO on the same pairs (checked against TRL's loss in the tests); only
the cost changes: ``P + k*A`` tokens per node instead of ``k(k-1)*(P + A)``.

``loss="listwise"`` (:data:`LOSSES`) is DPO's Plackett-Luce form (Rafailov et al. 2023, appendix
A.3) on the same pairs: each action that beats some sibling gets one term, the negative log
softmax of its implicit reward against itself and every sibling it beats,
``-log(exp(m_w) / (exp(m_w) + sum_l exp(m_l)))`` with ``m = beta * (pi - ref)``. Ties (pairs
the margin dropped) stay out of each other's terms. With two actions this is DPO's loss
exactly. Per-pair DPO averages a node's k(k-1)/2 pairs, so at a node where one fine distinction
decides the outcome (a missing option at 0.95 against ``buy now`` at 0.8, next to thirty easy
pairs) that pair carries a thirtieth of the node's weight; the softmax term of the best action
puts its gradient on its strongest competitor.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentq.data.pairs import decision_key
from agentq.errors import UserInputError
from agentq.render import tokenize_actions_for_scoring


@dataclass
class PairGroup:
    """The pairs of one decision: a shared prompt, its distinct actions and the pairs between."""

    prompt_ids: list[int]
    action_ids: list[list[int]]
    pairs: list[tuple[int, int]]
    """(chosen index, rejected index) into ``action_ids``."""
    ref_logps: list[float] | None = None
    """Summed reference log-probs of each action (filled by :func:`fill_reference_logps`)."""

    def to_dict(self) -> dict[str, Any]:
        """Plain form for a ``datasets.Dataset`` row."""
        return {
            "prompt_ids": self.prompt_ids,
            "action_ids": self.action_ids,
            "pairs": [list(p) for p in self.pairs],
            "ref_logps": self.ref_logps,
        }


def group_pairs(
    tokenizer: Any, pairs: Sequence[dict[str, Any]], max_length: int | None, where: str = "pairs"
) -> list[PairGroup]:
    """Group pairs by (task, context) and tokenize each prompt and action once.

    The prompt of a group is the context truncated for its longest action (so every action
    fits in ``max_length``; :func:`agentq.render.truncate_context` decides what is cut).
    """
    by_key: dict[str, dict[str, Any]] = {}
    for i, p in enumerate(pairs):
        context = list(p["prompt"])
        key = decision_key(p.get("task_id"), context)
        g = by_key.setdefault(key, {"context": context, "actions": {}, "pairs": [], "first": i})
        ids = []
        for side in ("chosen", "rejected"):
            text = str(p[side][-1]["content"])
            ids.append(g["actions"].setdefault(text, len(g["actions"])))
        if ids[0] != ids[1] and tuple(ids) not in g["pairs"]:
            g["pairs"].append(tuple(ids))
    out: list[PairGroup] = []
    for g in by_key.values():
        if not g["pairs"]:
            continue
        texts = list(g["actions"])
        try:
            encoded = tokenize_actions_for_scoring(tokenizer, g["context"], texts, max_length)
        except ValueError as e:
            raise UserInputError(f"{where}: pair {g['first'] + 1}: {e}") from e
        prompt = min((pr for pr, _ in encoded), key=len)
        out.append(PairGroup(prompt, [a for _, a in encoded], list(g["pairs"])))
    return out


def reference_key(
    namespace: str, prompt_ids: Sequence[int], action_ids: Sequence[Sequence[int]]
) -> str:
    """The key of one decision's reference log-probs in a reference cache file: a digest of
    the base model's namespace, the prompt's token ids and every action's token ids."""
    from agentq.models.prefix_cache import ids_digest

    h = hashlib.blake2b(namespace.encode(), digest_size=16)
    for ids in (prompt_ids, *action_ids):
        h.update(ids_digest(ids))
    return h.hexdigest()


def fill_reference_logps(
    model: Any,
    groups: Sequence[PairGroup],
    progress: bool = False,
    cache_file: str | Path | None = None,
) -> int:
    """Summed log-probs of every action under the reference (adapter off), computed once.

    With ``cache_file`` (JSON lines of ``{"key", "logps"}``, :func:`reference_key`) decisions
    already there are read instead of computed, and the new ones are appended: a second
    training run on the same pairs and base model skips the reference pass. Returns the number
    of decisions computed."""
    import torch
    from tqdm import tqdm

    from agentq.models.prefix_cache import model_namespace
    from agentq.models.scorer import adapter_disabled

    known: dict[str, list[float]] = {}
    keys: list[str] = []
    if cache_file is not None:
        path = Path(cache_file)
        if path.exists():
            try:
                for line in path.read_text().splitlines():
                    if line.strip():
                        row = json.loads(line)
                        known[str(row["key"])] = [float(x) for x in row["logps"]]
            except (ValueError, KeyError, TypeError) as e:
                raise UserInputError(f"{path}: not a reference cache file ({e})") from e
        ns = repr(model_namespace(model, adapter=False))
        keys = [reference_key(ns, g.prompt_ids, g.action_ids) for g in groups]
    todo = []
    for i, g in enumerate(groups):
        hit = known.get(keys[i]) if keys else None
        if hit is not None and len(hit) == len(g.action_ids):
            g.ref_logps = list(hit)
        else:
            todo.append(i)
    with adapter_disabled(model), torch.inference_mode():
        for i in tqdm(todo, desc="reference log-probs", unit="decision", disable=not progress):
            g = groups[i]
            g.ref_logps = [float(x) for x in group_action_logps(model, g.prompt_ids, g.action_ids)]
    if cache_file is not None and todo:
        with Path(cache_file).open("a") as f:
            for i in todo:
                f.write(json.dumps({"key": keys[i], "logps": groups[i].ref_logps}) + "\n")
    return len(todo)


def group_action_logps(model: Any, prompt_ids: list[int], action_ids: list[list[int]]) -> Any:
    """Summed log-probs of each action after one shared prompt pass (differentiable).

    The prompt runs once with a KV cache; the cache is expanded to the actions, which run in
    one padded batch (:func:`agentq.models.scorer.shared_prefix_forward`). Returns a 1-D tensor,
    one value per action.
    """
    import torch

    from agentq.models.scorer import shared_prefix_forward

    res, out, mask = shared_prefix_forward(model, prompt_ids, [a[:-1] for a in action_ids])
    first = torch.log_softmax(res.logits[0, -1].float(), dim=-1)
    firsts = torch.stack([first[a[0]] for a in action_ids])
    targets = torch.zeros(mask.shape, dtype=torch.long)
    for r, a in enumerate(action_ids):
        if len(a) > 1:
            targets[r, : len(a) - 1] = torch.tensor(a[1:])
    lsm = torch.log_softmax(out.logits.float(), dim=-1)
    tok = lsm.gather(-1, targets.to(mask.device).unsqueeze(-1)).squeeze(-1) * mask
    return firsts + tok.sum(-1)


LOSSES = ("pairwise", "listwise")
"""``pairwise``: DPO on every pair; ``listwise``: DPO's Plackett-Luce form (module docstring)."""


def listwise_terms(rewards: Any, pairs: Sequence[Sequence[int]]) -> Any:
    """One loss term per action that wins a pair: ``-log softmax`` of its implicit reward
    against itself and every action it beats (``pairs`` holds (winner, loser) indices)."""
    import torch

    beats: dict[int, list[int]] = {}
    for w, lo in pairs:
        beats.setdefault(int(w), []).append(int(lo))
    terms = []
    for w, losers in beats.items():
        idx = torch.tensor([w, *losers], dtype=torch.long, device=rewards.device)
        terms.append(torch.logsumexp(rewards[idx], dim=0) - rewards[w])
    return torch.stack(terms)


def group_dpo_loss(
    model: Any,
    groups: Sequence[dict[str, Any]],
    beta: float,
    loss: str = "pairwise",
    focal_gamma: float = 0.0,
) -> tuple[Any, dict[str, float]]:
    """Mean loss over ``groups`` (every pair, or every listwise term: :data:`LOSSES`) and the
    batch's pairwise reward accuracy and margin.

    ``focal_gamma`` > 0 (pairwise only) weights each pair's loss by ``(1 - sigmoid(m))**gamma``
    (a focal loss; the weight is not differentiated) and divides by the batch's summed weight:
    pairs the model already ranks with a wide margin fade, and the gradient goes to the pairs it
    still gets wrong."""
    import torch
    import torch.nn.functional as F

    if loss not in LOSSES:
        raise UserInputError(f"loss must be one of {', '.join(LOSSES)}, not {loss!r}")
    if focal_gamma < 0 or (focal_gamma > 0 and loss != "pairwise"):
        raise UserInputError("focal_gamma must be >= 0 and needs the pairwise loss")
    losses, margins = [], []
    for g in groups:
        logps = group_action_logps(model, list(g["prompt_ids"]), [list(a) for a in g["action_ids"]])
        ref = torch.tensor(g["ref_logps"], dtype=logps.dtype, device=logps.device)
        rewards = beta * (logps - ref)
        idx = torch.tensor(g["pairs"], dtype=torch.long, device=logps.device)
        m = rewards[idx[:, 0]] - rewards[idx[:, 1]]
        losses.append(
            -F.logsigmoid(m) if loss == "pairwise" else listwise_terms(rewards, g["pairs"])
        )
        margins.append(m.detach())
    loss_all = torch.cat(losses)
    marg = torch.cat(margins)
    if focal_gamma > 0:
        weight = (1.0 - torch.sigmoid(marg)) ** focal_gamma
        value = (weight * loss_all).sum() / weight.sum().clamp_min(1e-12)
    else:
        value = loss_all.mean()
    return value, {
        "rewards/accuracies": float((marg > 0).float().mean()),
        "rewards/margins": float(marg.mean()),
        "pairs": float(len(marg)),
    }


def _collate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"groups": rows}


def make_trainer(
    model: Any,
    args: Any,
    train_dataset: Any,
    callbacks: list[Any],
    loss: str = "pairwise",
    focal_gamma: float = 0.0,
) -> Any:
    """A ``transformers.Trainer`` that trains ``model`` (a peft model) with the grouped loss.

    ``args`` is a ``trl.DPOConfig`` (its ``beta`` is used); ``train_dataset`` holds
    :meth:`PairGroup.to_dict` rows with reference log-probs filled in; ``loss`` is one of
    :data:`LOSSES`, ``focal_gamma`` as in :func:`group_dpo_loss`.
    """
    from transformers import Trainer

    class StepDPOTrainer(Trainer):
        """transformers' Trainer with agentq's grouped step-level DPO loss (module docstring)."""

        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            self._metric_sums: dict[str, float] = {}
            self._metric_n = 0

        def compute_loss(  # type: ignore[override]
            self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, **kw: Any
        ) -> Any:
            value, stats = group_dpo_loss(
                model, inputs["groups"], float(getattr(self.args, "beta", 0.1)), loss, focal_gamma
            )
            for k, v in stats.items():
                self._metric_sums[k] = self._metric_sums.get(k, 0.0) + v
            self._metric_n += 1
            return (value, None) if return_outputs else value

        def log(self, logs: dict[str, float], *a: Any, **kw: Any) -> None:  # type: ignore[override]
            if self._metric_n and "loss" in logs:
                for k, v in self._metric_sums.items():
                    logs[k] = v / self._metric_n
                self._metric_sums, self._metric_n = {}, 0
            super().log(logs, *a, **kw)

    return StepDPOTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        data_collator=_collate,
        callbacks=callbacks,
    )


__all__ = [
    "LOSSES",
    "PairGroup",
    "fill_reference_logps",
    "group_action_logps",
    "group_dpo_loss",
    "group_pairs",
    "listwise_terms",
    "reference_key",
    "make_trainer",
]
