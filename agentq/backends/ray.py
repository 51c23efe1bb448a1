"""Collection and evaluation on a Ray cluster: one actor per worker, results streamed back.

The driver (the process that runs ``agentq collect`` or ``agentq eval``) starts a pool of Ray
actors. Each actor receives a picklable *work* object (:class:`RemoteWork`: for collection
:class:`agentq.collect.CollectWork`, for evaluation :class:`agentq.eval.remote_work.EpisodeWork`)
and builds what it holds once, when the actor starts: environments, the policy (a local model
is loaded once per worker, never once per task; a remote ``openai:``/``remote:`` spec becomes
one HTTP client per worker, all talking to the same server) and scorers. The driver hands items
(task ids, or (method, task) episodes) to the actors, at most ``ceil(concurrency / workers)``
in flight per actor, and collects each result with ``ray.wait`` as soon as it is ready. Only
the driver writes the output file, through the same writer, lock, ``--resume`` and progress
bar as the local backend.

Faults use Ray's own mechanisms: actors are created with ``max_restarts=-1`` (a killed worker
process is restarted by Ray, on another node when its node is gone) and their calls with
``max_task_retries`` (the items it was running are run again). An item that still fails after
its retries (say, one that kills its worker every time) becomes a failed record with Ray's
reason, and the run goes on.
"""

from __future__ import annotations

import asyncio
import math
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from agentq.backends import ExecutionConfig
from agentq.errors import UserInputError
from agentq.types import TaskTree

INSTALL_HINT = "pip install 'agentq[ray]'"


def import_ray() -> Any:
    """The ``ray`` module, or ``UserInputError`` saying how to install it."""
    try:
        import ray
    except ImportError as e:
        raise UserInputError(
            f"--backend ray needs Ray, which is not installed ({e}); install it with: {INSTALL_HINT}"
        ) from e
    return ray


class RemoteWork(Protocol):
    """What one Ray worker runs: built once per worker by ``setup``, then one ``run`` per item."""

    def setup(self) -> None:
        """Build the environments and models (called once in each worker process)."""
        ...

    async def run(self, item: Any) -> dict[str, Any]:
        """Process one item; the JSON-ready record the driver writes."""
        ...

    def failed(self, item: Any, reason: str) -> dict[str, Any]:
        """The record of an item that could not be processed (called on the driver)."""
        ...


@dataclass
class RayOptions:
    """Where and how wide to run (the ``--address``/``--workers``/... flags)."""

    address: str | None = ExecutionConfig.address
    """``None``: start a local Ray instance; ``auto``: the cluster this machine belongs to;
    ``ray://host:10001`` (Ray Client) or ``host:6379`` (the head's GCS)."""
    workers: int = ExecutionConfig.workers
    """Number of worker actors (0 = as many as the cluster's CPUs (or GPUs) allow)."""
    worker_cpus: float = ExecutionConfig.worker_cpus
    """CPUs reserved by each worker."""
    worker_gpus: float = ExecutionConfig.worker_gpus
    """GPUs reserved by each worker (a local model on a GPU: 1, or a fraction to share one)."""
    retries: int = ExecutionConfig.retries
    """Times an item is run again after its worker process died (then it is recorded failed)."""
    num_cpus: int | None = None
    """CPUs of a local instance started by the driver (``None``: all of this machine's)."""
    start_timeout_s: float = 300.0
    """How long the workers may take to start (loading models included)."""

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise UserInputError("--workers must be >= 0")
        if self.worker_cpus < 0 or self.worker_gpus < 0:
            raise UserInputError("--worker-cpus and --worker-gpus must be >= 0")
        if self.worker_cpus == 0 and self.worker_gpus == 0 and self.workers == 0:
            raise UserInputError("with --worker-cpus 0 and --worker-gpus 0 pass --workers N")
        if self.retries < 0:
            raise UserInputError("--retries must be >= 0")


class _Worker:
    """The Ray actor: holds one built work object and runs items on its event loop."""

    def __init__(self, work: Any) -> None:
        self.work = work
        self.error: str | None = None
        try:
            work.setup()
        except UserInputError as e:
            self.error = str(e)
        except Exception as e:  # reported to the driver by ready()
            self.error = f"worker setup failed: {type(e).__name__}: {e}"

    def ready(self) -> str | None:
        """``None`` when the work was built, else why not."""
        return self.error

    def pid(self) -> int:
        """The worker's process id (tests kill it)."""
        return os.getpid()

    async def run(self, item: Any) -> dict[str, Any]:
        """Run one item of the work."""
        if self.error is not None:
            raise RuntimeError(self.error)
        return await self.work.run(item)


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise UserInputError(f"--address {address!r} is not auto, ray://HOST:PORT or HOST:PORT")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as e:
        raise UserInputError(f"cannot reach Ray at --address {address}: {e}") from e


class RayBackend:
    """Runs a :class:`RemoteWork` on a pool of Ray actors; the driver gets each result as it lands.

    Implements :class:`agentq.collect.CollectionBackend` for collection (``run``) and offers
    ``map`` for any work (evaluation episodes). ``start`` connects and starts the workers; call
    it before opening an output so that a bad address or a bad model spec writes nothing.
    """

    def __init__(
        self, work: RemoteWork, options: RayOptions | None = None, *, concurrency: int = 16
    ) -> None:
        self.work = work
        self.options = options or RayOptions()
        self.concurrency = max(1, concurrency)
        self.actors: list[Any] = []
        self.per_worker = 1
        self._started_ray = False
        self._ray: Any = None

    # -- lifecycle ------------------------------------------------------------------------
    def connect(self) -> None:
        """Join the cluster at ``options.address``, or start a local instance (no address)."""
        ray = self._ray = import_ray()
        address = self.options.address
        if address not in (None, "auto"):
            _check_reachable(address)
        if ray.is_initialized():  # this process already joined a cluster (tests, notebooks)
            return
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        try:
            if address is None:
                ray.init(address="local", num_cpus=self.options.num_cpus, **kwargs)
                self._started_ray = True
                return
            ray.init(address=address, **kwargs)
        except UserInputError:
            raise
        except Exception as e:  # ConnectionError, RuntimeError, grpc errors: one line
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserInputError(f"cannot connect to Ray at --address {address}: {msg}") from e
        self._started_ray = False

    def _n_workers(self) -> int:
        o = self.options
        if o.workers:
            return o.workers
        total = self._ray.cluster_resources()
        fits = []
        if o.worker_cpus > 0:
            fits.append(int(total.get("CPU", 0) // o.worker_cpus))
        if o.worker_gpus > 0:
            fits.append(int(total.get("GPU", 0) // o.worker_gpus))
        return max(1, min(fits))

    def start(self) -> None:
        """Connect, start the worker actors and wait until each has built its work."""
        if self.actors:
            return
        self.connect()
        ray, o = self._ray, self.options
        total = ray.cluster_resources()
        if o.worker_gpus > total.get("GPU", 0):
            raise UserInputError(
                f"--worker-gpus {o.worker_gpus} but the Ray cluster has {total.get('GPU', 0):g} GPUs"
            )
        n = self._n_workers()
        self.per_worker = max(1, math.ceil(self.concurrency / n))
        cls = ray.remote(_Worker).options(
            num_cpus=o.worker_cpus,
            num_gpus=o.worker_gpus,
            max_restarts=-1,
            max_task_retries=o.retries,
            max_concurrency=self.per_worker,
        )
        self.actors = [cls.remote(self.work) for _ in range(n)]
        refs = [a.ready.remote() for a in self.actors]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=o.start_timeout_s)
        if len(ready) < len(refs):
            self.close()
            raise UserInputError(
                f"{len(refs) - len(ready)} of {n} Ray workers did not start within "
                f"{o.start_timeout_s:g}s: the cluster lacks room for {n} workers with "
                f"{o.worker_cpus:g} CPUs and {o.worker_gpus:g} GPUs each"
            )
        errors = [e for e in ray.get(refs) if e]
        if errors:
            self.close()
            raise UserInputError(errors[0])

    def worker_pids(self) -> list[int]:
        """Process ids of the worker actors (as they are now)."""
        return list(self._ray.get([a.pid.remote() for a in self.actors]))

    def close(self) -> None:
        """Stop the workers, and the local Ray instance when this backend started it."""
        ray = self._ray
        if ray is None:
            return
        for a in self.actors:
            try:
                ray.kill(a, no_restart=True)
            except Exception:  # already gone
                pass
        self.actors = []
        if self._started_ray and ray.is_initialized():
            ray.shutdown()
            self._started_ray = False

    def __enter__(self) -> RayBackend:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- running --------------------------------------------------------------------------
    async def map(
        self, items: Sequence[Any], on_result: Callable[[Any, dict[str, Any]], None]
    ) -> None:
        """Run every item on the workers; ``on_result(item, record)`` in the order they finish.

        An item whose worker died more than ``retries`` times gets ``work.failed(item, reason)``.
        """
        self.start()
        ray = self._ray
        todo = list(items)[::-1]
        pending: dict[Any, tuple[int, Any]] = {}  # ObjectRef -> (actor index, item)
        load = [0] * len(self.actors)

        def submit() -> None:
            for i, actor in enumerate(self.actors):
                while todo and load[i] < self.per_worker:
                    item = todo.pop()
                    pending[actor.run.remote(item)] = (i, item)
                    load[i] += 1

        submit()
        while pending:
            ready, _ = await asyncio.to_thread(
                ray.wait, list(pending), num_returns=1, timeout=1.0, fetch_local=True
            )
            for ref in ready:
                i, item = pending.pop(ref)
                load[i] -= 1
                try:
                    record = await asyncio.to_thread(ray.get, ref)
                except Exception as e:  # the worker died past its retries, or the item raised
                    record = self.work.failed(item, _reason(e))
                on_result(item, record)
            submit()

    async def run(
        self,
        task_ids: Sequence[str],
        work: Callable[[str], Any],
        on_done: Callable[[TaskTree], None],
    ) -> None:
        """The collection backend: each task's tree is built on a worker by ``self.work``.

        The driver-side ``work`` closure of :func:`agentq.collect.acollect` is not called: the
        workers run their own copy of the same per-task function (``collect_task``).
        """
        await self.map(task_ids, lambda _tid, d: on_done(TaskTree.from_dict(d)))


def _reason(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(e).__name__}: {first}"[:500]
