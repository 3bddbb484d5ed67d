"""Lists tools through an MCP endpoint, replaces the gateway's policy file, waits for the
gateway's `notifications/tools/list_changed` on the standalone stream, and lists again.
Prints ONE JSON object: {"before": [names], "notified": bool, "after": [names]}.

Usage: list_changed_scenario.py URL TOKEN POLICY_FILE NEW_POLICY_TEXT"""

import asyncio
import json
import sys

import anyio
import httpx2
from mcp import Client, types
from mcp.client.streamable_http import streamable_http_client

URL, TOKEN, POLICY, NEW_TEXT = sys.argv[1:5]
# Replaced before each wait: server-everything itself sends `tools/list_changed` when it
# registers its conditional tools after `initialize`, and under load that one can arrive
# late; only a notification that comes after the policy file changed may count.
changed = [anyio.Event()]


async def on_message(message):
    # Notifications arrive as the typed model; compare by method so either form counts.
    method = getattr(message, "method", None) or getattr(getattr(message, "root", None), "method", None)
    if method == "notifications/tools/list_changed" or isinstance(message, types.ToolListChangedNotification):
        changed[0].set()


async def main():
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=httpx2.Timeout(30))
    transport = streamable_http_client(URL, http_client=http, terminate_on_close=False)
    out = {}
    async with http, Client(transport, mode="legacy", message_handler=on_message) as c:
        out["before"] = sorted(t.name for t in (await c.list_tools()).tools)
        # Let the standalone stream open before the policy changes: a stream opened after
        # the reload is told nothing (its session lists afresh). Generous, for a loaded CI.
        await anyio.sleep(3)
        changed[0] = anyio.Event()
        with open(POLICY, "w") as f:
            f.write(NEW_TEXT)
        out["notified"] = False
        # A late notification of the server's own may precede the gateway's: list after
        # each one, and stop at the first list that reflects the new policy.
        with anyio.move_on_after(15):
            while True:
                await changed[0].wait()
                changed[0] = anyio.Event()
                out["notified"] = True
                out["after"] = sorted(t.name for t in (await c.list_tools()).tools)
                if out["after"] != out["before"]:
                    break
        if "after" not in out:
            out["after"] = sorted(t.name for t in (await c.list_tools()).tools)
    return out


print(json.dumps(asyncio.run(main())))
