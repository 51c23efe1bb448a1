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


class RemoteRequestError(RemoteError):
    """The server refused the request (a 4xx other than 408/425/429): retrying will not help.

    Typical causes: a wrong model name (404), a context longer than the model's window (400),
    a bad API key (401/403), a request over a server limit (413).
    """


class RemoteUnavailableError(RemoteError):
    """The server kept failing (429/5xx, dropped connections, timeouts, malformed bodies)
    until the last retry."""


class MalformedResponse(ValueError):
    """A 2xx answer whose body is not the JSON shape expected (retried like a 5xx; never
    raised to callers: after the last retry it becomes a :class:`RemoteUnavailableError`)."""
