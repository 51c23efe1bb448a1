"""``agentq serve``: serve a Q-model (or any SCORER spec) over HTTP with dynamic batching.

Heavy imports (torch, transformers, fastapi, uvicorn) happen inside the command body.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from agentq.cli_common import config_command
from agentq.config import option, validate
from agentq.errors import UserInputError


def _build_scorer(
    qmodel: Path | None, scorer: str, device: str | None, cache_bytes: str | None = None
) -> Any:
    if (qmodel is None) == (not scorer):
        raise UserInputError("give exactly one of --qmodel DIR or --scorer SPEC")
    if qmodel is not None:
        if not qmodel.is_dir():
            raise UserInputError(f"Q-model directory not found: {qmodel}")
        from agentq.models.scorer import QValueScorer

        kw: dict[str, Any] = {}
        if device:
            kw["device"] = device
        if cache_bytes:
            kw["cache_bytes"] = cache_bytes
        s = QValueScorer.from_pretrained(str(qmodel), **kw)
        if not getattr(s, "spec", ""):
            s.spec = f"qmodel:{qmodel}"
        return s
    from agentq.specs import resolve_scorer

    if scorer.startswith("remote:"):
        raise UserInputError("serving a remote: scorer would only proxy it; serve the model itself")
    if cache_bytes:  # any local model of the spec uses the process-wide cache by default
        from agentq.models.prefix_cache import shared_prefix_cache

        shared_prefix_cache(cache_bytes)
    return resolve_scorer(scorer)


@dataclass
class ServeConfig:
    """What ``agentq serve`` runs: a scorer behind the HTTP server, with its limits.

    Each field's default, help and checks are declared here; the command's flags come from
    them (:func:`agentq.cli_common.config_command`). The server's own settings are
    :meth:`server_config`'s (:class:`agentq.integrations.server.ServerConfig`, checked there).
    """

    qmodel: Path | None = option(None, help="Q-model directory (from agentq train).")
    scorer: str = option("", help="Any SCORER spec instead of --qmodel (e.g. toy-oracle).")
    host: str = option("127.0.0.1", help="Address to bind (loopback by default).")
    port: int = option(8000, help="TCP port.")
    token: str | None = option(
        None,
        envvar="AGENTQ_SERVE_TOKEN",
        help="Bearer token required by every route but /health (docs routes off).",
    )
    max_batch: int = option(32, help="Most requests scored in one batch (1: no batching).")
    batch_window_ms: float = option(5.0, help="Wait this long for more requests per batch.")
    batch_regroup: float = option(
        0.05,
        help="Wait up to this fraction of the last batch's scoring time for the agents it "
        "answered to send their next steps (0: off).",
    )
    max_batch_actions: int = option(1024, help="Most actions in one batch.")
    max_queue: int = option(1024, help="Most requests waiting; more get 503.")
    max_actions: int = option(64, help="Most actions per request (413 above).")
    max_context_tokens: int = option(
        8192, help="Most context tokens per request (0: no limit).", lo=0
    )
    max_body_bytes: int = option(4 * 1024 * 1024, help="Largest request body (413 above).")
    idle_timeout: float = option(
        10.0, help="Close a connection that sends no whole request head for this long."
    )
    no_batching: bool = option(False, help="Score each request alone (same as --max-batch 1).")
    device: str | None = option(None, help="Device of the Q-model (default: automatic).")
    graceful_timeout: int = option(60, help="Seconds to finish in-flight work on shutdown.")
    log_level: str = option("info", help="uvicorn log level.")
    cache_bytes: str | None = option(
        None,
        help="Budget of the prefix (KV) cache that reuses each agent's earlier context "
        "across requests, e.g. 512MiB or 2GB (default 512MiB).",
    )

    def __post_init__(self) -> None:
        if self.qmodel is not None:
            self.qmodel = Path(self.qmodel)
        validate(self)
        if not 0 < self.port < 65536:
            raise UserInputError(f"--port must be between 1 and 65535, not {self.port}")
        if self.cache_bytes is not None:
            from agentq.models.prefix_cache import parse_cache_bytes

            try:
                parse_cache_bytes(self.cache_bytes)
            except UserInputError as e:
                raise UserInputError(f"--cache-bytes: {e}") from e
        self.server_config()  # the server's own checks, before anything loads

    def server_config(self) -> Any:
        """The server's settings (:class:`agentq.integrations.server.ServerConfig`; a value it
        refuses is a ``UserInputError``)."""
        from agentq.integrations.server import ServerConfig

        try:
            return ServerConfig(
                max_batch=1 if self.no_batching else self.max_batch,
                batch_window_ms=0.0 if self.no_batching else self.batch_window_ms,
                batch_regroup=0.0 if self.no_batching else self.batch_regroup,
                max_batch_actions=self.max_batch_actions,
                max_queue=self.max_queue,
                max_actions=self.max_actions,
                max_context_tokens=self.max_context_tokens or None,
                max_body_bytes=self.max_body_bytes,
                token=self.token or None,
                idle_timeout_s=self.idle_timeout,
            )
        except ValueError as e:
            raise UserInputError(str(e)) from e


def register(app: typer.Typer) -> None:
    """Add ``agentq serve`` to the CLI."""

    @config_command(app, ServeConfig)
    def serve(config: ServeConfig) -> None:
        """Serve a Q-model over HTTP: POST /v1/score, GET /health, GET /metrics, GET /stats."""
        from agentq.integrations.server import LOOPBACK, create_app
        from agentq.integrations.server import serve as run_server

        cfg = config.server_config()
        host, port, token = config.host, config.port, config.token
        if host not in LOOPBACK and not token:
            typer.echo(
                f"warning: serving on {host} without a token: anyone who can reach this port "
                "can use the model (set --token or AGENTQ_SERVE_TOKEN)",
                err=True,
            )
        model = _build_scorer(config.qmodel, config.scorer, config.device, config.cache_bytes)
        app_ = create_app(model, cfg)
        typer.echo(
            f"agentq serve: {getattr(model, 'spec', '') or type(model).__name__} on "
            f"http://{host}:{port} (max batch {cfg.max_batch}, window {cfg.batch_window_ms} ms, "
            f"queue {cfg.max_queue}{', token required' if token else ''})",
            err=True,
        )
        run_server(
            app_, host, port, log_level=config.log_level, graceful_timeout=config.graceful_timeout
        )
