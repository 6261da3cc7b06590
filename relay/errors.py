"""The exceptions relay raises, in one tree.

    RelayError
    ├── ApiError             an error a client sees: HTTP status, code, message
    ├── ConfigError          a bad configuration file or environment override
    ├── CannotListen         the server's address is taken or cannot be bound
    ├── UnknownModel         no upstream serves the requested model (a client error: 400)
    ├── UpstreamError        a model provider failed (translated at the provider boundary)
    └── StoreError           the event log refused or failed an operation
        ├── SessionNotFound      no such session (never created, or expired)
        ├── SessionEnded         the session already has its terminal event
        ├── AppendConflict       the batch does not start right after the last event
        ├── EventLimitReached    the session hit max_events_per_session
        ├── SignalLimitReached   the session hit max_signals_per_session
        ├── StoreFull            the memory store holds max_sessions running sessions
        └── StoreUnavailable     the backing service cannot be reached

Foreign exceptions (redis, aiohttp, SDKs) are translated once, where they are caught,
with `raise X(...) from exc`; the rest of relay only sees this tree.
"""

from __future__ import annotations


class RelayError(Exception):
    """Base of every error relay raises on purpose."""


class ApiError(RelayError):
    """An error answered to a client as `{"error": {"code", "message"}}`, with `headers`
    (such as a 401's `WWW-Authenticate`) on the answer."""

    def __init__(
        self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


class ConfigError(RelayError):
    """The configuration is invalid; the message names the key."""


class CannotListen(RelayError):
    """`cannot listen on 127.0.0.1:8080: address already in use`: the address, and the
    operating system's reason."""

    def __init__(self, host: str, port: int, reason: str) -> None:
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        super().__init__(f"cannot listen on {address}: {reason}")


class UnknownModel(RelayError):
    """No upstream can serve the model a request names. `code` is `unknown_model` (no
    upstream matches) or `invalid_model` (the matching upstream refuses the name)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class UpstreamError(RelayError):
    """A model provider failed. `status` is the upstream HTTP status when there was one."""

    def __init__(
        self, code: str, message: str, *, retryable: bool = False, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable
        self.status = status


class StoreError(RelayError):
    """The event log refused or failed an operation."""


class SessionNotFound(StoreError):
    pass


class SessionEnded(StoreError):
    pass


class AppendConflict(StoreError):
    pass


class EventLimitReached(StoreError):
    pass


class SignalLimitReached(StoreError):
    pass


class StoreFull(StoreError):
    pass


class StoreUnavailable(StoreError):
    pass
