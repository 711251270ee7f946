"""Run by test_graph_checkpoints in a fresh Python process: reopen an agent thread saved in a
SQLite checkpoint (with the async saver), report what it holds, then continue the thread.

    python resume_thread.py <sqlite file> <fake server base URL> <thread id>

Prints one JSON object: the state found on disk, and the state after one more user turn.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from graph_helpers import agent_model, react_agent
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from polyfuse import FusionResult


def _summary(state: dict[str, Any]) -> dict[str, Any]:
    records = state.get("fusions", [])
    return {
        "messages": [[type(m).__name__, m.content] for m in state["messages"]],
        "records": len(records),
        # the records come back as FusionResult JSON: prove it by parsing them
        "record_answers": [FusionResult.model_validate(r).content for r in records],
        "record_statuses": [[c["status"] for c in r["candidates"]] for r in records],
        "fusion_metadata": "fusion" in state["messages"][-1].response_metadata,
    }


async def main(path: str, url: str, thread: str) -> None:
    async with AsyncSqliteSaver.from_conn_string(path) as saver:
        app = react_agent(agent_model(url), checkpointer=saver)
        config = {"configurable": {"thread_id": thread}}
        found = (await app.aget_state(config)).values
        after = await app.ainvoke({"messages": [("human", "Use get_time: and in 'Oslo'?")]}, config)
    print(json.dumps({"found": _summary(found), "after": _summary(after)}))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
