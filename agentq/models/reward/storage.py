"""The reward model's directory: ``reward_model.json``, the value head and the LoRA adapter."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agentq.errors import UserInputError
from agentq.models.reward.model import ToolAugmentedRewardModel
from agentq.models.reward.prompt import RM_SYSTEM_PROMPT
from agentq.models.reward.tools import Toolset, load_toolset
from agentq.models.reward.trace import RMBudget

RM_CONFIG_FILE = "reward_model.json"
VALUE_HEAD_FILE = "value_head.safetensors"
RM_FORMAT = "agentq-reward-model"
RM_FORMAT_VERSION = 1


def save_reward_model(
    rm: ToolAugmentedRewardModel,
    directory: str | Path,
    *,
    base_model: str,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write the adapter (when the LM is a peft model), the value head and the JSON config."""
    from safetensors.torch import save_file

    from agentq.models.qmodel import agentq_version, config_fingerprint

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    if hasattr(rm.lm, "peft_config"):
        rm.lm.save_pretrained(d, safe_serialization=True)
    sd = {k: v.detach().float().cpu().contiguous() for k, v in rm.value_head.state_dict().items()}
    save_file(sd, str(d / VALUE_HEAD_FILE))
    doc: dict[str, Any] = {
        "format": RM_FORMAT,
        "format_version": RM_FORMAT_VERSION,
        "base_model": base_model,
        "base_fingerprint": config_fingerprint(getattr(rm.lm, "config", None)),
        "adapter": hasattr(rm.lm, "peft_config"),
        "pooling": rm.pooling,
        "max_length": rm.max_length,
        "hidden_size": int(rm.value_head.in_features),
        "budget": rm.budget.to_dict(),
        "tools": list(rm.tools),
        "system_prompt": rm.system_prompt,
        "chat_template": getattr(rm.tokenizer, "chat_template", None),
        "agentq_version": agentq_version(),
    }
    doc.update(dict(extra or {}))
    (d / RM_CONFIG_FILE).write_text(json.dumps(doc, indent=2, default=str) + "\n")
    return d


def read_rm_config(directory: str | Path) -> dict[str, Any]:
    """Read ``reward_model.json``; ``UserInputError`` naming what is missing or wrong."""
    from agentq.models.qmodel import read_model_json

    d = Path(directory)
    doc = read_model_json(d, RM_CONFIG_FILE, RM_FORMAT, "reward model")
    if not (d / VALUE_HEAD_FILE).is_file():
        raise UserInputError(f"{d}: value head file {VALUE_HEAD_FILE} is missing")
    if doc.get("adapter") and not (d / "adapter_config.json").is_file():
        raise UserInputError(
            f"{d}: adapter_config.json is missing (the LoRA adapter was not saved)"
        )
    return dict(doc)


def load_reward_model(
    directory: str | Path,
    *,
    device: str | None = None,
    dtype: Any = None,
    base_model: str | None = None,
    pooling: str | None = None,
    toolset: Toolset | None = None,
) -> ToolAugmentedRewardModel:
    """Load a reward model directory written by :func:`save_reward_model`.

    The tools named in its config come from ``toolset`` (default: the registered ``tara``).
    """
    import torch
    from safetensors.torch import load_file

    from agentq.models.loading import load_causal_lm
    from agentq.models.qmodel import config_fingerprint

    d = Path(directory)
    doc = read_rm_config(d)
    base = base_model or doc["base_model"]
    lm, tok = load_causal_lm(base, device=device, dtype=dtype)
    fp = doc.get("base_fingerprint") or {}
    have = config_fingerprint(lm.config)
    bad = {k: (v, have.get(k)) for k, v in fp.items() if v is not None and have.get(k) != v}
    if bad:
        raise UserInputError(
            f"{d}: base model {base!r} does not match the one it was trained on: {bad}"
        )
    if doc.get("adapter"):
        from peft import PeftModel

        lm = PeftModel.from_pretrained(lm, str(d))
        lm.eval()
    head = torch.nn.Linear(int(doc["hidden_size"]), 1)
    try:
        head.load_state_dict(load_file(str(d / VALUE_HEAD_FILE)))
    except RuntimeError as e:
        raise UserInputError(f"{d}: value head does not fit the model: {e}") from e
    toolset = toolset if toolset is not None else load_toolset()
    available = toolset.tools()
    names = doc.get("tools") or list(available)
    missing = [n for n in names if n not in available]
    if missing:
        raise UserInputError(f"{d}: tools {missing} used in training are not available here")
    tools = {n: available[n] for n in names}
    bdoc = doc.get("budget") or {}
    budget = RMBudget(**{k: v for k, v in bdoc.items() if k in RMBudget.__dataclass_fields__})
    return ToolAugmentedRewardModel(
        lm,
        tok,
        value_head=head,
        pooling=pooling or doc.get("pooling", "last"),
        max_length=int(doc.get("max_length", 1024)),
        budget=budget,
        system_prompt=doc.get("system_prompt", RM_SYSTEM_PROMPT),
        tools=tools,
        toolset=toolset,
    )


__all__ = [
    "RM_CONFIG_FILE",
    "RM_FORMAT",
    "RM_FORMAT_VERSION",
    "VALUE_HEAD_FILE",
    "load_reward_model",
    "read_rm_config",
    "save_reward_model",
]
