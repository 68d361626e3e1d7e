"""The one-node graph that ``make bench-http`` serves with ``langgraph dev``.

Each run appends one ~200-byte entry to ``entries`` (the same size as the entries the bench
seeds into this service), so a thread's checkpoints grow like one of our histories. The
module is loaded by LangGraph's own server from its own venv (build/langgraph-venv); this
project's code never imports it.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph  # type: ignore[import-not-found]

ENTRY = "x" * 168  # the text of one entry, as tests/load/bench_copy.py seeds it


class State(TypedDict):
    """The thread's state: a list that each run extends by one entry."""

    entries: Annotated[list[str], operator.add]


def step(state: State) -> dict[str, list[str]]:
    """The only node: one new entry per run."""
    return {"entries": [ENTRY]}


builder: Any = StateGraph(State)
builder.add_node("step", step)
builder.add_edge(START, "step")
builder.add_edge("step", END)
graph = builder.compile()
