"""Typed errors. A :class:`UserInputError` becomes one stderr line and exit code 2 in the CLI."""

from __future__ import annotations


class AgentqError(Exception):
    """Base class of every error agentq raises on purpose."""


class UserInputError(AgentqError):
    """Bad input from the user: unknown name, malformed config, missing file, existing output."""


class ProposerError(AgentqError):
    """A proposer failed to return usable candidates (too few, empty, or an exception)."""


class ScorerError(AgentqError):
    """A scorer failed to score candidates."""


class RemoteError(AgentqError):
    """A remote model server kept failing after the last retry (or refused the request)."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
