from __future__ import annotations

import uuid

import pytest

from threads_server.errors import InvalidArgument
from threads_server.service import page_tokens
from threads_server.service.page_tokens import MAX_OFFSET


def test_round_trip() -> None:
    thread_id = str(uuid.uuid4())
    for offset in (0, 1, 100, 2**40):
        assert page_tokens.decode(page_tokens.encode(thread_id, offset), thread_id) == offset


def test_token_is_url_safe_and_opaque() -> None:
    token = page_tokens.encode(str(uuid.uuid4()), 300)
    assert token.replace("-", "").replace("_", "").isalnum()
    assert "300" not in token


def test_token_for_another_thread_is_rejected() -> None:
    token = page_tokens.encode(str(uuid.uuid4()), 5)
    with pytest.raises(InvalidArgument, match="another thread") as raised:
        page_tokens.decode(token, str(uuid.uuid4()))
    assert raised.value.reason == "INVALID_PAGE_TOKEN"


@pytest.mark.parametrize("mangle", [lambda t: t[:-1], lambda t: t + "AA", lambda t: "B" + t[1:]])
def test_mangled_token_is_rejected(mangle: object) -> None:
    thread_id = str(uuid.uuid4())
    token = page_tokens.encode(thread_id, 5)
    bad = mangle(token)  # type: ignore[operator]
    assert bad != token
    with pytest.raises(InvalidArgument, match="not a token this service issued"):
        page_tokens.decode(bad, thread_id)


def test_forged_offset_beyond_any_history_is_rejected() -> None:
    # The checksum is unkeyed, so anyone can mint a token; LRANGE would fail on 2**63.
    thread_id = str(uuid.uuid4())
    assert page_tokens.decode(page_tokens.encode(thread_id, MAX_OFFSET), thread_id) == MAX_OFFSET
    for offset in (MAX_OFFSET + 1, 2**63, 2**64 - 1):
        with pytest.raises(InvalidArgument):
            page_tokens.decode(page_tokens.encode(thread_id, offset), thread_id)
