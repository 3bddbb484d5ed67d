"""An agent whose MCP client asks its person (elicitation), driven by the official Python SDK
against `warden serve`; prints what happened as ONE JSON object.

Usage: elicit_scenario.py URL MODE TOKEN ANSWERS CALLS [ADMIN_URL ADMIN_TOKEN]
  MODE     legacy | 2026-07-28 (passed to mcp.Client)
  ANSWERS  JSON list, one per elicitation, in order: "accept" | "decline" | "cancel", or for
           a link (URL mode) "console:approve" | "console:deny": the person answers on the
           console page the link names (through its JSON API), then accepts the elicitation
  CALLS    JSON list of [tool, args] pairs, called in order

Output: {"protocol_version", "elicitations": [{"mode", "message", "url"}],
         "calls": [{"tool", "text", "is_error", "code"}]}"""

import asyncio
import json
import sys
import urllib.request

import httpx2
import mcp_types as types
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from scenario_common import call

URL, MODE, TOKEN = sys.argv[1:4]
ANSWERS = json.loads(sys.argv[4])
CALLS = json.loads(sys.argv[5])
ADMIN_URL, ADMIN_TOKEN = (sys.argv[6], sys.argv[7]) if len(sys.argv) > 7 else (None, None)
seen = []


def answer_on_console(link, verdict):
    """What a person does after following the link: answers that approval on the console."""
    approval_id = link.rsplit("#", 1)[1]
    req = urllib.request.Request(
        f"{ADMIN_URL}/approvals/{approval_id}/{verdict}",
        method="POST",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200, r.status


async def elicit(ctx, params):
    mode = getattr(params, "mode", "form")
    url = getattr(params, "url", None)
    seen.append({"mode": mode, "message": params.message, "url": url})
    answer = ANSWERS[len(seen) - 1] if len(seen) <= len(ANSWERS) else "cancel"
    if answer.startswith("console:"):
        await asyncio.to_thread(answer_on_console, url, answer.split(":", 1)[1])
        return types.ElicitResult(action="accept")
    if answer == "accept" and mode == "form":
        return types.ElicitResult(action="accept", content={"note": "looks right"})
    return types.ElicitResult(action=answer)


async def main():
    http = httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=httpx2.Timeout(30, read=300),
    )
    transport = streamable_http_client(URL, http_client=http, terminate_on_close=False)
    out = {}
    async with http, Client(transport, mode=MODE, elicitation_callback=elicit) as c:
        out["protocol_version"] = c.protocol_version
        out["calls"] = [{"tool": name, **await call(c, name, args)} for name, args in CALLS]
    out["elicitations"] = seen
    return out


print(json.dumps(asyncio.run(main())))
