"""Drives an MCP Streamable-HTTP endpoint (e.g. `warden serve` in front of server-everything)
with the official Python SDK and prints what happened as ONE JSON object.

Usage: gateway_scenario.py URL MODE TOKEN [CALLS]
  MODE   legacy | auto | 2026-07-28 (passed to mcp.Client)
  CALLS  optional JSON list of [tool, args] pairs, called in order after `echo`

Output: {"protocol_version", "tools": [sorted names], "echo": {"text", "is_error"},
         "calls": [{"tool", "text", "is_error", "code"}]}
`code` is the JSON-RPC error code when a call is refused as a protocol error (else null).
With WARDEN_E2E_CA set to a PEM file, an https URL is verified against that CA only.
If any HTTP response is a 401, prints {"error": "unauthorized"} and exits 0: the SDK turns a
401 into a generic MCPError(-32603) inside an ExceptionGroup, so the status is caught by an
httpx2 response hook instead."""

import asyncio
import json
import os
import ssl
import sys

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from scenario_common import call

URL, MODE, TOKEN = sys.argv[1:4]
CALLS = json.loads(sys.argv[4]) if len(sys.argv) > 4 else []
statuses = set()


async def record_status(response):
    statuses.add(response.status_code)


async def main():
    ca = os.environ.get("WARDEN_E2E_CA")
    tls = {"verify": ssl.create_default_context(cafile=ca)} if ca else {}
    http = httpx2.AsyncClient(
        **tls,
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=httpx2.Timeout(30, read=300),
        event_hooks={"response": [record_status]},
    )
    transport = streamable_http_client(URL, http_client=http, terminate_on_close=False)
    out = {}
    async with http, Client(transport, mode=MODE) as c:
        out["protocol_version"] = c.protocol_version
        out["tools"] = sorted(t.name for t in (await c.list_tools()).tools)
        echo = await call(c, "echo", {"message": "hello"})
        out["echo"] = {"text": echo["text"], "is_error": echo["is_error"]}
        out["calls"] = [{"tool": name, **await call(c, name, args)} for name, args in CALLS]
    return out


try:
    result = asyncio.run(main())
except BaseException as e:  # a 401 arrives wrapped in an ExceptionGroup
    if 401 not in statuses:
        raise
    result = {"error": "unauthorized"}
print(json.dumps(result))
