"""Walks server-everything's tools, resources and prompts through an MCP endpoint (e.g.
`warden serve`) with the official Python SDK, and prints what happened as ONE JSON object.

Usage: everything_scenario.py URL TOKEN STEPS
  STEPS  a JSON list of steps, each a list:
           ["tools"] | ["resources"] | ["templates"] | ["prompts"]   names in the list answer
           ["read", URI]                       read a resource
           ["subscribe", URI]                  subscribe to a resource
           ["prompt", NAME, ARGS]              get a prompt
           ["complete", NAME, ARG, VALUE]      complete a prompt's argument
           ["call", TOOL, ARGS]                call a tool
Output: {"steps": [...one result per step...], "sampled": N}
  A list step gives its sorted names; the others {"ok": bool, "text", "code"}: `text` is
  the content (or the error's message), `code` the JSON-RPC error code of an error.
  `sampled` counts the sampling requests that reached this client."""

import asyncio
import json
import sys

import httpx2
from mcp import Client, types
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from scenario_common import text_of

URL, TOKEN, STEPS = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
sampled = []


async def sampling(context, params):
    sampled.append(params)
    return types.CreateMessageResult(
        role="assistant",
        content=types.TextContent(type="text", text="sampled by the client"),
        model="test-model",
    )


def contents(result):
    out = []
    for c in result.contents:
        out.append(getattr(c, "text", None) or getattr(c, "blob", ""))
    return "\n".join(out)


async def step(c, s):
    op = s[0]
    if op == "tools":
        return sorted(t.name for t in (await c.list_tools()).tools)
    if op == "resources":
        return sorted(str(r.uri) for r in (await c.list_resources()).resources)
    if op == "templates":
        return sorted(t.uri_template for t in (await c.list_resource_templates()).resource_templates)
    if op == "prompts":
        return sorted(p.name for p in (await c.list_prompts()).prompts)
    try:
        if op == "read":
            return {"ok": True, "text": contents(await c.read_resource(s[1])), "code": None}
        if op == "subscribe":
            await c.subscribe_resource(s[1])
            return {"ok": True, "text": "", "code": None}
        if op == "prompt":
            r = await c.get_prompt(s[1], s[2])
            texts = [m.content.text for m in r.messages if getattr(m.content, "type", None) == "text"]
            return {"ok": True, "text": "\n".join(texts), "code": None}
        if op == "complete":
            r = await c.complete(types.PromptReference(type="ref/prompt", name=s[1]), {"name": s[2], "value": s[3]})
            return {"ok": True, "text": ",".join(r.completion.values), "code": None}
        if op == "call":
            r = await c.call_tool(s[1], s[2])
            return {"ok": not r.is_error, "text": text_of(r), "code": None}
    except MCPError as e:
        return {"ok": False, "text": e.message, "code": e.code}
    raise SystemExit(f"unknown step {op}")


async def main():
    http = httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=httpx2.Timeout(30, read=120),
    )
    transport = streamable_http_client(URL, http_client=http, terminate_on_close=False)
    out = {"steps": []}
    async with http, Client(transport, mode="legacy", sampling_callback=sampling) as c:
        for s in STEPS:
            out["steps"].append(await step(c, s))
    out["sampled"] = len(sampled)
    return out


print(json.dumps(asyncio.run(main())))
