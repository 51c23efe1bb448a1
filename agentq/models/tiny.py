"""Tiny offline models for tests and examples: a byte-level ChatML tokenizer and a random Llama.

Nothing here touches a model hub. The tokenizer has one token per byte plus the ChatML special
tokens, and the same chat template shape as SmolLM2-Instruct (``<|im_start|>role\\ncontent<|im_end|>\\n``,
generation prompt ``<|im_start|>assistant\\n``), so :func:`agentq.render.tokenize_for_scoring`,
the proposer, the trainer and the scorer all work on it exactly as on the real model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
PAD = "<|pad|>"

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
"""ChatML chat template in the shape of SmolLM2-Instruct's (without its default system turn)."""


def make_tiny_tokenizer() -> Any:
    """A byte-level ``PreTrainedTokenizerFast`` with ChatML special tokens, built offline.

    Vocabulary: the 256 byte symbols of the GPT-2 byte-level alphabet (no merges), then
    ``<|im_start|>``, ``<|im_end|>`` (also the EOS token) and ``<|pad|>``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([IM_START, IM_END, PAD])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=IM_START,
        eos_token=IM_END,
        pad_token=PAD,
        unk_token=None,
        model_max_length=2048,
    )
    fast.chat_template = CHATML_TEMPLATE
    return fast


def make_tiny_model(
    tokenizer: Any = None,
    seed: int = 0,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 64,
    max_position_embeddings: int = 2048,
) -> Any:
    """A tiny ``LlamaForCausalLM`` with random weights (seeded), sized for ``tokenizer``.

    The model is in fp32 eval mode. ``tokenizer`` defaults to :func:`make_tiny_tokenizer`.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tokenizer if tokenizer is not None else make_tiny_tokenizer()
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        max_position_embeddings=max_position_embeddings,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
    )
    rng_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = LlamaForCausalLM(cfg)
    finally:
        torch.random.set_rng_state(rng_state)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.bos_token_id = tok.bos_token_id
    return model.float().eval()


def save_tiny_model(directory: str | Path, seed: int = 0, **model_options: Any) -> Path:
    """Save a tiny model and its tokenizer to ``directory`` (loadable by ``load_causal_lm``)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tok = make_tiny_tokenizer()
    model = make_tiny_model(tok, seed=seed, **model_options)
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return d


def save_tiny_qmodel(
    directory: str | Path,
    base_dir: str | Path,
    *,
    seed: int = 0,
    beta: float = 0.1,
    aggregation: str = "sum",
    max_length: int = 1024,
    lora_r: int = 4,
    random_adapter: bool = True,
    layers: list[int] | None = None,
) -> Path:
    """Write a Q-model directory on the tiny base in ``base_dir``: LoRA adapter + ``qmodel.json``.

    With ``random_adapter`` the LoRA B matrices are random too (so the adapter changes the
    model and scores are not all zero); otherwise the adapter starts as the identity, as in
    training. ``base_dir`` must hold a model saved by :func:`save_tiny_model`. ``layers``
    limits the adapter to those decoder layers (as ``agentq train --lora-layers`` does).
    """
    import torch
    from peft import LoraConfig, get_peft_model

    from agentq.models.loading import load_causal_lm
    from agentq.models.qmodel import write_qmodel_config

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    base_dir = Path(base_dir).resolve()
    model, tok = load_causal_lm(str(base_dir), device="cpu", dtype="float32")
    state = torch.random.get_rng_state()
    torch.manual_seed(seed + 1)
    try:
        lcfg = LoraConfig(
            r=lora_r,
            lora_alpha=2 * lora_r,
            lora_dropout=0.0,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
            init_lora_weights=not random_adapter,
            layers_to_transform=layers,
            task_type="CAUSAL_LM",
        )
        peft_model = get_peft_model(model, lcfg)
    finally:
        torch.random.set_rng_state(state)
    peft_model.save_pretrained(str(d), safe_serialization=True)
    write_qmodel_config(
        d,
        base_model=str(base_dir),
        base_config=model.config,
        beta=beta,
        aggregation=aggregation,
        max_length=max_length,
        chat_template=tok.chat_template,
        lora=lcfg.to_dict() if hasattr(lcfg, "to_dict") else {"r": lora_r},
        data={"source": "tiny random adapter"},
        metrics={},
    )
    return d
