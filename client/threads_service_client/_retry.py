"""Client-side retries of UNAVAILABLE, shared by the async and sync clients.

The service fails fast with UNAVAILABLE while Redis is unreachable and recovers by itself
when it is back, so a short, jittered retry turns a blip into a slower success. Only calls
that are safe to run twice are retried, and the proto says which (``retry_rule``): methods
marked ``idempotency_level`` NO_SIDE_EFFECTS or IDEMPOTENT (reads, ``update``, ``delete``),
and methods whose request has a ``request_id`` (AIP-155: ``create``, ``copy``) when it is
set, since the server then returns the first attempt's thread. Nothing else is (``append``):
a retry whose first attempt was applied would add the entries twice; callers who need that
retry it themselves with ``expected_length``. Reading the descriptors rather than a list
kept here means a new RPC gets a decision from its proto, never a silent default.

``Attempts`` holds the whole decision (which call, which code, how long, within which
deadline); each client only sends, sleeps in its own way and raises.
"""

from __future__ import annotations

import enum
import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message

from threads_service_client import _errors
from threads_service_client.exceptions import ThreadsError
from threads_service_client.pb import threads_pb2 as pb

log = logging.getLogger("threads.client")

SERVICE = pb.DESCRIPTOR.services_by_name["ThreadService"]
_SAFE_LEVELS = (
    descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS,
    descriptor_pb2.MethodOptions.IDEMPOTENT,
)


class RetryRule(enum.Enum):
    """Whether a method's UNAVAILABLE failures may be retried."""

    ALWAYS = "always"
    WITH_REQUEST_ID = "only with a request_id"
    NEVER = "never"


def retry_rule(method: MethodDescriptor) -> RetryRule:
    """The rule for ``method``, from its proto: its ``idempotency_level``, else whether its
    request carries an AIP-155 ``request_id``; neither means never."""
    options: descriptor_pb2.MethodOptions = method.GetOptions()
    if options.idempotency_level in _SAFE_LEVELS:
        return RetryRule.ALWAYS
    if "request_id" in method.input_type.fields_by_name:
        return RetryRule.WITH_REQUEST_ID
    return RetryRule.NEVER


# Request message name -> (method name, rule). Each method has its own request message.
_BY_REQUEST = {m.input_type.full_name: (m.name, retry_rule(m)) for m in SERVICE.methods}


@dataclass(frozen=True)
class RetryPolicy:
    """How a client retries idempotent calls that fail with UNAVAILABLE.

    Attempt ``n + 1`` (``n`` = 1, 2, ...) waits ``uniform(0, min(max_backoff,
    initial_backoff * multiplier ** (n - 1)))`` seconds: "full jitter", so clients that
    failed together do not come back together. The call's ``timeout`` bounds all attempts
    and sleeps together. ``rng`` replaces the random source (for reproducible schedules).
    """

    max_attempts: int = 5
    initial_backoff: float = 0.1
    max_backoff: float = 5.0
    multiplier: float = 2.0
    rng: random.Random | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if not 0 <= self.initial_backoff <= self.max_backoff:
            raise ValueError(
                "need 0 <= initial_backoff <= max_backoff, got "
                f"{self.initial_backoff} and {self.max_backoff}"
            )
        if self.multiplier < 1:
            raise ValueError(f"multiplier must be at least 1, got {self.multiplier}")

    def backoff_ceiling(self, retry: int) -> float:
        """The longest sleep before retry number ``retry`` (1: before the second attempt)."""
        try:
            grown = self.initial_backoff * self.multiplier ** (retry - 1)
        except OverflowError:  # a huge multiplier or retry count: capped anyway
            return self.max_backoff
        return min(self.max_backoff, grown)

    def backoff(self, retry: int) -> float:
        """A random sleep before retry number ``retry``, within ``backoff_ceiling``."""
        source = self.rng if self.rng is not None else random
        return source.uniform(0, self.backoff_ceiling(retry))


def request_id(given: str | None, policy: RetryPolicy | None) -> str:
    """The request_id to send: the caller's, else a fresh one when retries are on.

    Made once per call, before the first attempt, so every attempt carries the same one
    and the server can return the first attempt's result instead of acting twice.
    """
    if given:
        return given
    return str(uuid.uuid4()) if policy is not None else ""


def method_of(request: Message) -> tuple[str, RetryRule]:
    """The method that takes ``request`` and its rule (NEVER for a message none takes)."""
    descriptor = request.DESCRIPTOR
    return _BY_REQUEST.get(descriptor.full_name, (descriptor.name, RetryRule.NEVER))


def idempotent(request: Message) -> bool:
    """Whether sending ``request`` twice has the effect of sending it once."""
    _, rule = method_of(request)
    if rule is RetryRule.WITH_REQUEST_ID:
        return bool(getattr(request, "request_id", ""))
    return rule is RetryRule.ALWAYS


class Attempts:
    """The attempts of one call: each one's timeout, and whether and when to retry.

    ``timeout`` is the caller's deadline for the whole call: the first attempt gets it
    unchanged, each later one what is left, and a backoff that would end past it is not
    slept (the last error is raised instead).
    """

    def __init__(
        self,
        policy: RetryPolicy | None,
        request: Message,
        timeout: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._policy = policy if policy is not None and idempotent(request) else None
        self._method, _ = method_of(request)
        self._timeout = timeout
        self._clock = clock
        self._deadline = None if timeout is None else clock() + timeout
        self.made = 0

    def next_timeout(self) -> float | None:
        """Counts an attempt and returns its gRPC timeout."""
        self.made += 1
        if self.made == 1 or self._deadline is None:
            return self._timeout
        return self._deadline - self._clock()

    def progressed(self) -> None:
        """The attempt in progress delivered something (``watch``: a message arrived): the
        retries start counting afresh from it, within the same deadline."""
        self.made = min(self.made, 1)

    def retry_delay(self, error: grpc.RpcError) -> float | None:
        """Seconds to sleep before the next attempt, or None to give up with ``error``."""
        policy = self._policy
        code = _errors.status_code(error)
        if (
            policy is None
            or code is not grpc.StatusCode.UNAVAILABLE
            or self.made >= policy.max_attempts
        ):
            return None
        delay = policy.backoff(self.made)
        if self._deadline is not None and self._clock() + delay >= self._deadline:
            log.info(
                "%s attempt %d/%d failed (%s) and the deadline comes before the next one; "
                "giving up",
                self._method,
                self.made,
                policy.max_attempts,
                _detail(error, code),
            )
            return None
        log.info(
            "%s attempt %d/%d failed (%s); retrying in %.3fs",
            self._method,
            self.made,
            policy.max_attempts,
            _detail(error, code),
            delay,
        )
        return delay

    def error(self, error: grpc.RpcError) -> ThreadsError:
        """The exception to raise for the last attempt's ``error``, saying how many ran."""
        exc = _errors.from_rpc_error(error)
        if self.made > 1:
            exc.add_note(f"{self._method} failed after {self.made} attempts")
        return exc


def _detail(error: grpc.RpcError, code: grpc.StatusCode) -> str:
    details = getattr(error, "details", None)
    text = details() if callable(details) else None
    return f"{code.name}: {text}" if text else code.name
