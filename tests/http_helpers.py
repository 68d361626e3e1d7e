"""Helpers for the HTTP/JSON tests: the base URL of a server's HTTP port, the Status JSON
an error must carry, the Thread's keys in LangGraph's shape."""

from __future__ import annotations

from typing import Any

import httpx

from threads_server.server import ThreadsServer

# LangGraph's Thread fields that mean nothing here: never sent, not faked.
LANGGRAPH_ONLY = ("status", "values", "interrupts")
THREAD_KEYS = {
    "thread_id",
    "created_at",
    "updated_at",
    "metadata",
    "history_length",
    "copied_from",
    "owner",
}


def base_url(server: ThreadsServer, scheme: str = "http") -> str:
    return f"{scheme}://127.0.0.1:{server.http_port}"


def assert_status(
    response: httpx.Response, http_status: int, code: int, reason: str | None
) -> dict[str, Any]:
    """The reply is the google.rpc.Status JSON with LangGraph's ``detail``."""
    assert response.status_code == http_status, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    assert body["detail"] == body["message"] and body["message"], body
    if reason is None:
        assert body["details"] == [], body
    else:
        [info] = body["details"]
        assert info["@type"] == "type.googleapis.com/google.rpc.ErrorInfo", body
        assert (info["reason"], info["domain"]) == (reason, "threads.v1"), body
    return body
