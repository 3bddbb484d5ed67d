"""The traces test's client (issue 29): the Python MCP SDK calling through the gateway
inside a trace of its own.

Session A runs under an OpenTelemetry context (TRACE_ID, SPAN_ID, sampled), which the SDK
carries in each request's `params._meta.traceparent`: echo (allowed), reboot_instance
(denied), create_token three times (the third limited), transfer (waits for a person's
approval). Session B sends no `_meta` trace context but a `traceparent` HTTP header
(HEADER_TRACE_ID, HEADER_SPAN_ID) and calls echo. Every argument holds SECRET.

Prints ONE JSON object: {"a": [{"tool", "error", "text"}...], "b": [...]}.

Usage: traces_scenario.py URL TOKEN TRACE_ID SPAN_ID HEADER_TRACE_ID HEADER_SPAN_ID SECRET"""

import asyncio
import json
import sys

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from opentelemetry import context, trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

URL, TOKEN, TRACE_ID, SPAN_ID, H_TRACE_ID, H_SPAN_ID, SECRET = sys.argv[1:8]


async def calls(headers, plan):
    http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(60))
    transport = streamable_http_client(URL, http_client=http)
    out = []
    async with http, Client(transport, mode="legacy") as c:
        for tool in plan:
            r = await c.call_tool(tool, {"text": f"{SECRET}-{tool}"})
            text = " ".join(getattr(b, "text", "") for b in r.content)
            out.append({"tool": tool, "error": bool(r.is_error), "text": text})
    return out


async def main():
    auth = {"Authorization": f"Bearer {TOKEN}"}
    span = NonRecordingSpan(
        SpanContext(
            trace_id=int(TRACE_ID, 16),
            span_id=int(SPAN_ID, 16),
            is_remote=False,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
        )
    )
    token = context.attach(trace.set_span_in_context(span))
    try:
        a = await calls(
            auth,
            ["echo", "reboot_instance", "create_token", "create_token", "create_token", "transfer"],
        )
    finally:
        context.detach(token)
    header = {**auth, "traceparent": f"00-{H_TRACE_ID}-{H_SPAN_ID}-01"}
    b = await calls(header, ["echo"])
    return {"a": a, "b": b}


print(json.dumps(asyncio.run(main())))
