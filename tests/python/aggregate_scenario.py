"""Drives the aggregated endpoint of `warden serve --config` (several servers at one /mcp)
with the official Python SDK and prints what happened as ONE JSON object.

Usage: aggregate_scenario.py URL TOKEN CALLS [CONTROL ROUNDS]
  CALLS    JSON list of [tool, args] pairs, called in order in one session
  CONTROL  optional path, with ROUNDS (a number): after each round of calls but the last,
           the script writes "paused N" there and waits until the file says "go N", then
           makes the same calls again in the same session (the test stops or restarts a
           server meanwhile)

Output: {"protocol_version", "tools": [sorted names], "prompts": [sorted names],
         "resources": [uris], "read": [...], "calls": [{"tool", "text", "is_error", "code"}],
         "rounds": [[...], ...] (the later rounds, with CONTROL)}"""

import asyncio
import json
import sys
import time

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from scenario_common import call

URL, TOKEN = sys.argv[1:3]
CALLS = json.loads(sys.argv[3])
CONTROL = sys.argv[4] if len(sys.argv) > 4 else None
ROUNDS = int(sys.argv[5]) if len(sys.argv) > 5 else 1


async def wait_for_go(n):
    with open(CONTROL, "w") as f:
        f.write(f"paused {n}")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with open(CONTROL) as f:
            if f.read().strip() == f"go {n}":
                return
        await asyncio.sleep(0.1)
    raise TimeoutError("the test never said go")


async def main():
    http = httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=httpx2.Timeout(30, read=300),
    )
    transport = streamable_http_client(URL, http_client=http, terminate_on_close=True)
    out = {}
    async with http, Client(transport, mode="auto") as c:
        out["protocol_version"] = c.protocol_version
        out["tools"] = sorted(t.name for t in (await c.list_tools()).tools)
        out["prompts"] = sorted(p.name for p in (await c.list_prompts()).prompts)
        out["resources"] = [str(r.uri) for r in (await c.list_resources()).resources]
        out["calls"] = [{"tool": name, **await call(c, name, args)} for name, args in CALLS]
        if out["resources"]:
            read = await c.read_resource(out["resources"][0])
            out["read"] = [getattr(x, "text", None) is not None or getattr(x, "blob", None) is not None for x in read.contents]
        out["rounds"] = []
        for n in range(1, ROUNDS if CONTROL else 1):
            await wait_for_go(n)
            out["rounds"].append([{"tool": name, **await call(c, name, args)} for name, args in CALLS])
    return out


print(json.dumps(asyncio.run(main())))
