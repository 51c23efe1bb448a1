"""agentq environments: ``agentq.envs.make(name, **options)``.

The environments here (``toy``, ``webshop``, ``hotpotqa``, ``tooluse``) are the ``agentq.envs``
entry points of ``pyproject.toml``; the registry that finds them by name is the core's
(:mod:`agentq.environments`, re-exported here), so the core builds environments without naming
one. Modules are imported on first use, so ``make("toy")`` does not pay for WebShop's search
index.
"""

from __future__ import annotations

from agentq.environments import check_first_task, make, names, register, resolve

__all__ = ["check_first_task", "make", "names", "register", "resolve"]
