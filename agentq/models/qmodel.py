"""The Q-model directory format: a LoRA adapter (peft, safetensors) plus ``qmodel.json``.

``qmodel.json`` holds everything needed to score: the base MODEL spec, beta, the aggregation
(``sum`` or ``mean`` over action tokens), the max length used in training (contexts are
truncated from the left to it), the chat template, the agentq version, a fingerprint of the
base model's config (to catch a wrong base), the LoRA settings, a training data summary and
the training metrics.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agentq.errors import UserInputError

QMODEL_FILE = "qmodel.json"
ADAPTER_FILE = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
FORMAT = "agentq-qmodel"
FORMAT_VERSION = 1
AGGREGATIONS = ("sum", "mean")
_FINGERPRINT_KEYS = ("model_type", "vocab_size", "hidden_size", "num_hidden_layers")


def agentq_version() -> str:
    """The installed agentq version ("unknown" when not installed as a package)."""
    try:
        from importlib.metadata import version

        return version("agentq")
    except Exception:
        return "unknown"


def config_fingerprint(config: Any) -> dict[str, Any]:
    """The base-model facts a Q-model checks at load time (type, vocab, width, depth)."""
    return {k: getattr(config, k, None) for k in _FINGERPRINT_KEYS}


def write_qmodel_config(
    directory: str | Path,
    *,
    base_model: str,
    base_config: Any,
    beta: float,
    aggregation: str = "sum",
    max_length: int = 1024,
    chat_template: str | None = None,
    lora: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
) -> Path:
    """Write ``qmodel.json`` into ``directory``; returns its path."""
    if aggregation not in AGGREGATIONS:
        raise UserInputError(
            f"aggregation must be one of {', '.join(AGGREGATIONS)}, not {aggregation!r}"
        )
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "agentq_version": agentq_version(),
        "base_model": base_model,
        "base_fingerprint": config_fingerprint(base_config),
        "beta": float(beta),
        "aggregation": aggregation,
        "max_length": int(max_length),
        "chat_template": chat_template,
        "adapter": ADAPTER_FILE,
        "lora": _jsonable(lora or {}),
        "training": _jsonable(training or {}),
        "data": _jsonable(data or {}),
        "metrics": _jsonable(metrics or {}),
    }
    p = Path(directory) / QMODEL_FILE
    p.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    return p


def read_model_json(directory: str | Path, file_name: str, fmt: str, kind: str) -> dict[str, Any]:
    """Read the JSON config ``file_name`` of a saved model directory and check its ``format``.

    ``kind`` names the model in the errors ("Q-model", "reward model"); every problem (no
    directory, no file, bad JSON, wrong format) is one ``UserInputError``.
    """
    d = Path(directory)
    if not d.is_dir():
        raise UserInputError(f"{kind} directory not found: {d}")
    p = d / file_name
    if not p.is_file():
        raise UserInputError(f"{d} is not a {kind}: it has no {file_name}")
    try:
        doc = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise UserInputError(f"malformed {p}: {e}") from e
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        raise UserInputError(f"{p} is not an agentq {kind} config (format != {fmt!r})")
    return doc


def read_qmodel_config(directory: str | Path) -> dict[str, Any]:
    """Read and check a Q-model directory; raises ``UserInputError`` naming what is wrong."""
    d = Path(directory)
    doc = read_model_json(d, QMODEL_FILE, FORMAT, "Q-model")
    p = d / QMODEL_FILE
    for key in ("base_model", "beta", "aggregation"):
        if key not in doc:
            raise UserInputError(f"{p} has no {key!r} field")
    if doc["aggregation"] not in AGGREGATIONS:
        raise UserInputError(f"{p}: unknown aggregation {doc['aggregation']!r}")
    for f in (doc.get("adapter", ADAPTER_FILE), ADAPTER_CONFIG):
        if not (d / f).is_file():
            raise UserInputError(f"Q-model {d} is missing its adapter file {f}")
    return doc


def check_base_compatible(doc: dict[str, Any], config: Any, where: str = "") -> None:
    """Raise ``UserInputError`` when the loaded base model is not the one the Q-model was trained on."""
    want = doc.get("base_fingerprint") or {}
    got = config_fingerprint(config)
    bad = [
        f"{k}={got.get(k)!r} (trained on {v!r})"
        for k, v in want.items()
        if v is not None and got.get(k) != v
    ]
    if bad:
        raise UserInputError(
            f"Q-model {where or ''} does not fit base model {doc.get('base_model')!r}: "
            + ", ".join(bad)
        )


def _jsonable(x: Any) -> Any:
    return json.loads(json.dumps(x, default=lambda o: sorted(o) if isinstance(o, set) else str(o)))
