"""Drives an MCP server behind Warden with the official Python SDK and prints what happened
as one JSON object. Usage: tower_scenario.py URL MODE   (MODE: legacy | 2026-07-28)"""

import asyncio
import json
import sys

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

URL, MODE = sys.argv[1], sys.argv[2]
DENIED = "[POLICY DENIED]"


def text_of(result):
    return "".join(getattr(c, "text", "") for c in result.content)


async def session(token):
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30)
    return http, Client(streamable_http_client(URL, http_client=http, terminate_on_close=False), mode=MODE)


async def main():
    out = {}
    http, client = await session("alice-token")
    async with http, client as c:
        out["protocol_version"] = c.protocol_version
        out["tools"] = sorted(t.name for t in (await c.list_tools()).tools)
        r = await c.call_tool("echo", {"text": "hello"})
        out["echo"] = {"text": text_of(r), "is_error": r.is_error}
        for name, args in [
            ("reboot_instance", {"id": 1}),
            ("delete_instance", {"id": 1}),
            ("transfer", {"amount": 500, "to": "bob"}),
            ("transfer", {"amount": 50, "to": "bob"}),
        ]:
            r = await c.call_tool(name, args)
            out.setdefault("calls", []).append({"tool": name, "args": args, "text": text_of(r), "is_error": r.is_error})
        limited_at, limited_text = None, None
        for i in range(1, 32):
            r = await c.call_tool("create_token", {"name": f"t{i}"})
            if text_of(r).startswith(DENIED):
                limited_at, limited_text = i, text_of(r)
                break
        out["limited_at"] = limited_at
        out["limited_text"] = limited_text
    http, client = await session("bob-token")
    async with http, client as c:
        r = await c.call_tool("create_token", {"name": "bob"})
        out["other_grant"] = {"text": text_of(r), "is_error": r.is_error}
    print(json.dumps(out))


asyncio.run(main())
