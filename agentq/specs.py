"""MODEL and SCORER specs (DESIGN.md's command line) resolved to Proposers and Scorers.

Each later part registers its own prefix here, lazily (``"module:function"``), so that the
core never imports a framework it does not need.

MODEL:  ``random`` | ``smollm2`` | ``openai:URL#model`` | a local directory or hub id
SCORER: ``random`` | ``qmodel:DIR`` | ``rm:DIR`` | ``tool-verify`` | ``judge:MODEL`` |
        ``remote:URL`` | ``vllm-q:URL#adapter`` (a Q-model served by vLLM) | ``toy-oracle``
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, TypeVar

from agentq import registry
from agentq.errors import UserInputError
from agentq.protocols import Proposer, Scorer, as_proposer, as_scorer

# prefix -> "module:function(spec_rest, **options)"
POLICY_BUILDERS: dict[str, str] = {
    "random": "agentq.policies:RandomProposer",
    "openai": "agentq.integrations.openai_proposer:proposer_from_spec",
    "local": "agentq.models.proposer:proposer_from_spec",
}

SCORER_BUILDERS: dict[str, str] = {
    "random": "agentq.policies:RandomScorer",
    "qmodel": "agentq.models.scorer:scorer_from_spec",
    "rm": "agentq.models.reward:scorer_from_spec",
    "judge": "agentq.models.judge:scorer_from_spec",
    "remote": "agentq.integrations.remote:remote_scorer_from_spec",
    "vllm-q": "agentq.integrations.vllm_scorer:vllm_scorer_from_spec",
}
# Scorers an environment provides (``tool-verify``, ``toy-oracle``) are the ``agentq.scorers``
# entry points (agentq.registry), so that the core names no environment; they take an
# optional value: ``builder(**options)`` or ``builder(value, **options)``.


SAMPLING_POLICIES = ("openai", "local")
"""MODEL kinds whose builder takes a sampling ``temperature`` (``random`` has none)."""


def _load(target: str, what: str) -> Callable[..., Any]:
    module, _, attr = target.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise UserInputError(f"{what} is not available in this installation: {e}") from e


def policy_kind(spec: str) -> str:
    """The builder of a MODEL spec: ``random``, ``openai`` or ``local`` (a directory, hub id or
    ``smollm2``)."""
    spec = spec.strip()
    if spec == "random":
        return "random"
    if spec.startswith("openai:"):
        return "openai"
    return "local"


def takes_temperature(spec: str) -> bool:
    """Whether the policy a MODEL spec names samples at a temperature (:data:`SAMPLING_POLICIES`)."""
    return policy_kind(spec) in SAMPLING_POLICIES


_C = TypeVar("_C", Proposer, Scorer)


def _recorded(component: _C, spec: str) -> _C:
    """``component``, checked to record the spec it was resolved from.

    The core builders set ``spec`` themselves (local models, ``qmodel:`` and ``judge:`` through
    their constructors' ``spec`` argument; ``random`` and ``toy-oracle`` as class attributes). A
    builder that records none or another form of it (the ``openai:``, ``remote:``, ``vllm-q:``,
    ``rm:`` and ``tool-verify`` builders take no ``spec`` argument yet) gets the resolved spec
    here.
    """
    if component.spec != spec:
        component.spec = spec
    return component


def resolve_policy(spec: str, **options: Any) -> Proposer:
    """Build the Proposer a MODEL spec names. ``options`` go to the builder (e.g. ``seed``)."""
    spec = spec.strip()
    if not spec:
        raise UserInputError("empty MODEL spec")
    kind = policy_kind(spec)
    if kind == "random":
        builder = _load(POLICY_BUILDERS["random"], "the random policy")
        seed = options.get("seed", 0)
        built = builder(seed=seed)
    elif kind == "openai":
        built = _load(POLICY_BUILDERS["openai"], "the OpenAI-compatible client")(
            spec[len("openai:") :], **options
        )
    else:
        # an unknown name fails here in one line, before torch loads or a hub is asked
        _load("agentq.models.loading:resolve_model_path", "local transformers models")(spec)
        built = _load(POLICY_BUILDERS["local"], "local transformers models")(spec, **options)
    return _recorded(as_proposer(built), spec)


def resolve_scorer(spec: str, **options: Any) -> Scorer:
    """Build the Scorer a SCORER spec names."""
    spec = spec.strip()
    prefix, sep, rest = spec.partition(":")
    plugins = registry.names(registry.SCORERS)
    if prefix not in SCORER_BUILDERS and prefix not in plugins:
        raise UserInputError(
            f"unknown scorer spec {spec!r}; expected one of: "
            + ", ".join(
                k + (":..." if k in ("qmodel", "rm", "judge", "remote", "vllm-q") else "")
                for k in [*SCORER_BUILDERS, *plugins]
            )
        )
    if prefix in SCORER_BUILDERS:
        builder = _load(SCORER_BUILDERS[prefix], f"scorer {prefix!r}")
    else:
        builder = registry.load(registry.SCORERS, prefix, f"scorer {prefix!r}")
    if prefix == "random" or prefix in plugins:
        built = builder(**options) if not rest else builder(rest, **options)
    else:
        if not rest:
            raise UserInputError(f"scorer spec {spec!r} needs a value after '{prefix}:'")
        built = builder(rest, **options)
    return _recorded(as_scorer(built), spec)
