"""Execution backends that run collection and evaluation work away from the driver process.

The local backend is the asyncio one in :mod:`agentq.collect`; :mod:`agentq.backends.ray`
spreads the same work over a Ray cluster (the optional ``agentq[ray]`` extra).
:class:`ExecutionConfig` holds the flags that choose one (``--backend``, ``--address``,
``--workers``, ...), shared by ``agentq collect`` and ``agentq eval``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from agentq.config import option, validate
from agentq.errors import UserInputError

if TYPE_CHECKING:
    from agentq.backends.ray import RayOptions

BACKENDS = ("local", "ray")


@dataclass
class ExecutionConfig:
    """Where the work runs: this process (``local``, asyncio) or a Ray cluster (``ray``)."""

    backend: str = option("local", help="local (asyncio) or ray (agentq[ray]).")
    address: str | None = option(
        None, help="Ray cluster: auto, ray://HOST:10001 or HOST:6379 (none: start a local one)."
    )
    workers: int = option(0, help="Ray workers (0 = as many as the cluster fits).", lo=0)
    worker_cpus: float = option(1.0, help="CPUs per Ray worker.", lo=0)
    worker_gpus: float = option(0.0, help="GPUs per Ray worker (a local model on GPU).", lo=0)
    retries: int = option(
        2, help="Ray: reruns of a task or episode whose worker process died.", lo=0
    )

    def __post_init__(self) -> None:
        validate(self)
        if self.backend not in BACKENDS:
            raise UserInputError(f"--backend must be local or ray, not {self.backend!r}")
        if self.backend != "ray" and self.address:
            raise UserInputError("--address needs --backend ray")

    def ray_options(self) -> RayOptions | None:
        """The ``RayOptions`` of ``--backend ray`` (Ray checked to be installed), else None."""
        if self.backend != "ray":
            return None
        from agentq.backends.ray import RayOptions, import_ray

        import_ray()  # one clear line when the extra is not installed
        return RayOptions(
            address=self.address or None,
            workers=self.workers,
            worker_cpus=self.worker_cpus,
            worker_gpus=self.worker_gpus,
            retries=self.retries,
        )


__all__ = ["BACKENDS", "ExecutionConfig"]
