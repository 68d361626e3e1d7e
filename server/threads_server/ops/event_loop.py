"""Which asyncio event loop serves: uvloop where it is installed (the default, ``auto``),
else the standard library's.

uvloop (libuv, in C) runs the same asyncio code with less work per wake-up, callback and
socket operation, which is most of what a short RPC costs outside gRPC's own machinery:
``make bench-cost`` measures it side by side with the standard loop (docs/performance.md).
``--event-loop asyncio`` is the escape hatch; ``uvloop`` insists on it.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable
from importlib import metadata

CHOICES = ("auto", "uvloop", "asyncio")

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def parse(text: str) -> str:
    """``--event-loop``: one of CHOICES; ``uvloop`` only when it can be imported."""
    if text not in CHOICES:
        raise ValueError(f"must be one of {', '.join(CHOICES)}")
    if text == "uvloop" and importlib.util.find_spec("uvloop") is None:
        raise ValueError("uvloop is not installed (pip install uvloop), or use auto/asyncio")
    return text


def factory(choice: str) -> tuple[str, LoopFactory | None]:
    """The loop's name and the factory for ``asyncio.Runner`` (None: the standard loop)."""
    if choice != "asyncio" and importlib.util.find_spec("uvloop") is not None:
        import uvloop  # noqa: PLC0415 - optional, and only in the process that serves

        return f"uvloop {metadata.version('uvloop')}", uvloop.new_event_loop
    return "asyncio", None
