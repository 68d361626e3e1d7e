"""Bearer tokens as per-call metadata, shared by the async and sync clients.

The token travels as ``authorization: Bearer <token>`` metadata on each call rather than as
gRPC call credentials, because gRPC refuses call credentials on a plaintext channel and
the service may run plaintext behind a TLS-terminating proxy, or locally in tests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

Token: TypeAlias = str | Callable[[], str]
CallMetadata: TypeAlias = tuple[tuple[str, str], ...]


def check_token(token: Token | None) -> None:
    """Fails at construction, not at the first call, for a token that can never be sent."""
    if token is None or callable(token):
        return
    if not isinstance(token, str):
        raise TypeError(f"token must be a str or a callable returning one, not {type(token)}")
    _checked(token)


def call_metadata(token: Token | None) -> CallMetadata | None:
    """The metadata for one attempt; a callable token is called each time, so it can refresh."""
    if token is None:
        return None
    value = token() if callable(token) else token
    if not isinstance(value, str):
        raise TypeError(f"the token callable must return a str, not {type(value).__name__}")
    return (("authorization", f"Bearer {_checked(value)}"),)


def _checked(value: str) -> str:
    # Messages never quote the token: it is a secret and would end up in logs.
    if not value:
        raise ValueError("the token is empty")
    if value[:7].lower() == "bearer ":
        raise ValueError("give the token without its 'Bearer ' prefix; the client adds it")
    if not (value.isascii() and value.isprintable()) or " " in value:
        # gRPC metadata values are printable ASCII; a JWT never has spaces.
        raise ValueError("the token must be printable ASCII without spaces")
    return value
