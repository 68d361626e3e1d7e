"""Bearer-token authentication: who is calling, from a JWT in the ``authorization`` header.

The token's ``sub`` is the caller, and the caller owns the threads it creates
(``store.keys`` gives each caller its own key namespace). Verification is HS256 with a
shared secret, or RS256/ES256 with a public key; ``exp`` and ``sub`` are required, and
``aud``/``iss`` when configured. Services reuse one token for many calls, so a verified
token is remembered (bounded, and never past its ``exp``) rather than re-verified on
every call: an RS256/ES256 signature check costs more than the rest of a Get.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from threads_server.errors import Reason, Unauthenticated
from threads_server.ops.config import Settings

# Clock difference tolerated between token issuers and this server.
LEEWAY_SECONDS = 30
MIN_SECRET_BYTES = 32  # RFC 7518 3.2: an HS256 key is at least 256 bits
_CACHE_SIZE = 4096
_BEARER = "bearer "


class AuthConfigError(Exception):
    """The auth settings cannot work (short secret, unreadable or unsupported key)."""


@dataclass(frozen=True, slots=True)
class _Verified:
    subject: str
    expires: float


class Authenticator:
    """Turns a call's metadata into the caller's subject, or raises UNAUTHENTICATED."""

    def __init__(
        self,
        key: Any,
        algorithm: str,
        *,
        audience: str | None = None,
        issuer: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = key
        self._algorithm = algorithm
        self._audience = audience
        self._issuer = issuer
        self._clock = clock
        self._verified: OrderedDict[str, _Verified] = OrderedDict()

    @classmethod
    def from_settings(cls, settings: Settings) -> Authenticator | None:
        """None when auth is off; raises AuthConfigError for settings that cannot work."""
        audience, issuer = settings.auth_jwt_audience, settings.auth_jwt_issuer
        if settings.auth_jwt_secret is not None:
            secret = settings.auth_jwt_secret.encode()
            if len(secret) < MIN_SECRET_BYTES:
                raise AuthConfigError(
                    f"--auth-jwt-secret must be at least {MIN_SECRET_BYTES} bytes for HS256, "
                    f"got {len(secret)}; generate one with `openssl rand -hex 32`"
                )
            return cls(secret, "HS256", audience=audience, issuer=issuer)
        if settings.auth_jwt_public_key_file is not None:
            key, algorithm = load_public_key(settings.auth_jwt_public_key_file)
            return cls(key, algorithm, audience=audience, issuer=issuer)
        return None

    def caller(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
        """The verified subject of the call's bearer token."""
        token = _bearer_token(metadata)
        now = self._clock()
        known = self._verified.get(token)
        if known is not None and now < known.expires + LEEWAY_SECONDS:
            self._verified.move_to_end(token)
            return known.subject
        verified = self._verify(token, now)
        self._verified[token] = verified
        if len(self._verified) > _CACHE_SIZE:
            self._verified.popitem(last=False)
        return verified.subject

    def _verify(self, token: str, now: float) -> _Verified:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[self._algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=LEEWAY_SECONDS,
                options={
                    "require": ["exp", "sub"],
                    "verify_aud": self._audience is not None,
                    "verify_iss": self._issuer is not None,
                },
            )
        except jwt.ExpiredSignatureError:
            self._verified.pop(token, None)
            raise Unauthenticated(
                "the bearer token has expired; get a fresh token and retry",
                reason=Reason.TOKEN_EXPIRED,
            ) from None
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(
                f"the bearer token is not valid: {exc}", reason=Reason.TOKEN_INVALID
            ) from None
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject:
            raise Unauthenticated(
                "the bearer token's sub claim must be a non-empty string",
                reason=Reason.TOKEN_INVALID,
            )
        expires = float(claims["exp"])
        # PyJWT checked exp against the system clock; check it against ours too, the
        # clock the cache goes by, so that one clock decides.
        if expires + LEEWAY_SECONDS <= now:
            raise Unauthenticated(
                "the bearer token has expired; get a fresh token and retry",
                reason=Reason.TOKEN_EXPIRED,
            )
        return _Verified(subject, expires)


def load_public_key(path: Path) -> tuple[Any, str]:
    """Reads a PEM public key and picks its algorithm: RSA -> RS256, P-256 -> ES256."""
    try:
        key = load_pem_public_key(path.read_bytes())
    except OSError as exc:
        raise AuthConfigError(
            f"--auth-jwt-public-key-file {path}: cannot read it ({exc.strerror})"
        ) from None
    except ValueError as exc:
        raise AuthConfigError(
            f"--auth-jwt-public-key-file {path}: not a PEM public key ({exc})"
        ) from None
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise AuthConfigError(
                f"--auth-jwt-public-key-file {path}: RSA keys need at least 2048 bits, "
                f"got {key.key_size}"
            )
        return key, "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return key, "ES256"
    raise AuthConfigError(
        f"--auth-jwt-public-key-file {path}: only RSA (RS256) and P-256 (ES256) keys are "
        f"supported, got {type(key).__name__}"
    )


def _bearer_token(metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
    values = [value for key, value in metadata or () if key == "authorization"]
    if not values:
        raise Unauthenticated(
            "this service requires authentication: send an `authorization: Bearer <JWT>` header",
            reason=Reason.TOKEN_MISSING,
        )
    value = values[0]
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    if len(values) > 1 or not text[: len(_BEARER)].lower() == _BEARER:
        raise Unauthenticated(
            "the authorization header must be a single `Bearer <JWT>`", reason=Reason.TOKEN_INVALID
        )
    return text[len(_BEARER) :].strip()
