"""agentq: step-level Q-value models that make LLM agents choose better actions.

The contracts (``Env``, ``Proposer``, ``Scorer``) live in :mod:`agentq.protocols`, the shared
data types in :mod:`agentq.types`, the one renderer in :mod:`agentq.render`.
"""

from agentq.protocols import BaseProposer, BaseScorer, Env, Proposer, Scorer
from agentq.types import (
    Candidate,
    Context,
    Message,
    Step,
    StepResult,
    TaskTree,
    Trajectory,
    TreeNode,
)

__version__ = "0.1.0"

__all__ = [
    "BaseProposer",
    "BaseScorer",
    "Candidate",
    "Context",
    "Env",
    "Message",
    "Proposer",
    "Scorer",
    "Step",
    "StepResult",
    "TaskTree",
    "Trajectory",
    "TreeNode",
    "__version__",
]
