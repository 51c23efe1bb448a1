"""Models with random weights for benchmarks that run offline (``gpu_suite.py --offline``).

Timings do not depend on weight values, only on the architecture and on how many tokens run
through it, so a model built from a ``config.json`` with random weights times like the trained
checkpoint: no hub, no Hugging Face cache, nothing to carry. The configs are in
``benchmarks/configs`` (``smollm2-135m``: SmolLM2-135M-Instruct's architecture;
``llama-3.2-1b`` and ``llama-3.2-3b``: Llama 3.2's) or any ``config.json`` path; ``tiny`` and
``tiny-large`` are small Llamas for ``--quick`` runs on a CPU.

The tokenizer is :func:`agentq.models.tiny.make_tiny_tokenizer` (byte-level, ChatML, one token
per byte of plain text) padded to the config's vocabulary with decode-only tokens ``<id>``
that encode back to the same id, so every id a random model samples decodes to text that
re-tokenizes to the same number of tokens. :class:`SyntheticEpisode` is an environment whose
contexts grow like an agent's (fixed-size observations), for the prefix-cache measurements.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

CONFIG_DIR = Path(__file__).resolve().parent / "configs"

QUICK_CONFIGS: dict[str, dict[str, Any]] = {
    "tiny": {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
    },
    "tiny-large": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
    },
}
"""Small Llamas for ``--quick`` (their vocabulary is the byte tokenizer's own)."""


def named_configs() -> list[str]:
    """The config names :func:`load_config` knows."""
    return sorted([p.stem for p in CONFIG_DIR.glob("*.json")] + list(QUICK_CONFIGS))


def load_config(name: str) -> dict[str, Any]:
    """The config dict of a name in ``benchmarks/configs`` (or :data:`QUICK_CONFIGS`), or of a
    path to a ``config.json``; keys starting with ``_`` (comments) are dropped."""
    if name in QUICK_CONFIGS:
        doc: dict[str, Any] = {"model_type": "llama", **QUICK_CONFIGS[name]}
    else:
        path = CONFIG_DIR / f"{name}.json"
        if not path.exists():
            path = Path(name)
        if not path.is_file():
            raise ValueError(
                f"unknown model config {name!r}; use a path to a config.json or one of "
                + ", ".join(named_configs())
            )
        doc = json.loads(path.read_text())
    doc = {k: v for k, v in doc.items() if not k.startswith("_")}
    doc.setdefault("_name_or_path", f"random-{Path(name).stem}")
    return doc


def padded_tokenizer(vocab_size: int | None = None, max_length: int = 8192) -> Any:
    """The byte-level ChatML tokenizer, padded to ``vocab_size`` with ``<id>`` tokens."""
    from tokenizers import AddedToken

    from agentq.models.tiny import make_tiny_tokenizer

    tok = make_tiny_tokenizer()
    if vocab_size is not None and vocab_size > len(tok):
        tok.add_tokens(
            [
                AddedToken(f"<{i}>", normalized=False, special=False)
                for i in range(len(tok), vocab_size)
            ]
        )
    tok.model_max_length = max_length
    return tok


def _llama_config(config: dict[str, Any], tok: Any) -> Any:
    from transformers import AutoConfig

    doc = dict(config)
    doc["vocab_size"] = max(int(doc.get("vocab_size") or 0), len(tok))
    doc.update(
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id
    )
    name = doc.pop("_name_or_path", "random")
    doc.pop("architectures", None)
    cfg = AutoConfig.for_model(doc.pop("model_type", "llama"), **doc)
    cfg._name_or_path = name
    return cfg


def random_model(
    config: dict[str, Any], device: str = "cpu", dtype: Any = None, seed: int = 0
) -> tuple[Any, Any]:
    """(model with random weights, padded tokenizer) for ``config``, built on ``device``.

    ``dtype`` defaults as :func:`agentq.models.loading.load_causal_lm` does: bf16 on CUDA,
    fp32 on a CPU. The weights are created on ``device`` directly (fast for 1B+ on a GPU).
    """
    import torch
    from transformers import AutoModelForCausalLM

    tok = padded_tokenizer(
        config.get("vocab_size"), int(config.get("max_position_embeddings", 8192))
    )
    cfg = _llama_config(config, tok)
    if dtype is None:
        dtype = torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    model.eval()
    _fixed_length_generation(model, tok, None)
    return model, tok


def _fixed_length_generation(model: Any, tok: Any, new_tokens: int | None) -> None:
    """End-of-turn, padding and start tokens never sampled before ``new_tokens``: a random model
    then generates exactly ``max_new_tokens`` (when ``new_tokens`` is at least that)."""
    gc = model.generation_config
    gc.pad_token_id, gc.eos_token_id, gc.bos_token_id = (
        tok.pad_token_id,
        tok.eos_token_id,
        tok.bos_token_id,
    )
    gc.suppress_tokens = [tok.pad_token_id, tok.bos_token_id]
    if new_tokens:
        gc.min_new_tokens = int(new_tokens)


def save_random_model(
    config: dict[str, Any], directory: str | Path, *, seed: int = 0, new_tokens: int | None = None
) -> Path:
    """Build :func:`random_model` on the CPU in fp32 and save it with its tokenizer to
    ``directory`` (loadable by ``load_causal_lm`` and usable as a Q-model base). With
    ``new_tokens`` its generation config makes every generation at least that long."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    model, tok = random_model(config, "cpu", seed=seed)
    _fixed_length_generation(model, tok, new_tokens)
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return d


_WORDS = (
    "red blue green small large cotton leather shoe shirt price size color item page results "
    "search click buy back next prev rating stars review tool call returned value error list "
    "file name query answer data table row column user order ship date total"
).split()


class SyntheticEpisode:
    """An environment whose context grows like an agent's: a task of ``task_tokens`` bytes, then
    per step the chosen action and an observation of ``obs_tokens`` bytes (one token per byte
    under :func:`padded_tokenizer`). ``valid`` fixed actions make the proposer constrained
    (WebShop-shaped: it scores each valid action); ``valid=0`` makes it generate freely
    (tool-use-shaped). Never done; the reward is 0."""

    def __init__(
        self, task_tokens: int = 300, obs_tokens: int = 400, valid: int = 10, seed: int = 0
    ) -> None:
        self.task_tokens, self.obs_tokens, self.valid = task_tokens, obs_tokens, valid
        self.seed = seed
        self._rng = random.Random(seed)

    def _text(self, n: int) -> str:
        words: list[str] = []
        size = 0
        while size < n:
            w = self._rng.choice(_WORDS)
            words.append(w)
            size += len(w) + 1
        return " ".join(words)[:n]

    def tasks(self, split: str) -> list[str]:
        """One task, ``"0"``."""
        return ["0"]

    def reset(self, task_id: str) -> list[dict[str, str]]:
        """System prompt and a task of ``task_tokens`` bytes."""
        self._rng = random.Random(self.seed)
        return [
            {"role": "system", "content": "You are an agent. Reply with one action."},
            {"role": "user", "content": self._text(self.task_tokens)},
        ]

    def valid_actions(self) -> list[str] | None:
        """``valid`` fixed actions, or None (free generation)."""
        if not self.valid:
            return None
        return [f"click[{_WORDS[k % len(_WORDS)]} item {k}]" for k in range(self.valid)]

    def step(self, action: str) -> tuple[str, float, bool, dict[str, Any]]:
        """An observation of ``obs_tokens`` bytes."""
        return self._text(self.obs_tokens), 0.0, False, {}
