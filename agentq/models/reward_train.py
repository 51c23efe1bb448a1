"""Training the tool-augmented reward model with the Themis objective.

For each preference pair (question, preferred answer, dispreferred answer), each answer comes
with its verification trace (tool calls, observations) and a rationale. The loss is

    L = rank_weight * -log sigmoid(r_pos - r_neg)
        + trace_weight * LM loss on the tool-call tokens (Thought / Action / Action Input)
        + obs_weight * LM loss on the observation tokens (0 by default: tools write them)
        + rationale_weight * LM loss on the rationale tokens

where r is the value head at the last token (or mean-pooled). LoRA (peft) adapts the LM; the
value head is trained in full. Observations are re-executed by agentq's tools where they can
be (calculator, calendar), so the model trains on exactly what it will see when it scores;
the live services of TARA (weather, Wikipedia search) replay the recorded observations.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agentq.errors import UserInputError
from agentq.models.reward import (
    POOLINGS,
    RMBudget,
    ToolAugmentedRewardModel,
    ToolRunner,
    encode_trace,
    load_toolset,
    pad_right,
    step_segments,
)
from agentq.react import ReactStep


@dataclass
class RMExample:
    """One answer with its trace: ``steps`` are objects with ``thought``, ``action``,
    ``action_input`` and ``observation`` (e.g. :class:`agentq.data.tara.TaraStep`)."""

    question: str
    answer: str
    steps: list[Any] = field(default_factory=list)
    rationale: str = ""


@dataclass
class RMPair:
    """A training pair: the preferred and the dispreferred answer to one question."""

    pos: RMExample
    neg: RMExample
    id: str = ""


@dataclass
class RMTrainConfig:
    """Settings of :func:`train_reward_model`."""

    base: str = "smollm2"
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    target_modules: list[str] | None = None
    """LoRA target modules (default: the attention projections found in the model)."""
    lora_layers: int | None = None
    """LoRA on the top ``lora_layers`` decoder layers only (None: every layer). The layers below
    hold no trainable weight, so backpropagation stops above them (measured in docs/reward.md)."""
    share_prefix: bool = True
    """Encode the prompt prefix that every sequence of a batch shares (the system prompt and
    tool list) once per step and expand its KV cache to the batch, instead of once per
    sequence. Same loss and gradients (tested); ``pooling="mean"`` always takes the plain pass."""
    lr: float = 2e-4
    head_lr: float = 1e-3
    epochs: int = 1
    max_steps: int | None = None
    batch_size: int = 4
    """Pairs per optimiser step."""
    max_length: int = 768
    rank_weight: float = 1.0
    trace_weight: float = 1.0
    obs_weight: float = 0.0
    rationale_weight: float = 1.0
    pooling: str = "last"
    max_observation_chars: int = 400
    grad_clip: float = 1.0
    seed: int = 0
    device: str | None = None
    dtype: str | None = None
    train_eval_pairs: int = 32
    """Training pairs re-scored after training for ``train_teacher_forced_accuracy`` (0: skip)."""
    reexecute: bool = True
    """Re-run each recorded tool call with agentq's tools (recorded live services replay)."""

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise UserInputError(
                f"pooling must be one of {', '.join(POOLINGS)}, not {self.pooling!r}"
            )
        for name in ("lr", "head_lr", "batch_size", "max_length", "lora_r", "epochs"):
            if getattr(self, name) <= 0:
                raise UserInputError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.lora_layers is not None and self.lora_layers <= 0:
            raise UserInputError(f"lora_layers must be positive, got {self.lora_layers!r}")


@dataclass
class RMTrainResult:
    """What training did: per-step history, final metrics, the output directory."""

    out_dir: Path | None
    history: list[dict[str, float]]
    metrics: dict[str, Any]


def examples_from_tara(
    pairs: Sequence[Any], *, executor: ToolRunner | None = None, reexecute: bool = True
) -> list[RMPair]:
    """TARA pairs -> training pairs.

    With ``reexecute`` every recorded tool call is run again by ``executor`` (default: the
    ``tara`` tool set's, :func:`agentq.models.reward.load_toolset`; the live services replay
    the observations TARA recorded, loaded here from ``pairs``), so
    the observations are the ones the reward model meets when it scores; a call that fails
    keeps its recorded observation.
    """
    ex = executor
    if reexecute and ex is None:
        ex = load_toolset().executor()
    if reexecute and ex is not None:
        ex.add_tara_records(pairs)

    def conv(q: str, a: Any) -> RMExample:
        steps = []
        for s in a.steps:
            obs = s.observation
            if reexecute and ex is not None:
                r = ex.execute(s.action, s.action_input)
                if r.ok:
                    obs = r.observation
            steps.append(
                ReactStep(
                    thought=s.thought, action=s.action, action_input=s.action_input, observation=obs
                )
            )
        return RMExample(q, a.answer, steps, a.explanation)

    return [RMPair(conv(p.prompt_text, p.pos), conv(p.prompt_text, p.neg), p.id) for p in pairs]


_KIND_WEIGHT = {
    "model": "trace_weight",
    "observation": "obs_weight",
    "rationale": "rationale_weight",
    "eos": "rationale_weight",
}


def encode_example(
    rm: ToolAugmentedRewardModel, ex: RMExample, cfg: RMTrainConfig
) -> tuple[list[int], list[float]]:
    """Token ids of one answer's full sequence and the LM-loss weight of each token."""
    segs = step_segments(ex.steps, ex.rationale, cfg.max_observation_chars)
    ids, kinds = encode_trace(
        rm.tokenizer, rm.messages(ex.question, ex.answer), segs, max_length=cfg.max_length
    )
    weights = [float(getattr(cfg, _KIND_WEIGHT[k])) if k in _KIND_WEIGHT else 0.0 for k in kinds]
    return ids, weights


def _lora_targets(model: Any) -> list[str] | str:
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    wanted = [t for t in ("q_proj", "k_proj", "v_proj", "o_proj") if t in names]
    return wanted or "all-linear"


def pair_losses(
    rm: ToolAugmentedRewardModel, batch: Sequence[RMPair], cfg: RMTrainConfig
) -> tuple[Any, dict[str, float]]:
    """The Themis loss of a batch of pairs and its parts (rank, lm, accuracy)."""
    import torch
    import torch.nn.functional as F

    enc = [encode_example(rm, p.pos, cfg) for p in batch] + [
        encode_example(rm, p.neg, cfg) for p in batch
    ]
    seqs = [e[0] for e in enc]
    p = _shared_prefix_length(seqs) if cfg.share_prefix and cfg.pooling == "last" else 0
    if p:
        values, ce, mask = _prefix_shared_pass(rm, seqs, p)
        weights = [ws[p:] for _, ws in enc]
    else:
        pad = rm.tokenizer.pad_token_id if rm.tokenizer.pad_token_id is not None else 0
        ids, mask = pad_right(seqs, pad, rm.device)
        values, logits = rm.values(ids, mask)
        ce = F.cross_entropy(
            logits[:, :-1].float().reshape(-1, logits.shape[-1]),
            ids[:, 1:].reshape(-1),
            reduction="none",
        ).view(ids.shape[0], -1)
        mask, weights = mask[:, 1:], [ws[1:] for _, ws in enc]
    # w[i, j]: the LM-loss weight of the token whose loss is ce[i, j]
    w = torch.zeros(ce.shape, dtype=torch.float32, device=rm.device)
    for i, ws in enumerate(weights):
        w[i, : len(ws)] = torch.tensor(ws, dtype=torch.float32)
    w = w * mask.float()
    n = len(batch)
    r_pos, r_neg = values[:n], values[n:]
    rank = -F.logsigmoid(r_pos - r_neg).mean()
    if float(w.sum()) > 0:
        lm = (ce * w).sum() / (w > 0).sum().clamp(min=1)
    else:
        lm = torch.zeros((), device=rm.device)
    loss = cfg.rank_weight * rank + lm
    acc = float((r_pos > r_neg).float().mean())
    parts = {"loss": loss.item(), "rank_loss": rank.item(), "lm_loss": lm.item(), "accuracy": acc}
    return loss, parts


def _shared_prefix_length(seqs: Sequence[Sequence[int]]) -> int:
    """Tokens every sequence starts with, leaving each at least one token of its own."""
    p, shortest = 0, min(len(s) for s in seqs)
    while p < shortest - 1 and all(s[p] == seqs[0][p] for s in seqs):
        p += 1
    return p


def _prefix_shared_pass(
    rm: ToolAugmentedRewardModel, seqs: Sequence[Sequence[int]], p: int
) -> tuple[Any, Any, Any]:
    """``(values [B], token losses [B, T], mask [B, T])`` of ``seqs``, whose first ``p`` tokens
    are shared: the prefix runs once (with gradients) and the rest after it
    (:func:`agentq.models.scorer.shared_prefix_forward`). Column ``j`` is the loss of token
    ``p + j`` (the first predicted by the prefix's last logits)."""
    import torch
    import torch.nn.functional as F

    from agentq.models.scorer import shared_prefix_forward

    suffixes = [list(s[p:]) for s in seqs]
    res, out, mask = shared_prefix_forward(rm.lm, seqs[0][:p], suffixes, output_hidden_states=True)
    k, dev = len(seqs), mask.device
    h = out.hidden_states[-1].float()
    values = rm.value_head(h[torch.arange(k, device=dev), mask.long().sum(1) - 1]).squeeze(-1)
    targets = torch.zeros(mask.shape, dtype=torch.long)
    for i, s in enumerate(suffixes):
        targets[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    targets = targets.to(dev)
    first = res.logits[0, -1].float().unsqueeze(0).expand(k, -1)
    ce_first = F.cross_entropy(first, targets[:, 0], reduction="none").unsqueeze(1)
    rest = out.logits[:, :-1].float()
    ce_rest = F.cross_entropy(
        rest.reshape(-1, rest.shape[-1]), targets[:, 1:].reshape(-1), reduction="none"
    ).view(k, -1)
    return values, torch.cat([ce_first, ce_rest], 1), mask


def teacher_forced_accuracy(
    rm: ToolAugmentedRewardModel, pairs: Sequence[RMPair], cfg: RMTrainConfig, batch_size: int = 8
) -> float:
    """Pairwise accuracy with the recorded traces and rationales fed in (no generation).

    The recorded rationale usually says whether the answer is right, so this measures how well
    the value head reads a trace, not how well the model verifies: use
    :func:`agentq.data.tara.pairwise_accuracy` with a :class:`ToolAugmentedScorer` for that.
    """
    if not pairs:
        return 0.0
    seqs_p = [encode_example(rm, p.pos, cfg)[0] for p in pairs]
    seqs_n = [encode_example(rm, p.neg, cfg)[0] for p in pairs]
    vp = rm.value_of(seqs_p, batch_size)
    vn = rm.value_of(seqs_n, batch_size)
    return sum(a > b for a, b in zip(vp, vn, strict=True)) / len(pairs)


def build_model(
    cfg: RMTrainConfig,
    model: Any = None,
    tokenizer: Any = None,
    tools: Mapping[str, Any] | None = None,
) -> ToolAugmentedRewardModel:
    """The base LM (loaded from ``cfg.base`` unless given) with a fresh LoRA adapter and value head."""
    import torch
    from peft import LoraConfig, get_peft_model

    if model is None or tokenizer is None:
        from agentq.models.loading import load_causal_lm

        model, tokenizer = load_causal_lm(cfg.base, device=cfg.device, dtype=cfg.dtype)
    torch.manual_seed(cfg.seed)
    extra: dict[str, Any] = {}
    if cfg.lora_layers is not None:
        n_layers = int(model.config.num_hidden_layers)
        extra["layers_to_transform"] = list(range(max(0, n_layers - cfg.lora_layers), n_layers))
    lcfg = LoraConfig(
        **extra,
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=cfg.target_modules or _lora_targets(model),
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, lcfg)
    return ToolAugmentedRewardModel(
        peft_model,
        tokenizer,
        pooling=cfg.pooling,
        max_length=cfg.max_length,
        budget=RMBudget(max_observation_chars=cfg.max_observation_chars),
        tools=tools,
    )


def train_reward_model(
    train_pairs: Sequence[RMPair],
    out_dir: str | Path | None,
    cfg: RMTrainConfig | None = None,
    *,
    eval_pairs: Sequence[RMPair] | None = None,
    model: Any = None,
    tokenizer: Any = None,
    progress: bool = True,
    data_summary: dict[str, Any] | None = None,
    tools: Mapping[str, Any] | None = None,
) -> tuple[ToolAugmentedRewardModel, RMTrainResult]:
    """Train a tool-augmented reward model on ``train_pairs``; save it to ``out_dir`` (if given).

    ``model``/``tokenizer`` skip loading ``cfg.base`` (tests pass tiny models; ``cfg.base``
    must still name where the base can be loaded from when the result is saved). ``tools``
    (name -> tool; default: the ``tara`` tool set's) are the tools the prompt describes. Returns the
    model and a :class:`RMTrainResult` with the loss history and metrics (teacher-forced
    pairwise accuracy on ``eval_pairs`` when given).
    """
    import torch

    cfg = cfg or RMTrainConfig()
    if not train_pairs:
        raise UserInputError("no training pairs")
    rng = random.Random(cfg.seed)
    rm = build_model(cfg, model, tokenizer, tools)
    lora_params = [p for p in rm.lm.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(
        [
            {"params": lora_params, "lr": cfg.lr},
            {"params": list(rm.value_head.parameters()), "lr": cfg.head_lr},
        ],
        weight_decay=0.0,
    )
    steps_per_epoch = math.ceil(len(train_pairs) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    if cfg.max_steps is not None:
        total = min(total, cfg.max_steps) if cfg.max_steps > 0 else total
    history: list[dict[str, float]] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, desc="train-rm", unit="step")
    rm.lm.train()
    t0 = time.perf_counter()
    step = 0
    order = list(range(len(train_pairs)))
    while step < total:
        rng.shuffle(order)
        for s in range(0, len(order), cfg.batch_size):
            if step >= total:
                break
            batch = [train_pairs[i] for i in order[s : s + cfg.batch_size]]
            loss, parts = pair_losses(rm, batch, cfg)
            opt.zero_grad()
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(
                    lora_params + list(rm.value_head.parameters()), cfg.grad_clip
                )
            opt.step()
            step += 1
            parts["step"] = step
            history.append(parts)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(
                    loss=f"{parts['loss']:.3f}",
                    rank=f"{parts['rank_loss']:.3f}",
                    acc=f"{parts['accuracy']:.2f}",
                )
    if bar is not None:
        bar.close()
    rm.lm.eval()
    wall = time.perf_counter() - t0
    k = max(1, len(history) // 10)
    metrics: dict[str, Any] = {
        "steps": step,
        "train_pairs": len(train_pairs),
        "wall_s": round(wall, 2),
        "first_loss": sum(h["loss"] for h in history[:k]) / k,
        "last_loss": sum(h["loss"] for h in history[-k:]) / k,
    }
    if cfg.train_eval_pairs > 0:
        sub = list(train_pairs[: cfg.train_eval_pairs])
        metrics["train_teacher_forced_accuracy"] = teacher_forced_accuracy(rm, sub, cfg)
        metrics["train_eval_pairs"] = len(sub)
    if eval_pairs:
        metrics["eval_pairs"] = len(eval_pairs)
        metrics["eval_teacher_forced_accuracy"] = teacher_forced_accuracy(rm, eval_pairs, cfg)
    path = None
    if out_dir is not None:
        cdict = asdict(cfg)
        path = rm.save(
            out_dir,
            base_model=cfg.base,
            extra={
                "training": cdict,
                "metrics": metrics,
                "data": data_summary or {},
                "lora": {"r": cfg.lora_r, "alpha": cfg.lora_alpha, "dropout": cfg.lora_dropout},
            },
        )
    return rm, RMTrainResult(path, history, metrics)


def split_rows(pairs: Sequence[Any], holdout: float, seed: int = 0) -> tuple[list[Any], list[Any]]:
    """A seeded split of ``pairs`` into (train, held-out) with ``holdout`` as the held-out share."""
    idx = list(range(len(pairs)))
    random.Random(seed).shuffle(idx)
    k = int(round(len(pairs) * holdout))
    held = set(idx[:k])
    return [p for i, p in enumerate(pairs) if i not in held], [
        p for i, p in enumerate(pairs) if i in held
    ]


__all__ = [
    "RMExample",
    "RMPair",
    "RMTrainConfig",
    "RMTrainResult",
    "build_model",
    "encode_example",
    "examples_from_tara",
    "pair_losses",
    "split_rows",
    "teacher_forced_accuracy",
    "train_reward_model",
]
