"""Step-level DPO training of a Q-value model (``agentq train``): TRL's DPOTrainer + a peft LoRA.

The policy is the base model with a LoRA adapter; the reference is the same model with the
adapter disabled (one model in memory). Every pair is tokenized by
:func:`agentq.render.tokenize_for_scoring`, the scorer's own renderer, and handed to TRL
already tokenized, so the tokens DPO trains on are exactly the tokens the scorer scores: the
prompt is the context under the chat template truncated from the left, the action the whole
assistant turn including its end-of-turn token. The prompt of a pair is the one its longer
action gets (so both sequences fit in ``max_length``; without truncation all prompts agree).

Because the adapter starts as the identity, the first step's loss is ln 2. Loss, reward
accuracy and margins are logged with a progress bar; at the end the pairwise accuracy on the
validation pairs (Q(chosen) > Q(rejected) under the trained scorer) is reported and stored.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agentq.config import nested, option
from agentq.errors import UserInputError
from agentq.render import tokenize_for_scoring

DEFAULT_TARGET_MODULES = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
)


@dataclass
class TrainConfig:
    """Settings of step-level DPO training (the ``agentq train`` options).

    Each field's default, help and checks are declared once here; the ``agentq train`` flags
    come from them (:class:`TrainCommandConfig`). Construction runs :meth:`check`.
    """

    beta: float = option(0.1, help="DPO beta (also the Q-value scale).")
    learning_rate: float = option(5e-5, name="lr", help="Learning rate.")
    epochs: float = option(3.0, help="Epochs over the training pairs.")
    batch_size: int = option(4, help="Pairs per device batch.")
    grad_accum: int = option(1, help="Gradient accumulation steps.")
    max_length: int = option(1024, help="Max tokens; contexts are cut from the left.")
    """Longest prompt + action in tokens; longer prompts are truncated from the left."""
    lora_r: int = option(16, help="LoRA rank.")
    lora_alpha: int = option(32, help="LoRA alpha.")
    lora_dropout: float = option(0.05, help="LoRA dropout.")
    target_modules: tuple[str, ...] = option(
        DEFAULT_TARGET_MODULES, help="Modules that get a LoRA adapter.", cli=False
    )
    lora_layers: int = option(
        0, help="Adapt only the top N decoder layers (0 = all; fewer trains faster)."
    )
    """Adapt only the top ``lora_layers`` decoder layers (0 = every layer). The layers below stay
    frozen and carry no adapter, so the backward pass stops at the lowest adapted layer: on a
    CPU, top-6 of SmolLM2's 30 layers trains a decision ~2.5x faster than every layer."""
    aggregation: str = option("sum", help="Scoring over action tokens: sum or mean.")
    """How the scorer aggregates token log-ratios (DPO itself always trains on the sum)."""
    gradient_checkpointing: bool = option(
        False, help="Recompute activations (less memory, ~30% more compute)."
    )
    """Recompute activations in the backward pass (saves memory, costs ~30% more compute)."""
    loss: str = option("pairwise", help="pairwise (DPO per pair) or listwise (grouped trainer).")
    """``pairwise``: DPO's loss on every pair; ``listwise``: DPO's Plackett-Luce form over a
    decision's siblings, one softmax term per winning action against every action it beats
    (:mod:`agentq.models.step_dpo`; grouped trainer only)."""
    focal_gamma: float = option(
        0.0, help="Focal weight (1-sigmoid(margin))^gamma on each pair (0 = plain DPO)."
    )
    """Weight each pair's DPO loss by ``(1 - sigmoid(margin))**focal_gamma`` (not
    differentiated), normalised by the batch's summed weight: pairs already ranked with a wide
    margin fade and the ones still wrong get the gradient (grouped trainer, pairwise loss)."""
    reference_cache: str | None = option(
        None, help="JSON-lines file of reference log-probs, reused across runs (grouped trainer)."
    )
    """Reference log-probs per decision, keyed by the base model and the token ids
    (:func:`agentq.models.step_dpo.fill_reference_logps`): decisions found there are read, new
    ones appended, so a second run on the same pairs and base skips the reference pass."""
    trainer: str = option("grouped", help="grouped (agentq's loss) or trl.", cli=False)
    """``grouped``: agentq's loss, one prompt pass per decision and reference log-probs computed
    once (:mod:`agentq.models.step_dpo`); ``trl``: TRL's ``DPOTrainer`` on whole pairs."""
    warmup_steps: float = option(
        0.0, help="Warmup steps (a fraction of the total when below 1).", cli=False
    )
    """Warmup: a number of steps, or a fraction of the total when below 1."""
    weight_decay: float = option(0.0, help="Weight decay.", cli=False)
    seed: int = option(0, help="Seed.")
    logging_steps: int = option(1, help="Steps between logged metrics.", cli=False)
    device: str | None = option(None, help="cuda or cpu (default: cuda when present).")
    """``cuda`` / ``cpu`` / None (CUDA when present)."""
    dtype: str | None = option(
        None, help="Model weights dtype (default: bf16 on CUDA, fp32 on CPU).", cli=False
    )
    """Model weights dtype; None = bf16 on CUDA, fp32 on CPU (bf16 autocast follows it)."""
    extra: dict[str, Any] = option({}, help="More trl.DPOConfig fields.", cli=False)
    """More ``trl.DPOConfig`` fields, passed through."""

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Raise ``UserInputError`` for values that cannot work."""
        if self.beta <= 0:
            raise UserInputError(f"beta must be > 0, not {self.beta}")
        if self.learning_rate <= 0:
            raise UserInputError(f"learning rate must be > 0, not {self.learning_rate}")
        if self.epochs <= 0:
            raise UserInputError(f"epochs must be > 0, not {self.epochs}")
        if self.batch_size < 1 or self.grad_accum < 1:
            raise UserInputError("batch size and gradient accumulation must be at least 1")
        if self.max_length < 8:
            raise UserInputError(f"max_length {self.max_length} is too small")
        if self.lora_r < 1:
            raise UserInputError("lora_r must be at least 1")
        if self.lora_layers < 0:
            raise UserInputError(f"lora_layers must be >= 0 (0 = all), not {self.lora_layers}")
        if self.trainer not in ("grouped", "trl"):
            raise UserInputError(f"trainer must be grouped or trl, not {self.trainer!r}")
        from agentq.models.step_dpo import LOSSES

        if self.loss not in LOSSES:
            raise UserInputError(f"loss must be one of {', '.join(LOSSES)}, not {self.loss!r}")
        if self.loss == "listwise" and self.trainer != "grouped":
            raise UserInputError("the listwise loss needs the grouped trainer")
        if self.reference_cache is not None and self.trainer != "grouped":
            raise UserInputError("a reference cache needs the grouped trainer")
        if not (self.focal_gamma >= 0 and math.isfinite(self.focal_gamma)):
            raise UserInputError(
                f"focal_gamma must be a finite number >= 0, not {self.focal_gamma}"
            )
        if self.focal_gamma > 0 and (self.loss != "pairwise" or self.trainer != "grouped"):
            raise UserInputError("focal_gamma needs the grouped trainer and the pairwise loss")
        if self.aggregation not in ("sum", "mean"):
            raise UserInputError(f"aggregation must be sum or mean, not {self.aggregation!r}")


@dataclass
class TrainCommandConfig:
    """What ``agentq train`` runs: :func:`train_qmodel` on a pairs file with a
    :class:`TrainConfig` (its fields are the training flags)."""

    pairs: Path = option(help="Input pairs.jsonl (from agentq pairs).", argument=True)
    base: str = option("smollm2", help="MODEL spec of the base model.")
    out: Path = option(Path("qmodel"), help="Output Q-model directory.")
    train: TrainConfig = nested(TrainConfig)
    overwrite: bool = option(False, help="Replace an existing output directory.")
    progress: bool = option(True, help="Show a progress bar.")

    def __post_init__(self) -> None:
        self.pairs = Path(self.pairs)
        self.out = Path(self.out)


@dataclass
class TrainResult:
    """What :func:`train_qmodel` returns: the output directory and the metrics it stored."""

    out: Path
    metrics: dict[str, Any]
    data: dict[str, Any]


def tokenize_pair(
    tokenizer: Any, pair: dict[str, Any], max_length: int | None
) -> dict[str, list[int]]:
    """``prompt_ids`` / ``chosen_ids`` / ``rejected_ids`` of one pair, as the scorer tokenizes.

    Raises ``ValueError`` when an action alone does not fit in ``max_length``.
    """
    context = list(pair["prompt"])
    chosen = str(pair["chosen"][-1]["content"])
    rejected = str(pair["rejected"][-1]["content"])
    pc, c = tokenize_for_scoring(tokenizer, context, chosen, max_length)
    pr, r = tokenize_for_scoring(tokenizer, context, rejected, max_length)
    prompt = pc if len(pc) <= len(pr) else pr
    return {"prompt_ids": prompt, "chosen_ids": c, "rejected_ids": r}


def tokenize_pairs(
    tokenizer: Any, pairs: list[dict[str, Any]], max_length: int | None, where: str = "pairs"
) -> list[dict[str, list[int]]]:
    """:func:`tokenize_pair` for every pair; a pair whose action cannot fit is a user error."""
    out = []
    for i, p in enumerate(pairs):
        try:
            out.append(tokenize_pair(tokenizer, p, max_length))
        except ValueError as e:
            raise UserInputError(f"{where}: pair {i + 1}: {e}") from e
    return out


def _make_trainer_class() -> Any:
    from trl import DPOTrainer

    class PreTokenizedDPOTrainer(DPOTrainer):
        """DPOTrainer whose datasets arrive tokenized by agentq's renderer (no re-tokenizing)."""

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):  # type: ignore[override]
            cols = set(dataset.column_names or [])
            need = {"prompt_ids", "chosen_ids", "rejected_ids"}
            if not need <= cols:
                raise ValueError(f"{dataset_name} dataset must be pre-tokenized ({sorted(need)})")
            return dataset

    return PreTokenizedDPOTrainer


def _progress_callback(progress: bool) -> Any:
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        """A tqdm bar over optimizer steps showing loss, reward accuracy and margin."""

        bar: Any = None

        def on_train_begin(self, args, state, control, **kwargs):  # type: ignore[override]
            if progress:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=state.max_steps, desc="DPO", unit="step", dynamic_ncols=True)

        def on_step_end(self, args, state, control, **kwargs):  # type: ignore[override]
            if self.bar is not None:
                self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args, state, control, logs=None, **kwargs):  # type: ignore[override]
            if self.bar is None or not logs or "loss" not in logs:
                return
            self.bar.set_postfix(
                loss=f"{float(logs['loss']):.4f}",
                acc=f"{float(logs.get('rewards/accuracies', float('nan'))):.2f}",
                margin=f"{float(logs.get('rewards/margins', float('nan'))):.4f}",
            )

        def on_train_end(self, args, state, control, **kwargs):  # type: ignore[override]
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    return Progress()


def pair_wins(
    model: Any, tokenizer: Any, pairs: list[dict[str, Any]], *, beta: float, max_length: int | None
) -> list[bool]:
    """For each pair, whether Q(chosen) > Q(rejected) under the peft ``model``.

    Pairs of one decision (same task and context) are scored together: one prefix pass per
    decision and model, whatever the number of pairs there.
    """
    from agentq.data.pairs import decision_key
    from agentq.models.scorer import score_items

    decisions: dict[str, tuple[list[Any], list[str]]] = {}
    where: list[tuple[str, int, int]] = []
    for p in pairs:
        context = list(p["prompt"])
        key = decision_key(p.get("task_id"), context)
        _, actions = decisions.setdefault(key, (context, []))
        idx = []
        for side in ("chosen", "rejected"):
            text = str(p[side][-1]["content"])
            if text not in actions:
                actions.append(text)
            idx.append(actions.index(text))
        where.append((key, idx[0], idx[1]))
    keys = list(decisions)
    was_training = model.training
    model.eval()
    try:
        scores: dict[str, list[float]] = {}
        for start in range(0, len(keys), 8):
            part = keys[start : start + 8]
            got = score_items(
                model, tokenizer, [decisions[k] for k in part], beta=beta, max_length=max_length
            )
            scores.update(zip(part, got, strict=True))
    finally:
        model.train(was_training)
    return [scores[k][c] > scores[k][r] for k, c, r in where]


def pairwise_accuracy(
    model: Any, tokenizer: Any, pairs: list[dict[str, Any]], *, beta: float, max_length: int | None
) -> float | None:
    """Share of pairs with Q(chosen) > Q(rejected) under the peft ``model`` (None for no pairs)."""
    if not pairs:
        return None
    wins = pair_wins(model, tokenizer, pairs, beta=beta, max_length=max_length)
    return sum(wins) / len(wins)


_ASIN_CLICK = re.compile(r"click\[b0[a-z0-9]{8}\]", re.IGNORECASE)
_NAVIGATION = {"next >", "< prev", "back to search", "description", "features", "reviews"}


def decision_type(pair: dict[str, Any]) -> str:
    """The kind of decision a pair is about, from its two actions (WebShop-style commands).

    ``search`` (a query), ``buy`` (``buy now`` is the better action), ``go on`` (``buy now``
    is the worse one: an option is still missing, or the item is wrong), ``product`` (which
    item to open), ``option`` (which option to pick), else ``navigation``; ``other`` for
    non-WebShop actions. ``buy`` and ``go on`` are apart because a Q-model that learned "buying
    is good" wins the first and loses the second: together they hide premature buying.
    """
    acts = [str(pair[s][-1]["content"]) for s in ("chosen", "rejected")]
    low = [a.lower() for a in acts]
    if any("search[" in a for a in low):
        return "search"
    if "click[buy now]" in low[0]:
        return "buy"
    if "click[buy now]" in low[1]:
        return "go on"
    if any(_ASIN_CLICK.search(a) for a in acts):
        return "product"
    args = [re.findall(r"click\[([^\]]*)\]", a) for a in low]
    if all(args):
        if any(x[-1] not in _NAVIGATION for x in args):
            return "option"
        return "navigation"
    return "other"


def pairwise_accuracy_by_type(
    model: Any, tokenizer: Any, pairs: list[dict[str, Any]], *, beta: float, max_length: int | None
) -> dict[str, dict[str, float]]:
    """:func:`pairwise_accuracy` per :func:`decision_type` (``{"product": {"pairs", "accuracy"}}``).

    Every decision is scored once, whatever the number of decision types its pairs fall in.
    """
    wins = pair_wins(model, tokenizer, pairs, beta=beta, max_length=max_length) if pairs else []
    by: dict[str, list[bool]] = {}
    for p, won in zip(pairs, wins, strict=True):
        by.setdefault(decision_type(p), []).append(won)
    return {
        kind: {"pairs": len(ws), "accuracy": sum(ws) / len(ws)} for kind, ws in sorted(by.items())
    }


def adapted_layers(model_config: Any, top: int) -> list[int] | None:
    """Indices of the top ``top`` decoder layers (None = every layer, for ``top == 0``)."""
    if not top:
        return None
    total = getattr(model_config, "num_hidden_layers", None)
    if not total:
        raise UserInputError("lora_layers needs a model config with num_hidden_layers")
    if top > total:
        raise UserInputError(f"lora_layers {top} is more than the model's {total} layers")
    return list(range(total - top, total))


def _checkpointing_field() -> str:
    """``activation_checkpointing`` in newer transformers, ``gradient_checkpointing`` before."""
    import dataclasses

    from trl import DPOConfig

    names = {f.name for f in dataclasses.fields(DPOConfig)}
    return (
        "activation_checkpointing"
        if "activation_checkpointing" in names
        else "gradient_checkpointing"
    )


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_out(out: Path, overwrite: bool, *, remove: bool = False) -> None:
    """Refuse an existing output without ``overwrite``; with ``remove``, clear it (once the
    run has passed every input check, so a failing run never destroys a previous model)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not overwrite:
            raise UserInputError(f"output {out} already exists (pass --overwrite to replace it)")
        if not remove:
            return
        if out.is_dir():
            shutil.rmtree(out)
        else:
            out.unlink()


def usable_pairs(pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pairs whose chosen and rejected actions differ (a pair of one action teaches nothing)."""
    return [
        p
        for p in pairs
        if str(p["chosen"][-1].get("content", "")) != str(p["rejected"][-1].get("content", ""))
    ]


def train_qmodel(
    pairs: str | Path | list[dict[str, Any]],
    base: str,
    out: str | Path,
    config: TrainConfig | None = None,
    *,
    overwrite: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Train a Q-value model on step-level preference pairs and write it to ``out``.

    ``pairs`` is a pairs.jsonl path or its records (``split`` = ``train`` / ``validation``);
    ``base`` a MODEL spec (directory, hub id, ``smollm2``). ``out`` receives the LoRA adapter
    (safetensors) and ``qmodel.json``. Returns the metrics, also stored in ``qmodel.json``:
    first and last loss, reward accuracy and margins, validation pairwise accuracy.
    """
    cfg = config or TrainConfig()
    cfg.check()
    from agentq.data.pairs import read_pairs

    out = Path(out)
    if isinstance(pairs, (str, Path)):
        pairs_path: Path | None = Path(pairs)
        records = read_pairs(Path(pairs))
    else:
        pairs_path = None
        records = list(pairs)
    where = str(pairs_path) if pairs_path else "pairs"
    train_pairs = [p for p in records if p.get("split", "train") == "train"]
    val_pairs = usable_pairs([p for p in records if p.get("split", "train") == "validation"])
    if not train_pairs:
        raise UserInputError(
            f"{where}: no training pairs (every pair is in the validation split, or the file "
            "is empty)"
        )
    train_pairs = usable_pairs(train_pairs)
    if not train_pairs:
        raise UserInputError(
            f"{where}: no usable training pair (chosen and rejected are the same action in every one)"
        )
    _check_out(out, overwrite)

    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl import DPOConfig

    from agentq.models.loading import load_causal_lm, pick_device, resolve_model_path
    from agentq.models.qmodel import write_qmodel_config
    from agentq.models.scorer import model_max_length

    device = pick_device(cfg.device)
    model, tok = load_causal_lm(base, device=device, dtype=cfg.dtype)
    limit = model_max_length(model)
    if limit is not None and cfg.max_length > limit:
        raise UserInputError(
            f"max_length {cfg.max_length} is longer than the model can take ({limit})"
        )
    layers = adapted_layers(model.config, cfg.lora_layers)
    lora = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.target_modules),
        layers_to_transform=layers,
        task_type="CAUSAL_LM",
    )
    use_bf16 = device.startswith("cuda") and next(model.parameters()).dtype == torch.bfloat16
    work = Path(tempfile.mkdtemp(prefix="agentq-train-"))  # the Trainer's scratch, not ``out``
    ckpt: dict[str, Any] = {_checkpointing_field(): cfg.gradient_checkpointing}
    common = dict(
        output_dir=str(work),
        beta=cfg.beta,
        learning_rate=cfg.learning_rate,
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        bf16=use_bf16,
        fp16=False,
        use_cpu=device == "cpu",
        logging_steps=cfg.logging_steps,
        save_strategy="no",
        report_to=[],
        seed=cfg.seed,
        data_seed=cfg.seed,
        warmup_steps=cfg.warmup_steps,
        weight_decay=cfg.weight_decay,
        disable_tqdm=True,  # our own bar (loss, reward accuracy, margin) replaces the default one
        dataloader_num_workers=0,
        **ckpt,
        **cfg.extra,
    )
    prompt_lengths: list[int]
    if cfg.trainer == "grouped":
        from peft import get_peft_model

        from agentq.models.step_dpo import fill_reference_logps, group_pairs, make_trainer

        groups = group_pairs(tok, train_pairs, cfg.max_length, where)
        if cfg.gradient_checkpointing:
            model.gradient_checkpointing_enable()
            model.enable_input_require_grads()
        peft_model_in = get_peft_model(model, lora)
        fill_reference_logps(peft_model_in, groups, progress, cfg.reference_cache)
        prompt_lengths = [len(g.prompt_ids) for g in groups]
        truncated = sum(
            sum(map(len, tokenize_for_scoring(tok, list(p["prompt"]), p["chosen"][-1]["content"])))
            > cfg.max_length
            for p in train_pairs
        )
        args = DPOConfig(max_length=None, remove_unused_columns=False, **common)
        trainer = make_trainer(
            peft_model_in,
            args,
            Dataset.from_list([g.to_dict() for g in groups]),
            [_progress_callback(progress)],
            cfg.loss,
            cfg.focal_gamma,
        )
    else:
        train_tok = tokenize_pairs(tok, train_pairs, cfg.max_length, where)
        truncated = sum(
            len(tokenize_for_scoring(tok, list(p["prompt"]), p["chosen"][-1]["content"])[0])
            > len(t["prompt_ids"])
            for p, t in zip(train_pairs, train_tok, strict=True)
        )
        prompt_lengths = [len(t["prompt_ids"]) for t in train_tok]
        # prompts are already truncated by tokenize_pair: TRL must not cut again
        args = DPOConfig(max_length=None, **common)
        trainer = _make_trainer_class()(
            model=model,
            args=args,
            train_dataset=Dataset.from_list(train_tok),
            processing_class=tok,
            peft_config=lora,
            callbacks=[_progress_callback(progress)],
        )
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)  # raw log dicts: our bar shows the useful part
    trainer.remove_callback(ProgressCallback)
    t0 = time.perf_counter()
    try:
        trainer.train()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    wall = time.perf_counter() - t0
    peft_model = trainer.model
    history = [h for h in trainer.state.log_history if "loss" in h]

    val_by_type = pairwise_accuracy_by_type(
        peft_model, tok, val_pairs, beta=cfg.beta, max_length=cfg.max_length
    )
    val_acc = (
        sum(v["accuracy"] * v["pairs"] for v in val_by_type.values()) / len(val_pairs)
        if val_pairs
        else None
    )
    train_acc = pairwise_accuracy(
        peft_model, tok, train_pairs[:128], beta=cfg.beta, max_length=cfg.max_length
    )
    metrics: dict[str, Any] = {
        "steps": trainer.state.global_step,
        "first_loss": history[0]["loss"] if history else None,
        "final_loss": history[-1]["loss"] if history else None,
        "final_reward_accuracy": history[-1].get("rewards/accuracies") if history else None,
        "final_reward_margin": history[-1].get("rewards/margins") if history else None,
        "train_pairwise_accuracy": train_acc,
        "validation_pairwise_accuracy": val_acc,
        "validation_accuracy_by_decision": val_by_type,
        "wall_s": round(wall, 2),
        "log": [
            {
                k: v
                for k, v in h.items()
                if k in ("step", "epoch", "loss", "rewards/accuracies", "rewards/margins")
            }
            for h in history
        ],
    }
    data = {
        "pairs_file": str(pairs_path.resolve()) if pairs_path else None,
        "pairs_sha256": _file_digest(pairs_path) if pairs_path else None,
        "train_pairs": len(train_pairs),
        "validation_pairs": len(val_pairs),
        "tasks": len({p.get("task_id") for p in records}),
        "truncated_prompts": truncated,
        "decisions": len(prompt_lengths) if cfg.trainer == "grouped" else None,
        "mean_prompt_tokens": round(sum(prompt_lengths) / max(len(prompt_lengths), 1), 1),
    }
    shutil.rmtree(work, ignore_errors=True)
    _check_out(out, overwrite, remove=True)  # a previous model goes only now, on success
    out.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(str(out), safe_serialization=True)
    resolved = resolve_model_path(base)
    base_ref = base if base.strip().lower() == "smollm2" or resolved == base else resolved
    training = {k: v for k, v in asdict(cfg).items() if k not in ("extra",)}
    training["target_modules"] = list(cfg.target_modules)
    write_qmodel_config(
        out,
        base_model=base_ref,
        base_config=peft_model.get_base_model().config,
        beta=cfg.beta,
        aggregation=cfg.aggregation,
        max_length=cfg.max_length,
        chat_template=tok.chat_template,
        lora={
            "r": cfg.lora_r,
            "alpha": cfg.lora_alpha,
            "dropout": cfg.lora_dropout,
            "target_modules": list(cfg.target_modules),
            "layers": layers,
        },
        data=data,
        metrics=metrics,
        training=training,
    )
    if progress:
        from tqdm import tqdm

        va = "n/a" if val_acc is None else f"{val_acc:.3f}"
        tqdm.write(
            f"trained {metrics['steps']} steps in {wall:.1f}s | first loss {_fmt(metrics['first_loss'])} | "
            f"final loss {_fmt(metrics['final_loss'])} | validation pairwise accuracy {va} -> {out}"
        )
    return TrainResult(out=out, metrics=metrics, data=data)


def _fmt(x: Any) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def summary_json(result: TrainResult) -> str:
    """The metrics and data summary of a training run as indented JSON."""
    return json.dumps(
        {"out": str(result.out), "metrics": result.metrics, "data": result.data}, indent=2
    )
